"""Optimizer and scheduler wiring shared by every objective, and the one manual optimisation step."""

from __future__ import annotations

from typing import Any

import torch
from lightning import LightningModule
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


def role_device(module: LightningModule) -> torch.device | None:
    """Where roles are built: the strategy's device inside a Trainer, None (CPU, moved later) outside one."""
    return module.trainer.strategy.root_device if module._trainer is not None else None


def manual_step(module: LightningModule, loss: torch.Tensor, max_grad_norm: float | None) -> None:
    """One optimizer step under manual optimisation: zero, backward, clip the gradient norm, step, schedule."""
    opt, sched = module.optimizers(), module.lr_schedulers()
    opt.zero_grad()
    module.manual_backward(loss)
    if max_grad_norm:
        module.clip_gradients(opt, gradient_clip_val=max_grad_norm, gradient_clip_algorithm="norm")
    opt.step()
    if sched is not None:
        sched.step()
