# Over 400 lines on purpose: every forward pass that scores tokens with a causal-LM role (chunked log-probs, selected
# logits, hidden states) shares one head-swap mechanism; it stays in one place.
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

import contextlib
import inspect
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, NamedTuple

import torch
from torch.distributed.fsdp import FSDPModule

from lit_align.losses.process_reward import likelihood_step_logits
from lit_align.ops.logprobs import linear_token_logps, shift_labels, token_logps
from lit_align.types import IGNORE_INDEX

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
    **model_kwargs: Any,
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
        model_kwargs: Passed to the model as they are (a KV cache to continue from).

    Returns:
        :class:`TokenScores` of shape (B, K).

    """
    scale = 1.0 if temperature in (0.0, 1.0) else 1.0 / temperature
    kwargs: dict[str, Any] = {"input_ids": input_ids, "attention_mask": attention_mask, "use_cache": False}
    kwargs |= model_kwargs
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


def selected_logits(
    model: torch.nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    token_ids: list[int],
    targets: torch.Tensor | None = None,
    mask: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The logits of a few vocabulary entries at every position, and optionally target log-probs, in one forward.

    Where :func:`output_layer` allows, the LM head computes only those rows of its weight, and the log-probs of
    ``targets`` at ``mask`` through :func:`~lit_align.ops.logprobs.linear_token_logps` (chunked), inside the model's
    own forward (so FSDP2 and PEFT see an ordinary call): no (B, T, V) tensor is made. Otherwise the full logits are
    computed and indexed. Gradients flow when the caller enables them.

    Args:
        model: A Hugging Face causal LM.
        input_ids: Token ids. Shape: (B, T)
        attention_mask: 1 for real tokens. Shape: (B, T)
        token_ids: The K vocabulary entries whose logits are returned.
        targets: The token each position predicts (any id where not scored), or None. Shape: (B, T)
        mask: Bool, True where a target is scored. Shape: (B, T)

    Returns:
        ``(logits, logps)``: shapes (B, T, K) and (B, T) (0 where not scored), or None without ``targets``.

    """
    kwargs = {"input_ids": input_ids, "attention_mask": attention_mask, "use_cache": False}
    head = output_layer(model)
    if head is None:
        logits = model(**kwargs).logits
        logps = None if targets is None else token_logps(logits, targets.masked_fill(~mask, 0)) * mask
        return logits[..., token_ids], logps
    rows = torch.tensor(token_ids, device=input_ids.device, dtype=torch.long)  # may be empty (likelihood head)
    sink: dict = {}

    def forward(hidden: torch.Tensor) -> torch.Tensor:  # (B, T, H) -> (B, T, K)
        if targets is not None:
            scored = linear_token_logps(hidden[mask], head.weight, head.bias, targets[mask]).logps
            sink["logps"] = hidden.new_zeros(mask.shape, dtype=torch.float32).masked_scatter(mask, scored)
        bias = None if head.bias is None else head.bias[rows]
        return torch.nn.functional.linear(hidden, head.weight[rows], bias)

    head.forward = forward  # an instance attribute shadows the class's forward; removed below
    try:
        return model(**kwargs).logits, sink.get("logps")
    finally:
        del head.forward


def _entropy(logits: torch.Tensor) -> torch.Tensor:
    logp = torch.log_softmax(logits.float(), dim=-1)  # (K, V): one row at a time
    return -(logp.exp() * logp).sum(-1)


