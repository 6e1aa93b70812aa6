"""A cheap fingerprint of a set of tensors, to tell whether weights changed (monitors, the frozen reference)."""

from __future__ import annotations

from collections.abc import Iterable

import torch


def fingerprint(tensors: Iterable[torch.Tensor]) -> torch.Tensor:
    """Sum and sum of squares of every tensor, in float64: any update of a weight changes it.

    A sharded tensor (DTensor) contributes its local shard, so under FSDP each process fingerprints its own part.

    Returns:
        Two values per tensor, in the tensors' order, on the CPU. Shape: (2 K,) for K tensors

    """
    values = []
    for t in tensors:
        local = t.to_local() if hasattr(t, "to_local") else t
        flat = local.detach().reshape(-1).to(torch.float64)
        values += [flat.sum(), flat.square().sum()]
    return torch.stack(values).cpu() if values else torch.zeros(0, dtype=torch.float64)
