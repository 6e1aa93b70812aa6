"""Bradley-Terry reward-model loss.

Shape legend: B number of pairs.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def bradley_terry_loss(
    chosen_scores: torch.Tensor, rejected_scores: torch.Tensor, margin: torch.Tensor | None = None
) -> torch.Tensor:
    """Pairwise reward-model loss (Bradley & Terry, 1952; as in Ouyang et al., 2022; arXiv:2203.02155).

    loss = -log sigmoid(r_c - r_r - m), with m an optional per-pair margin (Llama 2, arXiv:2307.09288).

    Args:
        chosen_scores: Scalar reward of each chosen completion. Shape: (B,)
        rejected_scores: Scalar reward of each rejected completion. Shape: (B,)
        margin: Optional required margin per pair. Shape: (B,)

    Returns:
        Per-pair losses. Shape: (B,)

    """
    assert chosen_scores.shape == rejected_scores.shape and chosen_scores.dim() == 1, "scores must be (B,)"
    diff = chosen_scores - rejected_scores
    if margin is not None:
        diff = diff - margin
    return -F.logsigmoid(diff)


def center_penalty(chosen_scores: torch.Tensor, rejected_scores: torch.Tensor) -> torch.Tensor:
    """Auxiliary term that keeps reward-model scores centred on 0 (Eisenstein et al., 2023; arXiv:2312.09244).

    penalty = mean_b (r_c[b] + r_r[b])^2, as TRL's ``center_rewards_coefficient`` term.

    Args:
        chosen_scores: Scalar reward of each chosen completion. Shape: (B,)
        rejected_scores: Scalar reward of each rejected completion. Shape: (B,)

    Returns:
        Scalar penalty. Shape: ()

    """
    assert chosen_scores.shape == rejected_scores.shape and chosen_scores.dim() == 1, "scores must be (B,)"
    return ((chosen_scores + rejected_scores) ** 2).mean()
