"""Pairwise preference losses without a reference model: SimPO and ORPO.

Shape legend: B number of pairs. Inputs are per-token mean log-probabilities of the completions
(length-normalised, as both papers define them).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from lit_align.losses.preference import PreferenceLossOutput


def simpo_loss(
    policy_chosen_mean_logps: torch.Tensor,
    policy_rejected_mean_logps: torch.Tensor,
    *,
    beta: float = 2.0,
    gamma: float = 0.5,
) -> PreferenceLossOutput:
    """Simple Preference Optimisation (Meng et al., 2024; arXiv:2405.14734), Eq. 6.

    loss = -log sigmoid(beta * mean_c - beta * mean_r - gamma), with mean = log pi(y | x) / |y|.

    Args:
        policy_chosen_mean_logps: Per-token mean log-prob of the chosen completion. Shape: (B,)
        policy_rejected_mean_logps: Per-token mean log-prob of the rejected completion. Shape: (B,)
        beta: Reward scale.
        gamma: Target reward margin.

    Returns:
        Per-pair losses and rewards ``beta * mean`` (detached). Shapes: (B,)

    """
    assert policy_chosen_mean_logps.shape == policy_rejected_mean_logps.shape
    chosen, rejected = beta * policy_chosen_mean_logps, beta * policy_rejected_mean_logps
    losses = -F.logsigmoid(chosen - rejected - gamma)
    return PreferenceLossOutput(losses, chosen.detach(), rejected.detach())


def orpo_loss(
    policy_chosen_mean_logps: torch.Tensor,
    policy_rejected_mean_logps: torch.Tensor,
    *,
    lam: float = 0.1,
) -> PreferenceLossOutput:
    """Odds Ratio Preference Optimisation (Hong et al., 2024; arXiv:2403.07691), Eq. 6-7.

    loss = NLL_c - lam * log sigmoid(log odds(y_c) - log odds(y_r)),
    odds(y) = P / (1 - P) with P = exp(mean log-prob), NLL_c = -mean_c.
    log odds = mean - log(1 - exp(mean)), computed with log1p(-exp) for stability.

    Args:
        policy_chosen_mean_logps: Per-token mean log-prob of the chosen completion. Shape: (B,)
        policy_rejected_mean_logps: Per-token mean log-prob of the rejected completion. Shape: (B,)
        lam: Weight of the odds-ratio term.

    Returns:
        Per-pair losses and rewards ``lam * mean`` (detached, as TRL reports them). Shapes: (B,)

    """
    assert policy_chosen_mean_logps.shape == policy_rejected_mean_logps.shape
    chosen, rejected = policy_chosen_mean_logps, policy_rejected_mean_logps
    log_odds = (chosen - torch.log1p(-torch.exp(chosen))) - (rejected - torch.log1p(-torch.exp(rejected)))
    losses = -chosen - lam * F.logsigmoid(log_odds)
    return PreferenceLossOutput(losses, (lam * chosen).detach(), (lam * rejected).detach())
