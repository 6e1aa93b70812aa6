"""Dynamic padding: pad each batch to its own longest row."""

from __future__ import annotations

import torch
from torch.nn.utils.rnn import pad_sequence

from lit_align.types import IGNORE_INDEX, BinaryBatch, PairwiseBatch, PromptBatch, SFTBatch


def pad(sequences: list[list[int]], value: int, side: str = "right") -> torch.Tensor:
    """Stack lists of ids into one tensor padded with ``value`` on ``side``; the result has shape (B, T)."""
    return pad_sequence(
        [torch.tensor(s, dtype=torch.long) for s in sequences], batch_first=True, padding_value=value, padding_side=side
    )


def collate_sft(features: list[dict[str, list[int]]], pad_token_id: int) -> SFTBatch:
    """Right-pad ``input_ids`` and ``labels`` of tokenized rows into an :class:`SFTBatch`."""
    input_ids = [f["input_ids"] for f in features]
    return SFTBatch(
        input_ids=pad(input_ids, pad_token_id),
        attention_mask=pad([[1] * len(ids) for ids in input_ids], 0),
        labels=pad([f["labels"] for f in features], IGNORE_INDEX),
    )


def _sequences(prompts: list[list[int]], completions: list[list[int]]) -> tuple[list[list[int]], list[list[int]]]:
    ids = [p + c for p, c in zip(prompts, completions, strict=True)]
    labels = [[IGNORE_INDEX] * len(p) + c for p, c in zip(prompts, completions, strict=True)]
    return ids, labels


def _stack(ids: list[list[int]], labels: list[list[int]], pad_token_id: int) -> dict[str, torch.Tensor]:
    return {
        "input_ids": pad(ids, pad_token_id),
        "attention_mask": pad([[1] * len(x) for x in ids], 0),
        "labels": pad(labels, IGNORE_INDEX),
    }


def collate_pairwise(features: list[dict], pad_token_id: int) -> PairwiseBatch:
    """Stack prompt + chosen rows, then prompt + rejected rows, into a :class:`PairwiseBatch`."""
    prompts = [f["prompt_ids"] for f in features] * 2
    completions = [f["chosen_ids"] for f in features] + [f["rejected_ids"] for f in features]
    batch = _stack(*_sequences(prompts, completions), pad_token_id)
    return PairwiseBatch(**batch, index=torch.tensor([f["index"] for f in features]))


def collate_binary(features: list[dict], pad_token_id: int) -> BinaryBatch:
    """Stack each prompt with its completion, then with its mismatched completion (KTO's KL rows)."""
    prompts = [f["prompt_ids"] for f in features]
    completions = [f["completion_ids"] for f in features] + [f["kl_completion_ids"] for f in features]
    batch = _stack(*_sequences(prompts * 2, completions), pad_token_id)
    return BinaryBatch(
        **batch,
        desirable=torch.tensor([f["label"] for f in features], dtype=torch.bool),
        index=torch.tensor([f["index"] for f in features]),
    )


def collate_prompts(features: list[dict], pad_token_id: int) -> PromptBatch:
    """Left-pad tokenized prompts and keep their raw prompts and other columns, into a :class:`PromptBatch`."""
    ids = [f["prompt_ids"] for f in features]
    names = features[0]["columns"].keys()
    return PromptBatch(
        input_ids=pad(ids, pad_token_id, side="left"),
        attention_mask=pad([[1] * len(x) for x in ids], 0, side="left"),
        prompts=[f["prompt"] for f in features],
        columns={name: [f["columns"].get(name) for f in features] for name in names},
        index=torch.tensor([f["index"] for f in features]),
    )
