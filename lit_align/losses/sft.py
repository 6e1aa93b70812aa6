"""Supervised fine-tuning loss (token-level negative log-likelihood).

Shape legend: B batch, T sequence length.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from lit_align.ops.logprobs import masked_mean


class SFTLossOutput(NamedTuple):
    """Result of :func:`sft_loss`.

    Attributes:
        loss: Mean negative log-likelihood over counted tokens. Shape: ()
        num_tokens: Number of counted tokens. Shape: ()

    """

    loss: torch.Tensor
    num_tokens: torch.Tensor


def sft_loss(token_logps: torch.Tensor, loss_mask: torch.Tensor) -> SFTLossOutput:
    """Negative log-likelihood averaged over every counted token of the batch.

    loss = - sum_{b,t} mask[b,t] * log p(y[b,t] | y[b,<t]) / sum_{b,t} mask[b,t]

    Deviations: the mean is over tokens of the whole (micro-)batch, as in Hugging Face's causal-LM loss, not a
    mean of per-sequence means; long completions therefore weigh more.

    Args:
        token_logps: Log-probability of each target token. Shape: (B, T)
        loss_mask: Bool, True for tokens that count. Shape: (B, T)

    Returns:
        :class:`SFTLossOutput`.

    """
    return SFTLossOutput(loss=-masked_mean(token_logps, loss_mask), num_tokens=loss_mask.sum())


def sequence_nll_loss(logps: torch.Tensor, num_tokens: torch.Tensor) -> torch.Tensor:
    """Token-mean negative log-likelihood from summed sequence log-probs (the NLL term of RPO and ORPO-style losses).

    loss = - sum_b logps[b] / sum_b num_tokens[b]  (the same token mean as :func:`sft_loss`).

    Args:
        logps: Summed log-probability of each sequence's counted tokens. Shape: (B,)
        num_tokens: Counted tokens of each sequence. Shape: (B,)

    Returns:
        Scalar loss. Shape: ()

    """
    assert logps.shape == num_tokens.shape and logps.dim() == 1, "logps and num_tokens must both be (B,)"
    return -logps.sum() / num_tokens.sum().clamp(min=1)
