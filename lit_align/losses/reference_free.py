"""Pairwise preference losses without a reference model: SimPO and ORPO.

Shape legend: B number of pairs. Inputs are per-token mean log-probabilities of the completions
(length-normalised, as both papers define them; the specs in :mod:`lit_align.losses.specs` divide by the lengths).
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
    simpo_gamma: float = 0.5,
) -> PreferenceLossOutput:
    """Simple Preference Optimisation (Meng et al., 2024; arXiv:2405.14734), Eq. 6.

    loss = -log sigmoid(beta * mean_c - beta * mean_r - gamma), mean = log pi(y | x) / |y|, gamma = ``simpo_gamma``.

    Args:
        policy_chosen_mean_logps: Per-token mean log-prob of the chosen completion. Shape: (B,)
        policy_rejected_mean_logps: Per-token mean log-prob of the rejected completion. Shape: (B,)
        beta: Reward scale.
        simpo_gamma: Target reward margin gamma (TRL's ``simpo_gamma``).

    Returns:
        Per-pair losses and rewards ``beta * mean`` (detached). Shapes: (B,)

    """
    assert policy_chosen_mean_logps.shape == policy_rejected_mean_logps.shape
    chosen, rejected = beta * policy_chosen_mean_logps, beta * policy_rejected_mean_logps
    losses = -F.logsigmoid(chosen - rejected - simpo_gamma)
    return PreferenceLossOutput(losses, chosen.detach(), rejected.detach())


def orpo_loss(
    policy_chosen_mean_logps: torch.Tensor,
    policy_rejected_mean_logps: torch.Tensor,
    *,
    beta: float = 0.1,
) -> PreferenceLossOutput:
    """The odds-ratio term of ORPO (Hong et al., 2024; arXiv:2403.07691), Eq. 6-7; its NLL term is added by the spec.

    loss = -beta * log sigmoid(log odds(y_c) - log odds(y_r)),
    odds(y) = P / (1 - P) with P = exp(mean log-prob), log odds = mean - log(1 - exp(mean)) (log1p(-exp) for
    stability). The full ORPO objective is NLL_c + this term; the ``orpo`` spec in :mod:`lit_align.losses.specs`
    adds the NLL as the token mean over the batch's chosen completion tokens, as the official code does (the
    causal-LM loss of the chosen rows, prompt tokens masked).

    Args:
        policy_chosen_mean_logps: Per-token mean log-prob of the chosen completion. Shape: (B,)
        policy_rejected_mean_logps: Per-token mean log-prob of the rejected completion. Shape: (B,)
        beta: Weight of the odds-ratio term (the paper's lambda; TRL's ``beta``).

    Returns:
        Per-pair odds-ratio losses and rewards ``beta * mean`` (detached, as TRL reports them). Shapes: (B,)

    """
    assert policy_chosen_mean_logps.shape == policy_rejected_mean_logps.shape
    chosen, rejected = policy_chosen_mean_logps, policy_rejected_mean_logps
    log_odds = (chosen - torch.log1p(-torch.exp(chosen))) - (rejected - torch.log1p(-torch.exp(rejected)))
    losses = -beta * F.logsigmoid(log_odds)
    return PreferenceLossOutput(losses, (beta * chosen).detach(), (beta * rejected).detach())
