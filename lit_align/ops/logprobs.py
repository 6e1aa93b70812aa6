"""Per-token log-probabilities and masked reductions.

Shape legend: B batch, T sequence length, V vocabulary size.
"""

from __future__ import annotations

from typing import NamedTuple

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


def _compute_dtype(hidden: torch.Tensor) -> torch.dtype:
    """The dtype an ``nn.Linear`` would compute ``hidden`` in here (autocast's, when it is on)."""
    device = hidden.device.type
    if torch.is_autocast_enabled(device):
        return torch.get_autocast_dtype(device)
    return hidden.dtype


class _LinearTokenLogps(torch.autograd.Function):
    """Output-layer logits, log-softmax and gather in row chunks, forward and backward (:func:`linear_token_logps`)."""

    @staticmethod
    def forward(
        ctx: torch.autograd.function.FunctionCtx,
        hidden: torch.Tensor,
        weight: torch.Tensor,
        bias: torch.Tensor | None,
        targets: torch.Tensor,
        scale: float,
        chunk_rows: int,
        with_stats: bool,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        dtype = _compute_dtype(hidden)
        w = weight.to(dtype)
        b = None if bias is None else bias.to(dtype)
        n = len(hidden)
        logps = torch.empty(n, dtype=torch.float32, device=hidden.device)
        lse = torch.empty_like(logps)
        entropy = torch.empty(n if with_stats else 0, dtype=torch.float32, device=hidden.device)
        argmax = torch.empty(n if with_stats else 0, dtype=torch.long, device=hidden.device)
        with torch.autocast(hidden.device.type, enabled=False):
            for start in range(0, n, chunk_rows):
                rows = slice(start, start + chunk_rows)
                z = torch.nn.functional.linear(hidden[rows].to(dtype), w, b).float()  # (C, V): one chunk's logits
                if scale != 1.0:
                    z.mul_(scale)
                lse[rows] = torch.logsumexp(z, dim=-1)
                logps[rows] = z.gather(-1, targets[rows].unsqueeze(-1)).squeeze(-1) - lse[rows]
                if with_stats:
                    # H = logsumexp z - sum_v p_v z_v; the argmax for token accuracy.
                    entropy[rows] = lse[rows] - (torch.softmax(z, dim=-1) * z).sum(-1)
                    argmax[rows] = z.argmax(-1)
        ctx.save_for_backward(hidden, weight, bias, targets, lse)
        ctx.scale, ctx.chunk_rows, ctx.dtype = scale, chunk_rows, dtype
        ctx.mark_non_differentiable(entropy, argmax)
        return logps, entropy, argmax

    @staticmethod
    def backward(
        ctx: torch.autograd.function.FunctionCtx, grad: torch.Tensor, *_: torch.Tensor
    ) -> tuple[torch.Tensor | None, ...]:
        hidden, weight, bias, targets, lse = ctx.saved_tensors
        need_hidden, need_weight, need_bias = ctx.needs_input_grad[:3]
        dtype, scale = ctx.dtype, ctx.scale
        w = weight.to(dtype)
        b = None if bias is None else bias.to(dtype)
        grad_hidden = torch.empty_like(hidden) if need_hidden else None
        grad_weight = torch.zeros(weight.shape, dtype=torch.float32, device=weight.device) if need_weight else None
        grad_bias = torch.zeros(bias.shape, dtype=torch.float32, device=bias.device) if need_bias else None
        with torch.autocast(hidden.device.type, enabled=False):
            for start in range(0, len(hidden), ctx.chunk_rows):
                rows = slice(start, start + ctx.chunk_rows)
                h = hidden[rows].to(dtype)
                z = torch.nn.functional.linear(h, w, b).float()  # (C, V), recomputed instead of kept
                # d(scale z_y - lse) / dz = scale (onehot(y) - softmax(scale z)), times each row's incoming gradient.
                g = torch.exp(z.mul_(scale).sub_(lse[rows].unsqueeze(-1))).mul_(-grad[rows].unsqueeze(-1))
                g.scatter_add_(-1, targets[rows].unsqueeze(-1), grad[rows].unsqueeze(-1).float())
                if scale != 1.0:
                    g.mul_(scale)
                if need_hidden:
                    grad_hidden[rows] = (g.to(dtype) @ w).to(hidden.dtype)
                if need_weight:
                    grad_weight.addmm_(g.t(), h.float())
                if need_bias:
                    grad_bias.add_(g.sum(0))
        return (
            grad_hidden,
            None if grad_weight is None else grad_weight.to(weight.dtype),
            None if grad_bias is None else grad_bias.to(bias.dtype),
            None,
            None,
            None,
            None,
        )


def default_chunk_rows(vocab_size: int, budget_bytes: int = 1 << 26) -> int:
    """Rows per chunk so one chunk's float32 logits take about ``budget_bytes`` (64 MiB by default)."""
    return max(1, budget_bytes // (4 * vocab_size))


class LinearTokenLogps(NamedTuple):
    """Per-row outputs of :func:`linear_token_logps`; ``entropy`` and ``argmax`` empty unless asked. Shapes: (N,)."""

    logps: torch.Tensor
    entropy: torch.Tensor
    argmax: torch.Tensor


def linear_token_logps(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    targets: torch.Tensor,
    *,
    scale: float = 1.0,
    chunk_rows: int | None = None,
    with_stats: bool = False,
) -> LinearTokenLogps:
    """Log-probability of each target under an output layer, without the full logits of all rows at once.

    Equals ``log_softmax(scale * (hidden @ weight.T + bias)).gather(-1, targets)`` in float32, with the matmul in
    the dtype an ``nn.Linear`` would use (autocast's when on). The logits exist one chunk of ``chunk_rows`` rows
    at a time, in the forward and again (recomputed) in the backward, so memory is O(chunk x V) instead of
    O(N x V) for the logits and as much again for their gradient; the price is one more chunk matmul in the
    backward. Gradients reach ``hidden``, ``weight`` and ``bias`` only where they require it (a frozen output
    layer under LoRA costs no weight gradient).

    Args:
        hidden: Final hidden states of the scored positions only. Shape: (N, H)
        weight: Output layer (LM head) weight. Shape: (V, H)
        bias: Its bias, or None. Shape: (V,)
        targets: Token id each row predicts. Shape: (N,)
        scale: Multiplies the logits (1 / temperature for tokens sampled at a temperature).
        chunk_rows: Rows per chunk; default :func:`default_chunk_rows` of V.
        with_stats: Also return each row's entropy and argmax (no gradient).

    Returns:
        Log-probs (float32), entropies (float32) and argmax ids. Shapes: (N,), (N,) or (0,), (N,) or (0,)

    """
    assert hidden.dim() == 2 and targets.shape == hidden.shape[:1], f"hidden {tuple(hidden.shape)} must be (N, H)"
    assert weight.dim() == 2 and weight.shape[1] == hidden.shape[1], f"weight {tuple(weight.shape)} must be (V, H)"
    rows = chunk_rows or default_chunk_rows(weight.shape[0])
    return LinearTokenLogps(*_LinearTokenLogps.apply(hidden, weight, bias, targets, scale, rows, with_stats))
