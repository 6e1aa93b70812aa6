"""Optimizer and scheduler wiring shared by every objective, and the one manual optimisation step."""

from __future__ import annotations

import math
from typing import Any

import torch
from lightning import LightningModule
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable

from lit_align.errors import ConfigError
from lit_align.objectives.schedules import planned_steps
from lit_align.runtime.progress import record_grad_norm

OPTIMIZER_KEY, SCHEDULER_KEY = "model.init_args.optimizer", "model.init_args.lr_scheduler"
LR_KEYS = ("max_lr", "base_lr", "lr", "initial_lr", "min_lr")


def configure_optimizers(
    module: torch.nn.Module, optimizer: OptimizerCallable, lr_scheduler: LRSchedulerCallable | None
) -> Any:
    """Build the optimizer over trainable parameters only; schedulers step every optimizer step.

    A schedule from :mod:`lit_align.objectives.schedules` without ``total_steps`` lasts the trainer's optimizer steps.

    Raises:
        ConfigError: The optimizer or scheduler refuses its arguments, or a learning rate (``lr``, a scheduler's
            ``max_lr``, ``base_lr``, ...) is negative or not finite: training would ascend the loss or diverge.

    """
    params = [p for p in module.parameters() if p.requires_grad]
    if not params:
        raise ConfigError("model.init_args.policy", "the policy has no trainable parameter")
    opt = _build(optimizer, params, OPTIMIZER_KEY)
    check_learning_rates(opt, OPTIMIZER_KEY, peak=("lr",))
    if lr_scheduler is None:
        return opt
    trainer = module._trainer if isinstance(module, LightningModule) else None
    with planned_steps(trainer.estimated_stepping_batches if trainer is not None else None):
        scheduler = _build(lr_scheduler, opt, SCHEDULER_KEY)
    check_learning_rates(opt, SCHEDULER_KEY, peak=("max_lr",))
    return {"optimizer": opt, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


def _build(factory: Any, argument: Any, key: str) -> Any:
    try:
        return factory(argument)
    except (ValueError, TypeError, ZeroDivisionError) as error:
        raise ConfigError(key, " ".join(str(error).split()) or type(error).__name__) from error


def check_learning_rates(optimizer: torch.optim.Optimizer, key: str, peak: tuple[str, ...] = ()) -> None:
    """Refuse a negative or non-finite learning rate in any parameter group (also a scheduler's peak or floor).

    The rates named in ``peak`` (the optimizer's ``lr``, a scheduler's ``max_lr``) must also be above 0: with a
    peak of 0 nothing trains. Others may be 0 (a warm-up starts there).
    """
    for group in optimizer.param_groups:
        for name in LR_KEYS:
            value = group.get(name)
            values = value if isinstance(value, (list, tuple)) else [value]
            for v in values:
                if not isinstance(v, (int, float)) or isinstance(v, bool):
                    continue
                if not (math.isfinite(v) and v >= 0):
                    raise ConfigError(key, f"{name} must be a finite number >= 0, got {v}")
                if name in peak and v == 0:
                    raise ConfigError(key, f"{name} must be > 0 (nothing trains at 0), got {v}")


def role_device(module: LightningModule) -> torch.device | None:
    """Where roles are built: the strategy's device inside a Trainer, None (CPU, moved later) outside one."""
    return module.trainer.strategy.root_device if module._trainer is not None else None


def manual_step(module: LightningModule, loss: torch.Tensor, max_grad_norm: float | None) -> None:
    """One optimizer step under manual optimisation: zero, backward, clip the gradient norm, step, schedule."""
    opt, sched = module.optimizers(), module.lr_schedulers()
    opt.zero_grad()
    module.manual_backward(loss)
    record_grad_norm(module)  # before clipping; RunStats logs it
    if max_grad_norm:
        module.clip_gradients(opt, gradient_clip_val=max_grad_norm, gradient_clip_algorithm="norm")
    opt.step()
    if sched is not None:
        sched.step()
