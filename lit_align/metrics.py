"""Alignment metrics as pure functions; objectives log what these return under ``train/`` and ``val/``.

Shape legend: B batch, T sequence length, V vocabulary size.
"""

from __future__ import annotations

import torch


def token_accuracy(logits: torch.Tensor, targets: torch.Tensor, loss_mask: torch.Tensor) -> torch.Tensor:
    """Fraction of counted positions where the most likely token is the target.

    Args:
        logits: Next-token scores. Shape: (B, T, V)
        targets: Target ids. Shape: (B, T)
        loss_mask: Bool, True where a position counts. Shape: (B, T)

    Returns:
        Accuracy in [0, 1]; 0 when nothing counts. Shape: ()

    """
    hits = (logits.argmax(dim=-1) == targets) & loss_mask
    return hits.sum() / loss_mask.sum().clamp(min=1)
