"""Advantages, returns, whitening and KL estimators for the online objectives.

Shape legend: N completions (prompts x G), G group size (completions per prompt), R completion length.
"""

from __future__ import annotations

from enum import StrEnum

import torch

EPS = 1e-4


class AdvantageScale(StrEnum):
    """How GRPO divides the group-centred rewards: by the group's std, the batch's std, or not at all."""

    GROUP = "group"  # GRPO (Shao et al., 2024)
    BATCH = "batch"  # REINFORCE++-style, more stable with small groups
    NONE = "none"  # Dr. GRPO (Liu et al., 2025): no std division


def group_advantages(rewards: torch.Tensor, group_size: int, scale: AdvantageScale | str = "group") -> torch.Tensor:
    """Group-relative advantages ``A_i = (r_i - mean(r_group)) / std`` (Shao et al., 2024; arXiv:2402.03300).

    Completions of one prompt are consecutive rows. A NaN reward (every reward function failed or returned None)
    stays out of its group's mean and std and gets advantage 0. ``std`` is the unbiased standard deviation of the
    group (``group``) or of the whole batch (``batch``), plus ``EPS``; ``none`` only centres.

    Args:
        rewards: Scalar reward per completion, NaN when unknown. Shape: (N,) with N = prompts x group_size
        group_size: Completions per prompt (G).
        scale: ``group``, ``batch`` or ``none``.

    Returns:
        Advantages. Shape: (N,)

    """
    assert rewards.dim() == 1 and rewards.numel() % group_size == 0, (
        f"rewards must be (N,) with N divisible by group_size={group_size}, got {tuple(rewards.shape)}"
    )
    scale = AdvantageScale(scale)
    grouped = rewards.view(-1, group_size)  # (N/G, G)
    known = ~grouped.isnan()
    mean = grouped.nan_to_num(0.0).sum(-1, keepdim=True) / known.sum(-1, keepdim=True).clamp(min=1)  # (N/G, 1)
    centred = (grouped - mean).masked_fill(~known, 0.0)  # (N/G, G)
    if scale is AdvantageScale.NONE:
        return centred.view(-1)
    if scale is AdvantageScale.GROUP:
        count = known.sum(-1, keepdim=True)
        std = (centred.pow(2).sum(-1, keepdim=True) / (count - 1).clamp(min=1)).sqrt()
    else:
        values = rewards[~rewards.isnan()]
        std = values.std() if values.numel() > 1 else rewards.new_zeros(())
    return (centred / (std + EPS)).view(-1)


def group_reward_std(rewards: torch.Tensor, group_size: int) -> torch.Tensor:
    """Unbiased standard deviation of each group's known rewards (NaN ignored). Shape: (N/G,)."""
    grouped = rewards.view(-1, group_size)
    known = ~grouped.isnan()
    count = known.sum(-1)
    mean = grouped.nan_to_num(0.0).sum(-1) / count.clamp(min=1)
    centred = (grouped - mean.unsqueeze(-1)).masked_fill(~known, 0.0)
    return (centred.pow(2).sum(-1) / (count - 1).clamp(min=1)).sqrt()


def informative_rows(rewards: torch.Tensor, group_size: int, eps: float = 1e-6) -> torch.Tensor:
    """Rows of groups whose rewards differ (std above ``eps``): DAPO's dynamic-sampling filter keeps only those.

    A group whose completions all got one reward has zero group-relative advantage everywhere; dropping it keeps
    it out of the loss's normalisation too.

    Args:
        rewards: Rewards, G consecutive rows per prompt, NaN where unknown. Shape: (N,)
        group_size: Completions per prompt (G).
        eps: Spread at or below which a group counts as uniform.

    Returns:
        Bool, True for every row of a group with spread. Shape: (N,)

    """
    return (group_reward_std(rewards, group_size) > eps).repeat_interleave(group_size)


