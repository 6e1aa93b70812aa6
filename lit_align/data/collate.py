"""Dynamic padding: pad each batch to its own longest row."""

from __future__ import annotations

import torch
from torch.nn.utils.rnn import pad_sequence

from lit_align.types import IGNORE_INDEX, SFTBatch


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
