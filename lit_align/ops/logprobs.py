"""Per-token log-probabilities and masked reductions.

Shape legend: B batch, T sequence length, V vocabulary size.
"""

from __future__ import annotations

import torch

from lit_align.types import IGNORE_INDEX


def shift_labels(labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Align labels with the logits that predict them (position t predicts token t + 1).

    Args:
        labels: Token ids with ``IGNORE_INDEX`` where the loss does not count. Shape: (B, T)

    Returns:
        ``(targets, loss_mask)``: the next token at each position (0 where it does not count) and a bool mask of the
        positions that count; the last position never counts. Shapes: (B, T), (B, T)

    """
    assert labels.dim() == 2, f"labels must be (B, T), got {tuple(labels.shape)}"
    shifted = torch.full_like(labels, IGNORE_INDEX)
    shifted[:, :-1] = labels[:, 1:]
    loss_mask = shifted != IGNORE_INDEX
    return shifted.masked_fill(~loss_mask, 0), loss_mask


def token_logps(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Log-probability of each target token under the logits, one row at a time.

    Equivalent to ``log_softmax(logits).gather(-1, targets)``, but only one row's (T, V) normaliser is alive at a
    time, so peak memory does not hold a second full-vocabulary tensor of the whole batch.

    Args:
        logits: Unnormalised next-token scores. Shape: (B, T, V)
        targets: Token ids to score. Shape: (B, T)

    Returns:
        ``logits[b, t, targets[b, t]] - logsumexp(logits[b, t])``. Shape: (B, T)

    """
    assert logits.shape[:2] == targets.shape, f"logits {tuple(logits.shape)} and targets {tuple(targets.shape)} differ"
    rows = []
    for row_logits, row_targets in zip(logits, targets, strict=True):  # (T, V), (T,)
        picked = row_logits.gather(-1, row_targets.unsqueeze(-1)).squeeze(-1)  # (T,)
        rows.append(picked.float() - torch.logsumexp(row_logits.float(), dim=-1))
    return torch.stack(rows)


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``values`` over the positions where ``mask`` is True; 0 when nothing counts.

    Args:
        values: Any tensor. Shape: (B, T)
        mask: Bool, True where a value counts. Shape: (B, T)

    Returns:
        Scalar mean. Shape: ()

    """
    assert values.shape == mask.shape, f"values {tuple(values.shape)} and mask {tuple(mask.shape)} differ"
    return (values * mask).sum() / mask.sum().clamp(min=1)


def sequence_logps(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed log-probability of each row's labelled tokens, and how many there are.

    Args:
        logits: Next-token scores of a causal LM. Shape: (B, T, V)
        labels: Token ids where they count, ``IGNORE_INDEX`` elsewhere (unshifted). Shape: (B, T)

    Returns:
        ``(logps, num_tokens)``: sum of log p over counted tokens, and their count. Shapes: (B,), (B,)

    """
    targets, loss_mask = shift_labels(labels)
    per_token = token_logps(logits, targets) * loss_mask
    return per_token.sum(-1), loss_mask.sum(-1)
