"""Supervised fine-tuning loss (token-level negative log-likelihood).

Shape legend: B batch, T sequence length.
"""

from __future__ import annotations

from typing import Literal, NamedTuple

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


def sft_loss(
    token_logps: torch.Tensor, loss_mask: torch.Tensor, normalizer: torch.Tensor | None = None
) -> SFTLossOutput:
    """Negative log-likelihood averaged over every counted token of the batch.

    loss = - sum_{b,t} mask[b,t] * log p(y[b,t] | y[b,<t]) / n,   n = sum_{b,t} mask[b,t] unless given

    Deviations: the mean is over tokens of the whole (micro-)batch, as in Hugging Face's causal-LM loss, not a
    mean of per-sequence means; long completions therefore weigh more. Under data parallelism pass
    ``normalizer`` = the mean over processes of their token counts: the processes' losses then average to the
    token mean of the global batch, whatever the split of tokens between processes.

    Args:
        token_logps: Log-probability of each target token. Shape: (B, T)
        loss_mask: Bool, True for tokens that count. Shape: (B, T)
        normalizer: Token count to divide by, instead of this batch's. Shape: ()

    Returns:
        :class:`SFTLossOutput`.

    """
    num_tokens = loss_mask.sum()
    if normalizer is None:
        return SFTLossOutput(loss=-masked_mean(token_logps, loss_mask), num_tokens=num_tokens)
    return SFTLossOutput(loss=-(token_logps * loss_mask).sum() / normalizer.clamp(min=1), num_tokens=num_tokens)


def sequence_nll_loss(
    logps: torch.Tensor,
    num_tokens: torch.Tensor,
    normalizer: torch.Tensor | None = None,
    *,
    normalization: Literal["token", "sequence"] = "token",
) -> torch.Tensor:
    """Negative log-likelihood from summed sequence log-probs (the NLL term of RPO, CPO and ORPO).

    ``token``:    loss = - sum_b logps[b] / n,  n = sum_b num_tokens[b] unless given (the token mean of
                  :func:`sft_loss`, with the same ``normalizer`` for data parallelism); what Hugging Face's causal-LM
                  loss, TRL (``rpo_alpha``, CPO) and the official ORPO code compute.
    ``sequence``: loss = - mean_b (logps[b] / num_tokens[b]), the mean of per-sequence means (the RPO paper's
                  length-normalised NLL); ``normalizer`` does not apply (a per-sequence mean needs no global count).

    Args:
        logps: Summed log-probability of each sequence's counted tokens. Shape: (B,)
        num_tokens: Counted tokens of each sequence. Shape: (B,)
        normalizer: Token count to divide by, instead of ``sum_b num_tokens[b]`` (``token`` only). Shape: ()
        normalization: ``token`` or ``sequence``.

    Returns:
        Scalar loss. Shape: ()

    """
    assert logps.shape == num_tokens.shape and logps.dim() == 1, "logps and num_tokens must both be (B,)"
    if normalization == "sequence":
        return -(logps / num_tokens.clamp(min=1)).mean()
    return -logps.sum() / (num_tokens.sum() if normalizer is None else normalizer).clamp(min=1)
