"""The forward pass that scores tokens with a causal-LM role (policy, reference, old policy).

Shape legend: B rows (a stacked pairwise batch holds 2B), T tokens, K kept positions (T, or fewer with
``logits_to_keep``), H hidden size, V vocabulary size.

Only the positions that are scored get logits: the model's output layer is swapped, for the duration of one
forward call, for :func:`lit_align.ops.logprobs.linear_token_logps` over the scored hidden states, in chunks, so no
(B, T, V) tensor is made in the forward or the backward. Because the swap happens inside the model's own forward,
FSDP2's hooks (which gather the output layer's weight) and PEFT wrappers see an ordinary call. Models whose
forward changes the logits after the output layer (soft-capping, logit scales) or comes from remote code take
the plain path: full logits, then :func:`lit_align.ops.logprobs.token_logps`. Both paths agree to float32
rounding (tests).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, NamedTuple

import torch

from lit_align.ops.logprobs import linear_token_logps, shift_labels, token_logps

# Config attributes through which a transformers model rescales its logits after the output layer.
_LOGIT_POSTPROCESSING = ("final_logit_softcapping", "logit_scale", "logits_scaling", "output_logits_scale")


class TokenScores(NamedTuple):
    """Per-position outputs of :func:`token_scores`, 0 where not scored. Shapes: (B, K); ``hidden`` (B, K, H).

    ``entropy`` and ``predicted`` (the argmax id) come only with ``with_stats``, ``hidden`` (the last hidden
    state) only with ``with_hidden``.
    """

    logps: torch.Tensor
    entropy: torch.Tensor | None = None
    predicted: torch.Tensor | None = None
    hidden: torch.Tensor | None = None


def output_layer(model: torch.nn.Module) -> torch.nn.Linear | None:
    """The model's LM head when scored positions can bypass its full logits, else None (plain path).

    It must be a floating-point ``nn.Linear`` (not a LoRA-wrapped or 4-bit one) of a model class that ships with
    transformers and whose config sets no logit post-processing.
    """
    get = getattr(model, "get_output_embeddings", None)
    head = get() if callable(get) else None
    if not isinstance(head, torch.nn.Linear) or type(head).forward is not torch.nn.Linear.forward:
        return None  # bitsandbytes and PEFT layers subclass or wrap Linear with their own forward
    if not head.weight.is_floating_point():
        return None
    base = getattr(model, "get_base_model", lambda: model)()  # a PeftModel's underlying transformers model
    if not type(base).__module__.startswith("transformers."):
        return None  # remote code: its forward may do anything after the head
    config = getattr(base, "config", None)
    if any(getattr(config, name, None) not in (None, 1, 1.0) for name in _LOGIT_POSTPROCESSING):
        return None
    return head


@contextmanager
def _scoring_head(
    head: torch.nn.Linear, targets: torch.Tensor, mask: torch.Tensor, scale: float, with_stats: bool, sink: dict
) -> Iterator[None]:
    """Make ``head`` return scored log-probs (B, K) instead of logits for one call; stats go into ``sink``."""

    def forward(hidden: torch.Tensor) -> torch.Tensor:  # (B, K, H), the hidden states the model kept
        assert hidden.shape[:2] == mask.shape, f"kept hidden states {tuple(hidden.shape)} vs mask {tuple(mask.shape)}"
        out = linear_token_logps(
            hidden[mask], head.weight, head.bias, targets[mask], scale=scale, with_stats=with_stats
        )
        if with_stats:
            sink["entropy"] = hidden.new_zeros(mask.shape, dtype=torch.float32).masked_scatter(mask, out.entropy)
            sink["predicted"] = torch.zeros_like(targets).masked_scatter(mask, out.argmax)
        return hidden.new_zeros(mask.shape, dtype=torch.float32).masked_scatter(mask, out.logps)

    head.forward = forward  # an instance attribute shadows the class's forward; removed below
    try:
        yield
    finally:
        del head.forward


def token_scores(
    model: torch.nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    targets: torch.Tensor,
    mask: torch.Tensor,
    *,
    position_ids: torch.Tensor | None = None,
    logits_to_keep: int = 0,
    temperature: float = 1.0,
    with_stats: bool = False,
    with_hidden: bool = False,
) -> TokenScores:
    """Log-probability of ``targets`` at the positions in ``mask``, from one forward pass of ``model``.

    Gradients flow when the caller enables them.

    Args:
        model: A Hugging Face causal LM (possibly PEFT-wrapped or FSDP-sharded).
        input_ids: Token ids. Shape: (B, T)
        attention_mask: 1 for real tokens. Shape: (B, T)
        targets: The token each kept position predicts (any id where not scored). Shape: (B, K)
        mask: Bool, True where a position is scored. Shape: (B, K)
        position_ids: Optional position ids. Shape: (B, T)
        logits_to_keep: Score only the last K positions (0: all T).
        temperature: Divides the logits (tokens sampled at a temperature are scored where they were sampled;
            0 means greedy and scores at 1).
        with_stats: Also return each position's entropy and most likely token (no gradient).
        with_hidden: Also return the last hidden state at the kept positions (a value head's input).

    Returns:
        :class:`TokenScores` of shape (B, K).

    """
    scale = 1.0 if temperature in (0.0, 1.0) else 1.0 / temperature
    kwargs: dict[str, Any] = {"input_ids": input_ids, "attention_mask": attention_mask, "use_cache": False}
    if position_ids is not None:
        kwargs["position_ids"] = position_ids
    if logits_to_keep:
        kwargs["logits_to_keep"] = logits_to_keep
    if with_hidden:
        kwargs["output_hidden_states"] = True
    head = output_layer(model)
    if head is not None:
        sink: dict = {}
        with _scoring_head(head, targets, mask, scale, with_stats, sink):
            out = model(**kwargs)
        logps, entropy, predicted = out.logits, sink.get("entropy"), sink.get("predicted")
    else:
        out = model(**kwargs)
        logits = out.logits if scale == 1.0 else out.logits / temperature  # (B, K, V)
        logps = token_logps(logits, targets.masked_fill(~mask, 0)) * mask
        entropy = predicted = None
        if with_stats:
            with torch.no_grad():
                entropy = torch.stack([_entropy(row) for row in logits]) * mask
                predicted = logits.argmax(-1)
    hidden = out.hidden_states[-1][:, -mask.shape[1] :] if with_hidden else None
    return TokenScores(logps, entropy, predicted, hidden)


def _entropy(logits: torch.Tensor) -> torch.Tensor:
    logp = torch.log_softmax(logits.float(), dim=-1)  # (K, V): one row at a time
    return -(logp.exp() * logp).sum(-1)


def stacked_logps(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """One forward pass over every row of a stacked batch (``input_ids``, ``attention_mask``, ``labels``).

    Returns:
        Summed completion log-probs and completion token counts of every row. Shapes: (2B,), (2B,)

    """
    targets, loss_mask = shift_labels(batch["labels"])
    scores = token_scores(model, batch["input_ids"], batch["attention_mask"], targets, loss_mask)
    return scores.logps.sum(-1), loss_mask.sum(-1)
