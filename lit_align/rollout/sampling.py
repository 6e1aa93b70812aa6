"""Sampling settings and rollouts: repeat prompts G times, generate with transformers, mask after EOS.

Shape legend: B prompts, G completions per prompt, N = B x G completions, P prompt length (left-padded),
R completion length (up to ``max_new_tokens``), V vocabulary size.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.distributed as dist

from lit_align.domains import NonNegativeFloat, PositiveInt, TopP, check_fields
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
    """Sample one completion per row of ``batch`` with transformers ``generate`` (KV cache, no-grad, eval mode).

    Every process must call this together when the model is sharded: with more than one process, generation runs
    with ``synced_gpus`` so ranks whose completions have ended keep stepping until all have.
    """
    completion_ids = generate_ids(
        model, batch["input_ids"], batch["attention_mask"], sampling, pad_token_id=pad_token_id, stop_ids=stop_ids
    )
    return to_rollout(batch, completion_ids, sampling, pad_token_id=pad_token_id, stop_ids=stop_ids)


def generate_ids(
    model: torch.nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    sampling: SamplingConfig,
    *,
    pad_token_id: int,
    stop_ids: list[int],
) -> torch.Tensor:
    """Completion tokens from transformers ``generate`` for left-padded prompts of shape (N, P); returns (N, R).

    Sampling draws from ``torch``'s global generator (seed it for repeatable samples); greedy when
    ``sampling.temperature`` is 0; top-k is off, so only temperature and top-p shape the distribution.
    """
    was_training = model.training
    model.eval()
    greedy = sampling.temperature == 0
    sampling_args = {} if greedy else {"temperature": sampling.temperature, "top_p": sampling.top_p, "top_k": 0}
    try:
        with torch.no_grad():
            out = model.generate(
                input_ids=input_ids,
                attention_mask=attention_mask,
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
    return out[:, input_ids.shape[1] :]


def to_rollout(
    batch: PromptBatch,
    completion_ids: torch.Tensor,
    sampling: SamplingConfig,
    *,
    pad_token_id: int,
    stop_ids: list[int],
) -> Rollout:
    """Prompts and sampled tokens as a :class:`Rollout`: counted up to and including the first stop token.

    Args:
        batch: The prompts, left-padded. Shape: (N, P)
        completion_ids: Sampled tokens, whatever follows a stop token is ignored (any engine's output, right-padded
            to the longest completion). Shape: (N, R)
        sampling: ``mask_truncated`` leaves completions without a stop token out of the loss.
        pad_token_id: Written wherever a token does not count.
        stop_ids: Token ids that end a completion.

    """
    mask, truncated = mask_after_eos(completion_ids, stop_ids)
    completion_ids = completion_ids.masked_fill(~mask, pad_token_id)
    attention_mask = torch.cat([batch["attention_mask"], mask.long()], dim=1)
    input_ids = torch.cat([batch["input_ids"], completion_ids], dim=1).masked_fill(attention_mask == 0, pad_token_id)
    if sampling.mask_truncated:
        mask = mask & ~truncated.unsqueeze(-1)
    return Rollout(input_ids, attention_mask, completion_ids, mask, truncated)


def cat_rollouts(rollouts: list[Rollout], pad_token_id: int) -> Rollout:
    """Stack rollouts of different prompt and completion lengths: prompts left-padded, completions right-padded.

    Args:
        rollouts: Rollouts with shapes (N_k, P_k + R_k).
        pad_token_id: Written into the new padding (which the masks leave out).

    Returns:
        One rollout of shape (sum N_k, max P_k + max R_k); each row's tokens, masks and positions are unchanged.

    """
    if len(rollouts) == 1:
        return rollouts[0]
    prompt_len = max(r.prompt_length for r in rollouts)
    completion_len = max(r.completion_ids.shape[1] for r in rollouts)
    parts: dict[str, list[torch.Tensor]] = {name: [] for name in Rollout._fields}
    for r in rollouts:
        p, c = r.prompt_length, r.completion_ids.shape[1]
        left, right = prompt_len - p, completion_len - c
        pad = torch.nn.functional.pad
        prompt_ids = pad(r.input_ids[:, :p], (left, 0), value=pad_token_id)
        prompt_mask = pad(r.attention_mask[:, :p], (left, 0), value=0)
        completion_ids = pad(r.completion_ids, (0, right), value=pad_token_id)
        parts["input_ids"].append(torch.cat([prompt_ids, completion_ids], dim=1))
        parts["attention_mask"].append(torch.cat([prompt_mask, pad(r.attention_mask[:, p:], (0, right), value=0)], 1))
        parts["completion_ids"].append(completion_ids)
        parts["completion_mask"].append(pad(r.completion_mask, (0, right), value=False))
        parts["truncated"].append(r.truncated)
    return Rollout(*(torch.cat(parts[name]) for name in Rollout._fields))


# Checkpoints keep the module's hyperparameters; let them load with torch.load(weights_only=True).
torch.serialization.add_safe_globals([SamplingConfig])
