"""Pairwise preference losses with a reference model: DPO (sigmoid, conservative, robust), IPO, hinge.

Shape legend: B number of pairs. Inputs are summed sequence log-probabilities of the completions.
Each loss returns per-pair values; the objective reduces them.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F


class PreferenceLossOutput(NamedTuple):
    """Per-pair output of a preference loss.

    Attributes:
        losses: Loss of each pair. Shape: (B,)
        chosen_rewards: Implicit reward of the chosen completion (detached). Shape: (B,)
        rejected_rewards: Implicit reward of the rejected completion (detached). Shape: (B,)

    """

    losses: torch.Tensor
    chosen_rewards: torch.Tensor
    rejected_rewards: torch.Tensor


def _logratio(pc: torch.Tensor, pr: torch.Tensor, rc: torch.Tensor, rr: torch.Tensor) -> torch.Tensor:
    """H = (pi_c - ref_c) - (pi_r - ref_r), after checking that all four are (B,)."""
    assert pc.dim() == 1, f"expected (B,) log-probs, got {tuple(pc.shape)}"
    assert pc.shape == pr.shape == rc.shape == rr.shape, "the four log-prob tensors must have one shape (B,)"
    return (pc - rc) - (pr - rr)


def _output(
    losses: torch.Tensor, pc: torch.Tensor, pr: torch.Tensor, rc: torch.Tensor, rr: torch.Tensor, beta: float
) -> PreferenceLossOutput:
    # Implicit rewards beta * (pi - ref), detached: they are reported, not optimised.
    return PreferenceLossOutput(losses, (beta * (pc - rc)).detach(), (beta * (pr - rr)).detach())


def dpo_loss(
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
    ref_chosen_logps: torch.Tensor,
    ref_rejected_logps: torch.Tensor,
    *,
    beta: float = 0.1,
    label_smoothing: float = 0.0,
) -> PreferenceLossOutput:
    """Direct Preference Optimisation, sigmoid form (Rafailov et al., 2023; arXiv:2305.18290).

    loss = -(1 - eps) log sigmoid(beta h) - eps log sigmoid(-beta h),
    h = logratio = (pi_c - ref_c) - (pi_r - ref_r).
    eps = label_smoothing > 0 is conservative DPO (cDPO, Mitchell 2023): preferences flipped with probability eps.

    Args:
        policy_chosen_logps: Policy log p(chosen | prompt). Shape: (B,)
        policy_rejected_logps: Policy log p(rejected | prompt). Shape: (B,)
        ref_chosen_logps: Reference log p(chosen | prompt). Shape: (B,)
        ref_rejected_logps: Reference log p(rejected | prompt). Shape: (B,)
        beta: Inverse temperature of the implicit reward.
        label_smoothing: Probability that a preference label is flipped (0 is plain DPO).

    Returns:
        Per-pair losses and implicit rewards ``beta (pi - ref)``. Shapes: (B,)

    """
    logratio = _logratio(policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps)
    losses = -(1 - label_smoothing) * F.logsigmoid(beta * logratio) - label_smoothing * F.logsigmoid(-beta * logratio)
    return _output(losses, policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps, beta)


def robust_dpo_loss(
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
    ref_chosen_logps: torch.Tensor,
    ref_rejected_logps: torch.Tensor,
    *,
    beta: float = 0.1,
    label_smoothing: float = 0.1,
) -> PreferenceLossOutput:
    """Robust DPO, unbiased under label noise (Chowdhury et al., 2024; arXiv:2403.00409).

    loss = [-(1 - eps) log sigmoid(beta h) + eps log sigmoid(-beta h)] / (1 - 2 eps), h as in :func:`dpo_loss`.

    Args:
        policy_chosen_logps: Policy log p(chosen | prompt). Shape: (B,)
        policy_rejected_logps: Policy log p(rejected | prompt). Shape: (B,)
        ref_chosen_logps: Reference log p(chosen | prompt). Shape: (B,)
        ref_rejected_logps: Reference log p(rejected | prompt). Shape: (B,)
        beta: Inverse temperature of the implicit reward.
        label_smoothing: Assumed label-flip rate eps, in [0, 0.5).

    Returns:
        Per-pair losses and implicit rewards. Shapes: (B,)

    """
    assert 0 <= label_smoothing < 0.5, f"robust DPO needs 0 <= label_smoothing < 0.5, got {label_smoothing}"
    logratio = _logratio(policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps)
    losses = (
        -(1 - label_smoothing) * F.logsigmoid(beta * logratio) + label_smoothing * F.logsigmoid(-beta * logratio)
    ) / (1 - 2 * label_smoothing)
    return _output(losses, policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps, beta)


def ipo_loss(
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
    ref_chosen_logps: torch.Tensor,
    ref_rejected_logps: torch.Tensor,
    *,
    beta: float = 0.1,
) -> PreferenceLossOutput:
    """Identity Preference Optimisation (Azar et al., 2023; arXiv:2310.12036).

    loss = (h - 1 / (2 beta))^2, h as in :func:`dpo_loss`, on whatever log-probs it is given.

    The ``ipo`` spec (:mod:`lit_align.losses.specs`) gives it per-token mean log-probs, as the IPO authors' code and
    TRL do (each log-ratio divided by its completion length), so 1 / (2 beta) is a per-token margin;
    ``length_normalized: false`` gives it summed log-probs (the summed form of the paper's notation), where the
    same beta asks for a margin |y| times smaller per token.

    Args:
        policy_chosen_logps: Policy log p(chosen | prompt). Shape: (B,)
        policy_rejected_logps: Policy log p(rejected | prompt). Shape: (B,)
        ref_chosen_logps: Reference log p(chosen | prompt). Shape: (B,)
        ref_rejected_logps: Reference log p(rejected | prompt). Shape: (B,)
        beta: Regularisation strength (the target margin is 1 / (2 beta)).

    Returns:
        Per-pair losses and implicit rewards. Shapes: (B,)

    """
    logratio = _logratio(policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps)
    losses = (logratio - 1 / (2 * beta)) ** 2
    return _output(losses, policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps, beta)


def hinge_loss(
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
    ref_chosen_logps: torch.Tensor,
    ref_rejected_logps: torch.Tensor,
    *,
    beta: float = 0.1,
) -> PreferenceLossOutput:
    """Hinge loss on the reference-normalised log-ratio (SLiC-HF, Zhao et al., 2023; arXiv:2305.10425).

    loss = max(0, 1 - beta h), h as in :func:`dpo_loss`.

    Deviations: SLiC calibrates raw policy log-probs; with a reference this is the RSO/TRL ``hinge`` form
    (Liu et al., 2023; arXiv:2309.06657).

    Args:
        policy_chosen_logps: Policy log p(chosen | prompt). Shape: (B,)
        policy_rejected_logps: Policy log p(rejected | prompt). Shape: (B,)
        ref_chosen_logps: Reference log p(chosen | prompt). Shape: (B,)
        ref_rejected_logps: Reference log p(rejected | prompt). Shape: (B,)
        beta: Scale of the log-ratio (the margin is 1 / beta in log-ratio units).

    Returns:
        Per-pair losses and implicit rewards. Shapes: (B,)

    """
    logratio = _logratio(policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps)
    losses = torch.relu(1 - beta * logratio)
    return _output(losses, policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps, beta)
