"""Kahneman-Tversky Optimisation loss on unpaired, labelled completions.

Shape legend: B completions in the batch.
"""

from __future__ import annotations

from typing import NamedTuple

import torch


class KTOLossOutput(NamedTuple):
    """Per-example output of :func:`kto_loss`.

    Attributes:
        losses: Weighted loss of each completion. Shape: (B,)
        rewards: Implicit reward ``beta (pi - ref)`` of each completion (detached). Shape: (B,)
        kl: The reference point z0 used (detached, clamped at 0). Shape: ()

    """

    losses: torch.Tensor
    rewards: torch.Tensor
    kl: torch.Tensor


def kto_loss(
    policy_logps: torch.Tensor,
    ref_logps: torch.Tensor,
    policy_kl_logps: torch.Tensor,
    ref_kl_logps: torch.Tensor,
    desirable: torch.Tensor,
    *,
    beta: float = 0.1,
    desirable_weight: float = 1.0,
    undesirable_weight: float = 1.0,
) -> KTOLossOutput:
    """KTO (Ethayarajh et al., 2024; arXiv:2402.01306), Eq. 8.

    r = pi(y|x) - ref(y|x);  z0 = max(0, mean_j [pi(y'_j|x_j) - ref(y'_j|x_j)]) with y'_j a completion of another
    prompt in the batch (the paper's biased batch estimate of KL(pi || ref)), detached.
    loss = lambda_D (1 - sigmoid(beta (r - z0))) for desirable y, lambda_U (1 - sigmoid(beta (z0 - r))) otherwise.

    Args:
        policy_logps: Policy log p(y | x) of each completion. Shape: (B,)
        ref_logps: Reference log p(y | x). Shape: (B,)
        policy_kl_logps: Policy log p(y' | x) for mismatched pairs. Shape: (B,)
        ref_kl_logps: Reference log p(y' | x) for mismatched pairs. Shape: (B,)
        desirable: Bool label, True for desirable completions. Shape: (B,)
        beta: Inverse temperature.
        desirable_weight: lambda_D.
        undesirable_weight: lambda_U.

    Returns:
        Per-example losses, rewards and the reference point. Shapes: (B,), (B,), ()

    """
    assert policy_logps.shape == ref_logps.shape == desirable.shape, "policy, reference and labels must be (B,)"
    kl = (policy_kl_logps - ref_kl_logps).mean().clamp(min=0).detach()
    rewards = policy_logps - ref_logps
    desirable_losses = desirable_weight * (1 - torch.sigmoid(beta * (rewards - kl)))
    undesirable_losses = undesirable_weight * (1 - torch.sigmoid(beta * (kl - rewards)))
    losses = torch.where(desirable, desirable_losses, undesirable_losses)
    return KTOLossOutput(losses, (beta * rewards).detach(), kl)
