"""KL-shaped per-token rewards for PPO-style RLHF.

Shape legend: N completions, R completion length.
"""

from __future__ import annotations

import torch

from lit_align.ops.advantages import KLEstimator, kl_estimate


def last_token_mask(mask: torch.Tensor) -> torch.Tensor:
    """Bool mask of each row's last counted token (all False for a row with none).

    Args:
        mask: Bool, True where a token counts. Shape: (N, R)

    Returns:
        True at the last True of each row. Shape: (N, R)

    """
    return (mask.long().cumsum(-1) == mask.sum(-1, keepdim=True)) & mask


def kl_shaped_rewards(
    scores: torch.Tensor,
    token_logps: torch.Tensor,
    ref_token_logps: torch.Tensor,
    mask: torch.Tensor,
    *,
    kl_coef: float,
    estimator: KLEstimator | str = "k1",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token rewards: a KL penalty at every token plus the sequence score at the last one.

    As in Ziegler et al., 2019 (arXiv:1909.08593) and Ouyang et al., 2022 (arXiv:2203.02155):

    r_t = -kl_coef * KL_t + [t = last] * score,  KL_t = log pi(y_t) - log ref(y_t) (k1) or another estimator.

    Args:
        scores: Sequence reward of each completion; NaN (unknown) counts as 0 here. Shape: (N,)
        token_logps: Log-probs of the sampled tokens under the sampling policy. Shape: (N, R)
        ref_token_logps: Log-probs of the same tokens under the reference. Shape: (N, R)
        mask: Bool, True where a token counts. Shape: (N, R)
        kl_coef: Weight of the KL penalty.
        estimator: ``k1`` (TRL and OpenRLHF's default), ``k2`` or ``k3``.

    Returns:
        ``(token_rewards, kl)``: the shaped rewards and the per-token KL estimate, both 0 off the mask.
        Shapes: (N, R), (N, R)

    """
    assert token_logps.shape == ref_token_logps.shape == mask.shape, "log-probs and mask must share (N, R)"
    assert scores.shape == mask.shape[:1], f"scores must be (N,), got {tuple(scores.shape)}"
    kl = kl_estimate(token_logps, ref_token_logps, estimator) * mask  # (N, R)
    bonus = last_token_mask(mask) * scores.nan_to_num(0.0).unsqueeze(-1)  # (N, R)
    return -kl_coef * kl + bonus, kl
