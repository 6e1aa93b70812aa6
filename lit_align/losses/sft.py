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
