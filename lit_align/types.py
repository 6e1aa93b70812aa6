"""Batch contracts shared by data modules and objectives.

Shape legend: B batch, T sequence length (padded to the longest row of the batch).
"""

from __future__ import annotations

from typing import TypedDict

import torch

IGNORE_INDEX = -100
"""Label value of a token that does not count in the loss (Hugging Face convention)."""


class SFTBatch(TypedDict):
    """A right-padded batch of token sequences for next-token training.

    Attributes:
        input_ids: Token ids, padding filled with the pad id. Shape: (B, T)
        attention_mask: 1 for real tokens, 0 for padding. Shape: (B, T)
        labels: Token ids where the loss counts, ``IGNORE_INDEX`` elsewhere; not yet shifted. Shape: (B, T)

    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    labels: torch.Tensor
