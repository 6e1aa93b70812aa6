"""Clipped policy-gradient losses for the online objectives (GRPO, PPO) and PPO's clipped value loss.

Shape legend: N completions, R completion length (padded to the longest completion of the batch).
"""

from __future__ import annotations

from enum import StrEnum
from typing import NamedTuple

import torch

from lit_align.ops.advantages import kl_estimate


class LossNormalization(StrEnum):
    """How GRPO turns per-token losses into one number (the normalisation is the method, so it lives here)."""

    SEQUENCE = "sequence"  # GRPO: mean over each completion's tokens, then over completions
    CONSTANT = "constant"  # Dr. GRPO: sum over all tokens / (N x max_completion_length)
    TOKEN = "token"  # DAPO: sum over all tokens / number of tokens in the (global) batch


class PolicyLossOutput(NamedTuple):
    """Result of :func:`clipped_policy_loss`.

    Attributes:
        loss: The normalised loss. Shape: ()
        per_token: Loss at each token before normalisation, 0 where the mask is False. Shape: (N, R)
        low_clip: Fraction of counted tokens clipped at ``1 - epsilon`` (ratio below it, negative advantage).
        high_clip: Fraction of counted tokens clipped at ``1 + epsilon_high`` (ratio above it, positive advantage).
        kl: Mean per-token k3 KL to the reference (0 without one). Shape: ()

    """

    loss: torch.Tensor
    per_token: torch.Tensor
    low_clip: torch.Tensor
    high_clip: torch.Tensor
    kl: torch.Tensor


def clipped_policy_loss(
    token_logps: torch.Tensor,
    old_token_logps: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    *,
    epsilon: float = 0.2,
    epsilon_high: float | None = None,
    normalization: LossNormalization | str = "sequence",
    max_completion_length: int | None = None,
    num_tokens: float | torch.Tensor | None = None,
    ref_token_logps: torch.Tensor | None = None,
    kl_coef: float = 0.0,
) -> PolicyLossOutput:
    """PPO's clipped surrogate (Schulman et al., 2017; arXiv:1707.06347) as GRPO uses it (arXiv:2402.03300).

    Per token: ``ratio = exp(logp - old_logp)``,
    ``l_t = -min(ratio A, clip(ratio, 1 - epsilon, 1 + epsilon_high) A) + kl_coef KL_k3(pi || ref)_t``;
    then ``sequence``: ``mean_i (sum_t l_t m_t / sum_t m_t)``; ``constant`` (Dr. GRPO, arXiv:2503.20783):
    ``sum l m / (N max_completion_length)``; ``token`` (DAPO, arXiv:2503.14476): ``sum l m / num_tokens``.

    Args:
        token_logps: Current policy log-prob of each sampled token (carries the gradient). Shape: (N, R)
        old_token_logps: Log-probs of the policy that sampled the tokens (no gradient). Shape: (N, R)
        advantages: Advantage per completion (GRPO) or per token (PPO). Shape: (N,) or (N, R)
        mask: Bool, True for tokens that count. Shape: (N, R)
        epsilon: Lower clip range.
        epsilon_high: Upper clip range (DAPO's clip-higher); None uses ``epsilon``.
        normalization: ``sequence``, ``constant`` or ``token``.
        max_completion_length: The constant of ``constant``; defaults to R.
        num_tokens: Denominator of ``token``, e.g. the token count of the global batch; defaults to ``mask.sum()``.
        ref_token_logps: Reference log-probs for the KL term. Shape: (N, R)
        kl_coef: Weight of the KL term; 0 leaves it out.

    Returns:
        :class:`PolicyLossOutput`.

    """
    assert token_logps.shape == old_token_logps.shape == mask.shape, "logps, old logps and mask must be (N, R)"
    if advantages.dim() == 1:
        advantages = advantages.unsqueeze(-1)  # (N, 1)
    epsilon_high = epsilon if epsilon_high is None else epsilon_high
    ratio = torch.exp(token_logps - old_token_logps)  # (N, R)
    unclipped = ratio * advantages
    clipped = torch.clamp(ratio, 1 - epsilon, 1 + epsilon_high) * advantages
    per_token = -torch.min(unclipped, clipped)
    kl = torch.zeros_like(per_token)
    if kl_coef and ref_token_logps is not None:
        kl = kl_estimate(token_logps, ref_token_logps, "k3")
        per_token = per_token + kl_coef * kl
    per_token = per_token * mask
    normalization = LossNormalization(normalization)
    if normalization is LossNormalization.SEQUENCE:
        loss = (per_token.sum(-1) / mask.sum(-1).clamp(min=1)).mean()
    elif normalization is LossNormalization.CONSTANT:
        loss = per_token.sum() / (mask.shape[0] * (max_completion_length or mask.shape[1]))
    else:
        loss = per_token.sum() / (mask.sum().clamp(min=1) if num_tokens is None else num_tokens)
    count = mask.sum().clamp(min=1)
    low = ((ratio < 1 - epsilon) & (advantages < 0) & mask).sum() / count
    high = ((ratio > 1 + epsilon_high) & (advantages > 0) & mask).sum() / count
    return PolicyLossOutput(loss, per_token, low.detach(), high.detach(), ((kl * mask).sum() / count).detach())


class ValueLossOutput(NamedTuple):
    """Result of :func:`clipped_value_loss`: the loss and the fraction of tokens where the clipped term won."""

    loss: torch.Tensor
    clip_frac: torch.Tensor


def clipped_value_loss(
    values: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor, *, clip: float = 0.2
) -> ValueLossOutput:
    """PPO's clipped value loss: ``0.5 mean_t max((V - G)^2, (V_old + clip(V - V_old, -c, c) - G)^2)``.

    Args:
        values: Current value estimates. Shape: (N, R)
        old_values: Value estimates at rollout time (no gradient). Shape: (N, R)
        returns: GAE returns (targets). Shape: (N, R)
        mask: Bool, True for counted tokens. Shape: (N, R)
        clip: Clip range ``c`` around the old values.

    Returns:
        :class:`ValueLossOutput` (masked mean over tokens).

    """
    clipped = old_values + torch.clamp(values - old_values, -clip, clip)
    plain_err, clipped_err = (values - returns) ** 2, (clipped - returns) ** 2
    count = mask.sum().clamp(min=1)
    loss = 0.5 * (torch.max(plain_err, clipped_err) * mask).sum() / count
    return ValueLossOutput(loss, ((clipped_err > plain_err) & mask).sum().detach() / count)
