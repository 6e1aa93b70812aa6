"""Reductions over processes that work the same under a Lightning Trainer, a Fabric loop, or one process."""

from __future__ import annotations

import torch
import torch.distributed as dist


def world_size() -> int:
    """Number of processes (1 without an initialised torch.distributed group)."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def sum_over_ranks(value: torch.Tensor) -> torch.Tensor:
    """Sum of a tensor over processes (a detached copy; the value itself in one process)."""
    if world_size() == 1:
        return value.detach()
    value = value.detach().clone()
    dist.all_reduce(value)
    return value


def mean_over_ranks(value: torch.Tensor) -> torch.Tensor:
    """Mean of a float tensor over processes."""
    return sum_over_ranks(value.float()) / world_size()


def token_normalizer(num_tokens: torch.Tensor) -> torch.Tensor | None:
    """Mean token count over processes, or None in one process (the loss then divides by its own count).

    Dividing each process's token sum by this makes the processes' losses, once averaged by data parallelism,
    equal the token mean of the global batch even when processes hold different numbers of tokens.
    """
    return mean_over_ranks(num_tokens) if world_size() > 1 else None
