"""Completions of text or chat prompts, decoded, in batches.

What ``evaluate``, the win-rate callback and ``generate`` sample.

Shape legend: B prompts, N completions per prompt.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch
from tqdm.auto import tqdm

from lit_align.data.templates import is_conversational, render_prompt
from lit_align.rollout.sampling import SamplingConfig, generate_ids, mask_after_eos, stop_token_ids


class Completion(NamedTuple):
    """One decoded completion.

    Attributes:
        text: The decoded tokens, special tokens left out.
        token_ids: The sampled tokens up to, not including, the first stop token.
        truncated: True when no stop token came within ``max_new_tokens``.

    """

    text: str
    token_ids: list[int]
    truncated: bool


def as_reward_input(prompt: Any, text: str) -> Any:
    """A completion as rewards read it: the text, or one assistant message when the prompt is messages."""
    return [{"role": "assistant", "content": text}] if is_conversational(prompt) else text


@torch.no_grad()
def complete(
    model: torch.nn.Module,
    tokenizer: Any,
    prompts: list[Any],
    sampling: SamplingConfig,
    *,
    num_samples: int = 1,
    batch_size: int = 64,
    seed: int | None = None,
    progress: str | None = None,
    prefixes: list[str] | None = None,
) -> list[list[Completion]]:
    """Sample ``num_samples`` completions of every prompt (greedy when ``sampling.temperature`` is 0).

    Prompts are rendered as in training (chat template with the generation prompt for messages), left-padded and
    sent through transformers ``generate`` in batches of ``batch_size`` rows (prompt x sample); the samples of one
    prompt are consecutive rows. With ``seed``, torch's generator is seeded first, so two models that are the same
    sample the same completions.

    Args:
        model: A causal LM.
        tokenizer: Its tokenizer.
        prompts: Text or messages, B items.
        sampling: Temperature, top-p and ``max_new_tokens``.
        num_samples: Completions per prompt (N).
        batch_size: Rows per ``generate`` call.
        seed: Seed of the sampling.
        progress: Label of a progress bar (shown on terminals only); None shows none.
        prefixes: Text the answer of prompt i already starts with (e.g. the first steps of a solution); the model
            continues it, and the completion holds only what it wrote after it. None: answers start empty.

    Returns:
        B lists of N completions.

    """
    if seed is not None:
        torch.manual_seed(seed)
    stop_ids = stop_token_ids(model, tokenizer)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else stop_ids[0]
    rows = [p for p in prompts for _ in range(num_samples)]
    starts_with = [p for p in (prefixes or [""] * len(prompts)) for _ in range(num_samples)]
    device = next(model.parameters()).device
    out: list[Completion] = []
    starts = range(0, len(rows), batch_size)
    for start in tqdm(starts, desc=progress, disable=None if progress else True, unit="batch"):
        chunk = rows[start : start + batch_size]
        texts = [render_prompt(tokenizer, p) + q for p, q in zip(chunk, starts_with[start : start + batch_size],
                                                                   strict=True)]  # fmt: skip
        # A chat template already holds its special tokens; plain text gets the tokenizer's (e.g. BOS).
        enc = tokenizer(
            texts,
            return_tensors="pt",
            padding=True,
            padding_side="left",
            add_special_tokens=not is_conversational(chunk[0]),
        ).to(device)
        ids = generate_ids(
            model, enc["input_ids"], enc["attention_mask"], sampling, pad_token_id=pad_id, stop_ids=stop_ids
        )
        mask, truncated = mask_after_eos(ids, stop_ids)
        for row, counted, cut in zip(ids.tolist(), mask.tolist(), truncated.tolist(), strict=True):
            kept = [t for t, c in zip(row, counted, strict=True) if c and t not in stop_ids]
            out.append(Completion(tokenizer.decode(kept, skip_special_tokens=True), kept, cut))
    return [out[i * num_samples : (i + 1) * num_samples] for i in range(len(prompts))]