def stacked_logps(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed completion log-probs of every row of a stacked batch (``input_ids``, ``attention_mask``, ``labels``).

    Rows ``b`` and ``B + b`` of a stacked batch (chosen and rejected, or KTO's completion and KL completion) share
    their prompt; when the model allows it (:func:`shares_prefix`), the prompt is run once and both continue from
    its cache (:func:`shared_prefix_logps`), otherwise every row is run whole.

    Returns:
        Summed completion log-probs and completion token counts of every row. Shapes: (2B,), (2B,)

    """
    targets, loss_mask = shift_labels(batch["labels"])
    if shares_prefix(model, batch):
        return shared_prefix_logps(model, batch), loss_mask.sum(-1)
    scores = token_scores(model, batch["input_ids"], batch["attention_mask"], targets, loss_mask)
    return scores.logps.sum(-1), loss_mask.sum(-1)


def _prompt_lengths(labels: torch.Tensor) -> torch.Tensor:
    """Tokens before the first labelled token of each row (its prompt), shape (2B,)."""
    counted = labels != IGNORE_INDEX
    return torch.where(counted.any(-1), counted.float().argmax(-1), labels.shape[1])


def _cache_argument(model: torch.nn.Module) -> str | None:
    """The forward argument a model takes its KV cache by (``cache`` in transformers 5, else ``past_key_values``)."""
    base = getattr(model, "get_base_model", lambda: model)()
    parameters = inspect.signature(base.forward).parameters
    return next((name for name in ("cache", "past_key_values") if name in parameters), None)


def without_autograd(model: torch.nn.Module) -> contextlib.AbstractContextManager:
    """``torch.inference_mode`` for a forward pass whose outputs are constants (reference, old log-probs).

    Faster than ``no_grad`` (no version counters or view tracking; about 4% on a 26.2M reference forward). Its
    outputs are inference tensors: ``clone()`` them before they meet tensors that autograd records. Under FSDP2,
    ``no_grad`` instead: FSDP reuses its unsharded parameter storage across forward passes.
    """
    sharded = any(isinstance(m, FSDPModule) for m in model.modules())
    return torch.no_grad() if sharded else torch.inference_mode()


def reuses_cache_exactly(model: torch.nn.Module) -> bool:
    """Whether rows may continue from a KV cache computed once for their shared prompt, exactly.

    Needs a transformers model (not remote code) with full attention only (a sliding window would drop cached keys),
    not FSDP-sharded (gradients that reach a block through its cached keys and values bypass the hooks that gather
    its weights for the backward), and no gradient checkpointing (Hugging Face turns the cache off under it).
    """
    base = getattr(model, "get_base_model", lambda: model)()
    config = getattr(base, "config", None)
    if not type(base).__module__.startswith("transformers.") or _cache_argument(model) is None:
        return False
    if isinstance(model, FSDPModule) or isinstance(base, FSDPModule):
        return False
    if getattr(base, "is_gradient_checkpointing", False) or getattr(config, "sliding_window", None) is not None:
        return False
    return all(kind == "full_attention" for kind in getattr(config, "layer_types", None) or ())


def shares_prefix(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> bool:
    """Whether :func:`shared_prefix_logps` is exact and worth it for this model and batch.

    Needs: a model for which :func:`reuses_cache_exactly` holds, the two halves of the batch starting with the same
    prompt of at least two tokens, and fewer padded tokens than the whole rows (prompts of very unequal length in
    one batch pad both passes).
    """
    if not reuses_cache_exactly(model):
        return False
    ids, labels = batch["input_ids"], batch["labels"]
    if len(ids) % 2:
        return False
    lengths = _prompt_lengths(labels)
    first, second = lengths.chunk(2)
    if not torch.equal(first, second) or int(first.min()) < 2:
        return False
    shared = torch.arange(ids.shape[1], device=ids.device) < first.unsqueeze(-1)  # (B, T)
    halves = ids.chunk(2)
    if not bool(((halves[0] == halves[1]) | ~shared).all()):
        return False
    # Padded tokens each way: prompts of unequal length pad the prefix pass and the continuations apart.
    prefix = int(first.max()) - 1
    continuation = int((batch["attention_mask"].sum(-1) - lengths + 1).max())
    return len(first) * prefix + len(ids) * continuation < len(ids) * ids.shape[1]


def shared_prefix_logps(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Summed completion log-probs of a stacked batch, running each shared prompt once (exact).

    Each prompt but its last token (the prefix, Q_b tokens) is run once, for both rows of its pair, with the KV
    cache on; the cache is repeated for the two rows, which continue from it with the last prompt token plus their
    completion. Positions continue from the prefix, padding inside the prefix is masked, so every token sees the
    same keys at the same positions as in a whole-row pass, and gradients flow through the cache to the prefix.
    For DPO with prompts as long as completions this runs 3/4 of the tokens.

    Returns:
        Summed log-probs of each row's labelled tokens. Shape: (2B,)

    """
    ids, attention, labels = batch["input_ids"], batch["attention_mask"], batch["labels"]
    rows, device = len(ids), ids.device
    pairs = rows // 2
    prefix = _prompt_lengths(labels)[:pairs] - 1  # (B,) the last prompt token is run with each continuation
    width = int(prefix.max())
    columns = torch.arange(width, device=device)
    prefix_mask = (columns < prefix.unsqueeze(-1)).long()  # (B, Q)
    prefix_ids = ids[:pairs, :width].masked_fill(prefix_mask == 0, 0)
    cache_name = _cache_argument(model)
    out = model(
        input_ids=prefix_ids,
        attention_mask=prefix_mask,
        position_ids=columns.expand(pairs, -1),
        use_cache=True,
        logits_to_keep=1,
    )
    cache = getattr(out, "cache", None) or out.past_key_values
    cache.reorder_cache(torch.arange(pairs, device=device).repeat(2))  # rows b and B + b share pair b's prefix
    # Continuations: row r from its prefix end to its last real token, right-padded.
    starts = prefix.repeat(2)  # (2B,)
    ends = attention.sum(-1)
    length = int((ends - starts).max())
    offsets = torch.arange(length, device=device)
    positions = starts.unsqueeze(-1) + offsets  # (2B, C)
    inside = positions < ends.unsqueeze(-1)
    gather = positions.clamp(max=ids.shape[1] - 1)
    cont_ids = ids.gather(1, gather).masked_fill(~inside, 0)
    cont_labels = labels.gather(1, gather).masked_fill(~inside, IGNORE_INDEX)
    targets, loss_mask = shift_labels(cont_labels)
    scores = token_scores(
        model,
        cont_ids,
        torch.cat([prefix_mask.repeat(2, 1), inside.long()], dim=1),
        targets,
        loss_mask,
        position_ids=positions,
        use_cache=True,
        **{cache_name: cache},
    )
    return scores.logps.sum(-1)


def prompt_groups(model: torch.nn.Module, prompt_ids: torch.Tensor) -> torch.Tensor | None:
    """Which run of identical consecutive prompts each row belongs to, when sharing their pass pays and is exact.

    Online objectives sample G completions per prompt into G consecutive rows, so their prompts are run G times in
    a whole-row pass. Returns None unless :func:`reuses_cache_exactly` holds, prompts have at least two tokens, and
    there are at most half as many distinct runs as rows.

    Args:
        model: The model that will score the rows.
        prompt_ids: Left-padded prompts of the rows. Shape: (N, P)

    Returns:
        The run index of every row, or None. Shape: (N,)

    """
    n, width = prompt_ids.shape
    if n < 2 or width < 2 or not reuses_cache_exactly(model):
        return None
    starts = torch.ones(n, dtype=torch.bool, device=prompt_ids.device)
    starts[1:] = (prompt_ids[1:] != prompt_ids[:-1]).any(-1)
    if 2 * int(starts.sum()) > n:
        return None
    return starts.long().cumsum(0) - 1


def shared_prompt_token_scores(
    model: torch.nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    position_ids: torch.Tensor,
    targets: torch.Tensor,
    mask: torch.Tensor,
    *,
    prompt_length: int,
    groups: torch.Tensor,
    **kwargs: Any,
) -> TokenScores:
    """:func:`token_scores` of the last ``K = T - P + 1`` positions, each group's left-padded prompt run once (exact).

    The first ``P - 1`` prompt tokens of each group (see :func:`prompt_groups`) run once with the KV cache on; the
    cache is repeated for the group's rows, which continue with the last prompt token plus their completion at the
    positions a whole-row pass gives them. Gradients flow through the cache to the prompt.

    Args:
        model: A causal LM for which :func:`reuses_cache_exactly` holds.
        input_ids: Left-padded prompts, then completions. Shape: (N, T)
        attention_mask: 1 for real tokens. Shape: (N, T)
        position_ids: Positions of a whole-row pass. Shape: (N, T)
        targets: The token each of the last K positions predicts. Shape: (N, K)
        mask: Bool, True where a position is scored. Shape: (N, K)
        prompt_length: P, the padded prompt length.
        groups: Group index of every row (rows of a group share their prompt). Shape: (N,)
        kwargs: Passed on to :func:`token_scores` (temperature, stats, hidden states).

    Returns:
        :class:`TokenScores` of shape (N, K).

    """
    first = torch.ones_like(groups, dtype=torch.bool)
    first[1:] = groups[1:] != groups[:-1]
    cut = prompt_length - 1
    out = model(
        input_ids=input_ids[first, :cut],
        attention_mask=attention_mask[first, :cut],
        position_ids=position_ids[first, :cut],
        use_cache=True,
        logits_to_keep=1,
    )
    cache = getattr(out, "cache", None) or out.past_key_values
    cache.reorder_cache(groups)
    return token_scores(
        model,
        input_ids[:, cut:],
        attention_mask,
        targets,
        mask,
        position_ids=position_ids[:, cut:],
        use_cache=True,
        **{_cache_argument(model): cache},
        **kwargs,
    )


def position_logps(
    model: torch.nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor, wanted: torch.Tensor
) -> torch.Tensor:
    """The log-probability a causal LM gives each wanted token given the tokens before it, in one forward.

    Computed at the position before each token, chunked through :func:`selected_logits` (no (B, T, V) tensor);
    gradients flow when the caller enables them.

    Args:
        model: A Hugging Face causal LM.
        input_ids: Token ids. Shape: (B, T)
        attention_mask: 1 for real tokens. Shape: (B, T)
        wanted: Bool, True on the tokens whose log-prob is wanted (the first token has none: 0). Shape: (B, T)

    Returns:
        ``logps[:, t] = log p(token t | tokens before t)`` where wanted, 0 elsewhere. Shape: (B, T)

    """
    targets = input_ids.roll(-1, dims=1)  # position t predicts token t + 1
    mask = wanted.roll(-1, dims=1)
    mask[:, -1] = False
    _, logps = selected_logits(model, input_ids, attention_mask, [], targets, mask)
    return torch.nn.functional.pad(logps[:, :-1], (1, 0))


def likelihood_logits(
    model: torch.nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    counted: torch.Tensor,
    scale: float,
    offset: float,
) -> torch.Tensor:
    """Step logits read from a causal LM's own likelihood of the solution (a ``likelihood`` PRM), in one forward.

    The log-prob of every counted token (:func:`position_logps`), then
    :func:`~lit_align.losses.process_reward.likelihood_step_logits`.

    Args:
        model: A Hugging Face causal LM.
        input_ids: Token ids. Shape: (B, T)
        attention_mask: 1 for real tokens. Shape: (B, T)
        counted: Bool, True on the solution tokens whose likelihood counts. Shape: (B, T)
        scale: Logit per nat of the lowest log-prob.
        offset: Logit of a solution of probability 1.

    Returns:
        The step logit at every position. Shape: (B, T)

    """
    token = position_logps(model, input_ids, attention_mask, counted)
    return likelihood_step_logits(token, counted, scale, offset)
