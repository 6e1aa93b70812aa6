"""Optimizer and scheduler wiring shared by every objective."""

from __future__ import annotations

from typing import Any

import torch
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable


def configure_optimizers(
    module: torch.nn.Module, optimizer: OptimizerCallable, lr_scheduler: LRSchedulerCallable | None
) -> Any:
    """Build the optimizer over trainable parameters only; schedulers step every optimizer step."""
    params = [p for p in module.parameters() if p.requires_grad]
    opt = optimizer(params)
    if lr_scheduler is None:
        return opt
    return {"optimizer": opt, "lr_scheduler": {"scheduler": lr_scheduler(opt), "interval": "step"}}