def gae(
    rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, *, gamma: float = 1.0, lam: float = 0.95
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation (Schulman et al., 2016; arXiv:1506.02438) over completion tokens.

    ``delta_t = r_t + gamma V_{t+1} - V_t`` and ``A_t = delta_t + gamma lam A_{t+1}``, where ``V`` after the last
    counted token is 0 (the episode ends there). Positions where ``mask`` is False get advantage and return 0.

    Args:
        rewards: Reward at each completion token (KL penalty per token plus the score at the last one). Shape: (N, R)
        values: Value estimate at each completion token. Shape: (N, R)
        mask: Bool, True for the completion's tokens (a prefix of each row). Shape: (N, R)
        gamma: Discount factor.
        lam: GAE lambda.

    Returns:
        ``(advantages, returns)`` with ``returns = advantages + values``. Shapes: (N, R), (N, R)

    """
    assert rewards.shape == values.shape == mask.shape, "rewards, values and mask must have one shape (N, R)"
    rewards, values = rewards * mask, values * mask
    advantages = torch.zeros_like(rewards)
    next_advantage = torch.zeros_like(rewards[:, 0])
    next_value = torch.zeros_like(rewards[:, 0])
    for t in reversed(range(rewards.shape[1])):
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        next_advantage = (delta + gamma * lam * next_advantage) * mask[:, t]
        advantages[:, t] = next_advantage
        next_value = values[:, t]
    return advantages, (advantages + values) * mask


def whiten(values: torch.Tensor, mask: torch.Tensor, *, shift_mean: bool = True) -> torch.Tensor:
    """Normalise ``values`` to unit variance (and zero mean when ``shift_mean``) over the counted positions.

    Args:
        values: Any tensor. Shape: (N, R)
        mask: Bool, True where a value counts. Shape: (N, R)
        shift_mean: Subtract the mean (False keeps it, as PPO does for rewards).

    Returns:
        Whitened values, 0 where ``mask`` is False. Shape: (N, R)

    """
    count = mask.sum().clamp(min=1)
    mean = (values * mask).sum() / count
    var = ((values - mean) ** 2 * mask).sum() / (count - 1).clamp(min=1)
    out = (values - mean) * torch.rsqrt(var + 1e-8)
    if not shift_mean:
        out = out + mean
    return out * mask


class KLEstimator(StrEnum):
    """Per-token estimators of KL(pi || ref) from samples of pi (Schulman, 2020, "Approximating KL divergence")."""

    K1 = "k1"  # log r, unbiased, high variance, can be negative
    K2 = "k2"  # (log r)^2 / 2, biased, low variance
    K3 = "k3"  # (r - 1) - log r with r = ref / pi: unbiased, always >= 0 (GRPO's choice)


def kl_estimate(
    token_logps: torch.Tensor, ref_token_logps: torch.Tensor, kind: KLEstimator | str = "k3"
) -> torch.Tensor:
    """Per-token KL estimate with ``log r = ref_logp - logp`` (k3) or ``logp - ref_logp`` (k1, k2).

    Args:
        token_logps: Policy log-prob of each sampled token. Shape: (N, R)
        ref_token_logps: Reference log-prob of the same tokens. Shape: (N, R)
        kind: ``k1``, ``k2`` or ``k3``.

    Returns:
        The estimate at each token. Shape: (N, R)

    """
    log_ratio = token_logps - ref_token_logps  # log pi / ref
    kind = KLEstimator(kind)
    if kind is KLEstimator.K1:
        return log_ratio
    if kind is KLEstimator.K2:
        return 0.5 * log_ratio**2
    return torch.exp(-log_ratio) - 1 + log_ratio


def adaptive_kl_coef(coef: float, kl: float, *, target: float, horizon: int, n_steps: int) -> float:
    """Adaptive KL controller (Ziegler et al., 2019; arXiv:1909.08593): move ``coef`` toward the target KL.

    ``error = clip(kl / target - 1, -0.2, 0.2)`` and ``coef <- coef (1 + error n_steps / horizon)``.
    """
    error = min(max(kl / target - 1.0, -0.2), 0.2)
    return coef * (1.0 + error * n_steps / horizon)
