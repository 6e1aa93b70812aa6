"""Kahneman-Tversky Optimisation loss on unpaired, labelled completions.

Shape legend: B completions in the batch.
"""

from __future__ import annotations

from collections.abc import Callable
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


def kto_reference_point(
    policy_kl_logps: torch.Tensor,
    ref_kl_logps: torch.Tensor,
    *,
    sum_over_processes: Callable[[torch.Tensor], torch.Tensor] = torch.Tensor.detach,
) -> torch.Tensor:
    """KTO's reference point z0 (Ethayarajh et al., 2024; arXiv:2402.01306, Eq. 8's biased KL estimate).

    z0 = max(0, sum_j [pi(y'_j|x_j) - ref(y'_j|x_j)] / n) over the mismatched pairs (x_j, y'_j) of every process,
    y'_j a completion of another prompt; detached. The sum and the count go through ``sum_over_processes`` before
    the division and the clamp, so z0 is the same on every process and equals the one-process value of the global
    batch.

    Deviations: TRL averages each process's own mean (the same when processes hold equal batches) and takes the
    mismatched completion from the next row of the batch (which can share the prompt); lit-align's data module
    pairs every row with a completion of another prompt.

    Args:
        policy_kl_logps: Policy log p(y' | x) of each mismatched pair. Shape: (B,)
        ref_kl_logps: Reference log p(y' | x). Shape: (B,)
        sum_over_processes: Sum of a tensor over processes (identity in one process; e.g.
            :func:`lit_align.runtime.distributed.sum_over_ranks`).

    Returns:
        The reference point. Shape: ()

    """
    assert policy_kl_logps.shape == ref_kl_logps.shape and policy_kl_logps.dim() == 1, "KL log-probs must be (B,)"
    diff = (policy_kl_logps - ref_kl_logps).detach()
    diff = diff.to(torch.promote_types(diff.dtype, torch.float32))  # sum half precision in float32
    count = torch.tensor(float(len(diff)), dtype=diff.dtype, device=diff.device)
    total = sum_over_processes(torch.stack([diff.sum(), count]))  # (2,): sum and count over every process
    return (total[0] / total[1].clamp(min=1)).clamp(min=0)


def kto_loss(
    policy_logps: torch.Tensor,
    ref_logps: torch.Tensor,
    reference_point: torch.Tensor,
    desirable: torch.Tensor,
    *,
    beta: float = 0.1,
    desirable_weight: float = 1.0,
    undesirable_weight: float = 1.0,
) -> KTOLossOutput:
    """KTO (Ethayarajh et al., 2024; arXiv:2402.01306), Eq. 8.

    r = pi(y|x) - ref(y|x), z0 = ``reference_point`` (:func:`kto_reference_point`);
    loss = lambda_D (1 - sigmoid(beta (r - z0))) for desirable y, lambda_U (1 - sigmoid(beta (z0 - r))) otherwise.

    Args:
        policy_logps: Policy log p(y | x) of each completion. Shape: (B,)
        ref_logps: Reference log p(y | x). Shape: (B,)
        reference_point: z0, detached. Shape: ()
        desirable: Bool label, True for desirable completions. Shape: (B,)
        beta: Inverse temperature.
        desirable_weight: lambda_D.
        undesirable_weight: lambda_U.

    Returns:
        Per-example losses, rewards and the reference point. Shapes: (B,), (B,), ()

    """
    assert policy_logps.shape == ref_logps.shape == desirable.shape, "policy, reference and labels must be (B,)"
    kl = reference_point.detach()
    rewards = policy_logps - ref_logps
    desirable_losses = desirable_weight * (1 - torch.sigmoid(beta * (rewards - kl)))
    undesirable_losses = undesirable_weight * (1 - torch.sigmoid(beta * (kl - rewards)))
    losses = torch.where(desirable, desirable_losses, undesirable_losses)
    return KTOLossOutput(losses, (beta * rewards).detach(), kl)
