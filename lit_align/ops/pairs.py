"""Pair selection by reward for online preference methods.

Shape legend: N completions (B prompts x G), G completions per prompt, M pairs kept.
"""

from __future__ import annotations

import torch


def best_and_worst(rewards: torch.Tensor, group_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Row indices of the highest- and lowest-scored completion of each prompt; tied or unknown groups give none.

    Args:
        rewards: Reward per completion, NaN when unknown; the G completions of a prompt are consecutive. Shape: (N,)
        group_size: Completions per prompt (G).

    Returns:
        ``(chosen, rejected)`` row indices into the N completions, one pair per usable prompt. Shapes: (M,), (M,)

    """
    grouped = rewards.view(-1, group_size)  # (B, G)
    high = grouped.nan_to_num(-torch.inf).argmax(-1)
    low = grouped.nan_to_num(torch.inf).argmin(-1)
    best = grouped.gather(-1, high.unsqueeze(-1)).squeeze(-1)
    worst = grouped.gather(-1, low.unsqueeze(-1)).squeeze(-1)
    usable = (best > worst) & ~best.isnan() & ~worst.isnan()
    offsets = torch.arange(grouped.shape[0], device=rewards.device) * group_size
    return (offsets + high)[usable], (offsets + low)[usable]
