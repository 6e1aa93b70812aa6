"""Generation for the online objectives: sample G completions per prompt, mask after EOS, score tokens.

Shape legend: B prompts, G completions per prompt, N = B x G completions, P prompt length (left-padded),
R completion length (up to ``max_new_tokens``), V vocabulary size.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.distributed as dist

from lit_align.domains import NonNegativeFloat, PositiveInt, TopP, check_fields
from lit_align.roles.scoring import token_scores
from lit_align.types import PromptBatch


@dataclass(frozen=True)
class SamplingConfig:
    """How completions are sampled.

    Args:
        temperature: Softmax temperature; 0 decodes greedily.
        top_p: Nucleus sampling mass (1.0 keeps the whole distribution).
        max_new_tokens: Completion tokens at most; a completion that reaches it without EOS is truncated.
        mask_truncated: Leave truncated completions out of the loss (DAPO's overlong filtering).

    """

    temperature: NonNegativeFloat = 1.0
    top_p: TopP = 1.0
    max_new_tokens: PositiveInt = 16
    mask_truncated: bool = False

    def __post_init__(self) -> None:
        """Refuse values outside their domain (see :mod:`lit_align.domains`)."""
        check_fields(self)


class Rollout(NamedTuple):
    """Prompts and their sampled completions, ready for scoring and for a training forward pass.

    Attributes:
        input_ids: Prompt then completion tokens. Shape: (N, P + R)
        attention_mask: 1 for real prompt tokens and completion tokens up to and including EOS. Shape: (N, P + R)
        completion_ids: The sampled tokens. Shape: (N, R)
        completion_mask: Bool, True for completion tokens that count (up to and including the first EOS; all False
            for a truncated completion when truncated ones are masked). Shape: (N, R)
        truncated: Bool, True where no EOS came within ``max_new_tokens``. Shape: (N,)

    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    completion_ids: torch.Tensor
    completion_mask: torch.Tensor
    truncated: torch.Tensor

    @property
    def prompt_length(self) -> int:
        """P, the padded prompt length."""
        return self.input_ids.shape[1] - self.completion_ids.shape[1]


def repeat_prompts(batch: PromptBatch, group_size: int) -> PromptBatch:
    """Repeat every prompt ``group_size`` times in place, so the G completions of a prompt are consecutive rows."""
    rep = group_size
    return PromptBatch(
        input_ids=batch["input_ids"].repeat_interleave(rep, dim=0),
        attention_mask=batch["attention_mask"].repeat_interleave(rep, dim=0),
        prompts=[p for p in batch["prompts"] for _ in range(rep)],
        columns={k: [v for v in values for _ in range(rep)] for k, values in batch["columns"].items()},
        index=batch["index"].repeat_interleave(rep, dim=0),
    )


def mask_after_eos(completion_ids: torch.Tensor, stop_ids: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Mark each completion's tokens up to and including its first stop token.

    Args:
        completion_ids: Generated tokens; whatever follows the first stop token is padding. Shape: (N, R)
        stop_ids: Token ids that end a completion (EOS, end-of-turn).

    Returns:
        ``(mask, truncated)``: bool mask of counted tokens, and True for rows with no stop token. Shapes: (N, R), (N,)

    """
    is_stop = torch.isin(completion_ids, torch.tensor(stop_ids, device=completion_ids.device))  # (N, R)
    truncated = ~is_stop.any(-1)
    # Stops strictly before position t: cumsum of stops minus the stop at t itself.
    stops_before = is_stop.long().cumsum(-1) - is_stop.long()
    return stops_before == 0, truncated


def stop_token_ids(model: torch.nn.Module, tokenizer) -> list[int]:  # noqa: ANN001
    """EOS ids from the model's generation config (one or several), else the tokenizer's EOS."""
    eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    ids = eos if isinstance(eos, list) else [eos] if eos is not None else []
    return sorted({i for i in [*ids, tokenizer.eos_token_id] if i is not None})


@torch.no_grad()
def generate(
    model: torch.nn.Module, batch: PromptBatch, sampling: SamplingConfig, *, pad_token_id: int, stop_ids: list[int]
) -> Rollout:
    """Sample one completion per row of ``batch`` with the KV cache, under no-grad, in eval mode.

    Every process must call this together when the model is sharded: with more than one process, generation runs
    with ``synced_gpus`` so ranks whose completions have ended keep stepping until all have.
    """
    was_training = model.training
    model.eval()
    greedy = sampling.temperature == 0
    sampling_args = {} if greedy else {"temperature": sampling.temperature, "top_p": sampling.top_p, "top_k": 0}
    try:
        out = model.generate(
            input_ids=batch["input_ids"],
            attention_mask=batch["attention_mask"],
            do_sample=not greedy,
            max_new_tokens=sampling.max_new_tokens,
            pad_token_id=pad_token_id,
            eos_token_id=stop_ids,
            use_cache=True,
            synced_gpus=dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1,
            **sampling_args,
        )
    finally:
        model.train(was_training)
    prompt_length = batch["input_ids"].shape[1]
    completion_ids = out[:, prompt_length:]
    mask, truncated = mask_after_eos(completion_ids, stop_ids)
    completion_ids = completion_ids.masked_fill(~mask, pad_token_id)
    attention_mask = torch.cat([batch["attention_mask"], mask.long()], dim=1)
    if sampling.mask_truncated:
        mask = mask & ~truncated.unsqueeze(-1)
    return Rollout(out.masked_fill(attention_mask == 0, pad_token_id), attention_mask, completion_ids, mask, truncated)


class CompletionScores(NamedTuple):
    """Per-token outputs of a forward pass over a rollout; entropy and values only when asked. Shapes: (N, R)."""

    token_logps: torch.Tensor
    entropy: torch.Tensor | None = None
    values: torch.Tensor | None = None


def completion_logps(
    model: torch.nn.Module,
    rollout: Rollout,
    *,
    with_entropy: bool = False,
    value_head: torch.nn.Module | None = None,
    temperature: float = 1.0,
) -> CompletionScores:
    """Log-probability of each completion token under ``model`` (gradients flow when enabled by the caller).

    Position ids count real tokens only, as in generation with left padding; only the logits that predict
    completion tokens are computed (``logits_to_keep``). With ``value_head``, the value of the state before each
    completion token is read from the last hidden state at the same positions. ``temperature`` divides the logits,
    so that tokens sampled at a temperature are scored under the distribution that sampled them (0 means greedy
    and scores at 1).
    """
    n, r = rollout.completion_ids.shape
    position_ids = (rollout.attention_mask.cumsum(-1) - 1).clamp(min=0)
    # The last R + 1 positions are kept: position P - 1 + t predicts completion token t; the last predicts nothing.
    no_target = rollout.completion_ids.new_zeros(n, 1)
    scores = token_scores(
        model,
        rollout.input_ids,
        rollout.attention_mask,
        torch.cat([rollout.completion_ids, no_target], dim=1),
        torch.cat([rollout.completion_mask, no_target.bool()], dim=1),
        position_ids=position_ids,
        logits_to_keep=r + 1,
        temperature=temperature,
        with_stats=with_entropy,
        with_hidden=value_head is not None,
    )
    entropy = None if scores.entropy is None else scores.entropy[:, :-1]
    values = None if value_head is None else value_head(scores.hidden[:, :-1])  # (N, R)
    return CompletionScores(scores.logps[:, :-1], entropy, values)


class ValueHead(torch.nn.Module):
    """A scalar value per position from a causal LM's last hidden state (PPO's critic head).

    Args:
        hidden_size: Width of the model's hidden state.

    """

    def __init__(self, hidden_size: int) -> None:
        """See the class docstring."""
        super().__init__()
        self.summary = torch.nn.Linear(hidden_size, 1)
        torch.nn.init.zeros_(self.summary.weight)
        torch.nn.init.zeros_(self.summary.bias)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        """Values of hidden states of shape (N, R, H); returns shape (N, R)."""
        return self.summary(hidden.to(self.summary.weight.dtype)).squeeze(-1)


# Checkpoints keep the module's hyperparameters; let them load with torch.load(weights_only=True).
torch.serialization.add_safe_globals([SamplingConfig])
