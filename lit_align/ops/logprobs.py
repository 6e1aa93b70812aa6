"""Per-token log-probabilities and masked reductions.

Shape legend: B batch, T sequence length, V vocabulary size.
"""

from __future__ import annotations

import torch

from lit_align.types import IGNORE_INDEX


def shift_labels(labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Align labels with the logits that predict them (position t predicts token t + 1).

    Args:
        labels: Token ids with ``IGNORE_INDEX`` where the loss does not count. Shape: (B, T)

    Returns:
        ``(targets, loss_mask)``: the next token at each position (0 where it does not count) and a bool mask of the
        positions that count; the last position never counts. Shapes: (B, T), (B, T)

    """
    assert labels.dim() == 2, f"labels must be (B, T), got {tuple(labels.shape)}"
    shifted = torch.full_like(labels, IGNORE_INDEX)
    shifted[:, :-1] = labels[:, 1:]
    loss_mask = shifted != IGNORE_INDEX
    return shifted.masked_fill(~loss_mask, 0), loss_mask


class _TokenLogps(torch.autograd.Function):
    """``log_softmax(logits).gather(targets)`` one row at a time, forward and backward (see :func:`token_logps`)."""

    @staticmethod
    def forward(ctx: torch.autograd.function.FunctionCtx, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        lse = torch.empty(targets.shape, dtype=torch.float32, device=logits.device)  # (B, T)
        picked = torch.empty_like(lse)
        for b in range(len(logits)):  # one row's (T, V) float32 temporary at a time
            lse[b] = torch.logsumexp(logits[b].float(), dim=-1)
            picked[b] = logits[b].gather(-1, targets[b].unsqueeze(-1)).squeeze(-1).float()
        ctx.save_for_backward(logits, targets, lse)
        return picked - lse

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        logits, targets, lse = ctx.saved_tensors
        grad_logits = torch.empty_like(logits)  # the one (B, T, V) tensor: the logits' gradient itself
        for b in range(len(logits)):
            # d(z_y - logsumexp z) / dz = onehot(y) - softmax(z), times the incoming gradient of each position.
            row = torch.exp(logits[b].float() - lse[b].unsqueeze(-1)).mul_(-grad[b].unsqueeze(-1))  # (T, V)
            row.scatter_add_(-1, targets[b].unsqueeze(-1), grad[b].unsqueeze(-1).float())
            grad_logits[b] = row
        return grad_logits, None


def token_logps(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Log-probability of each target token under the logits, one row at a time, forward and backward.

    Equals ``log_softmax(logits).gather(-1, targets)`` (in float32 whatever the logits' dtype), but no second
    full-vocabulary tensor of the whole batch is made: the forward keeps one row's (T, V) normaliser alive at a
    time, and the backward writes the logits' gradient row by row into one (B, T, V) tensor (autograd's row-wise
    version would stack the rows' gradients into a second one). ``benchmarks/logprob_memory.py`` measures it.

    Args:
        logits: Unnormalised next-token scores. Shape: (B, T, V)
        targets: Token ids to score. Shape: (B, T)

    Returns:
        ``logits[b, t, targets[b, t]] - logsumexp(logits[b, t])``, float32. Shape: (B, T)

    """
    assert logits.shape[:2] == targets.shape, f"logits {tuple(logits.shape)} and targets {tuple(targets.shape)} differ"
    return _TokenLogps.apply(logits, targets)


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``values`` over the positions where ``mask`` is True; 0 when nothing counts.

    Args:
        values: Any tensor. Shape: (B, T)
        mask: Bool, True where a value counts. Shape: (B, T)

    Returns:
        Scalar mean. Shape: ()

    """
    assert values.shape == mask.shape, f"values {tuple(values.shape)} and mask {tuple(mask.shape)} differ"
    return (values * mask).sum() / mask.sum().clamp(min=1)


def sequence_logps(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed log-probability of each row's labelled tokens, and how many there are.

    Args:
        logits: Next-token scores of a causal LM. Shape: (B, T, V)
        labels: Token ids where they count, ``IGNORE_INDEX`` elsewhere (unshifted). Shape: (B, T)

    Returns:
        ``(logps, num_tokens)``: sum of log p over counted tokens, and their count. Shapes: (B,), (B,)

    """
    targets, loss_mask = shift_labels(labels)
    per_token = token_logps(logits, targets) * loss_mask
    return per_token.sum(-1), loss_mask.sum(-1)
