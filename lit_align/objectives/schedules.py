"""Learning-rate schedules whose length is the run's: the trainer's optimizer steps, not a number in the YAML.

``configure_optimizers`` builds the scheduler inside :func:`planned_steps`, so a schedule given without
``total_steps`` takes the trainer's ``estimated_stepping_batches`` (``max_steps`` when set). Changing
``--trainer.max_steps`` then stretches or shrinks the schedule instead of crashing past its end.

```yaml
lr_scheduler:
  class_path: lit_align.objectives.schedules.WarmupDecay
  init_args: {warmup_ratio: 0.1, decay: cosine, final_ratio: 0.0}
```
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, Literal

import torch
from torch.optim.lr_scheduler import LambdaLR

from lit_align.domains import ClosedUnitInterval, PositiveInt, check_args
from lit_align.errors import ConfigError

_PLANNED: ContextVar[int | None] = ContextVar("planned_steps", default=None)
KEY = "model.init_args.lr_scheduler"


@contextmanager
def planned_steps(steps: int | float | None) -> Iterator[None]:
    """Within the block, schedules without ``total_steps`` last ``steps`` optimizer steps."""
    known = int(steps) if steps is not None and math.isfinite(steps) and steps > 0 else None
    token = _PLANNED.set(known)
    try:
        yield
    finally:
        _PLANNED.reset(token)


def run_length(total_steps: int | None, owner: str) -> int:
    """``total_steps`` if given, else the planned length of the run.

    Raises:
        ConfigError: Neither is known (outside a Trainer, or a run limited by neither steps nor epochs).

    """
    steps = total_steps or _PLANNED.get()
    if steps is None:
        raise ConfigError(
            f"{KEY}.init_args.total_steps",
            f"{owner} needs total_steps: the run's length is unknown (set trainer.max_steps, or total_steps)",
        )
    return steps


class OneCycleLR(torch.optim.lr_scheduler.OneCycleLR):
    """``torch.optim.lr_scheduler.OneCycleLR`` whose ``total_steps`` defaults to the run's optimizer steps.

    Every other argument is torch's. With ``total_steps`` equal to ``trainer.max_steps`` it is exactly torch's
    schedule, so recipes that used torch's class with that value train the same.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, max_lr: float | list[float], total_steps: int | None = None,
                 **kwargs: Any) -> None:  # fmt: skip
        """See the class docstring; ``kwargs`` are torch's (``pct_start``, ``div_factor``, ...)."""
        super().__init__(optimizer, max_lr, total_steps=run_length(total_steps, "OneCycleLR"), **kwargs)


class WarmupDecay(LambdaLR):
    """Linear warm-up over ``warmup_ratio`` of the run, then ``cosine``, ``linear`` or ``constant`` to the end.

    The factor on the optimizer's ``lr`` rises from ``1 / (warmup steps + 1)`` to 1 over the warm-up, then falls to
    ``final_ratio`` at the last step (cosine or linear) or stays at 1 (constant). As TRL / transformers'
    ``get_cosine_schedule_with_warmup`` with ``warmup_ratio``, plus a floor.

    Args:
        optimizer: The optimizer; its ``lr`` is the peak.
        warmup_ratio: Share of the run spent warming up, in [0, 1].
        decay: Shape after the warm-up.
        final_ratio: Factor at the end of the run, in [0, 1].
        total_steps: Length of the schedule; default the run's optimizer steps.

    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        warmup_ratio: ClosedUnitInterval = 0.1,
        decay: Literal["cosine", "linear", "constant"] = "cosine",
        final_ratio: ClosedUnitInterval = 0.0,
        total_steps: PositiveInt | None = None,
    ) -> None:
        """See the class docstring."""
        check_args(WarmupDecay.__init__, locals(), KEY)
        self.total_steps = run_length(total_steps, "WarmupDecay")
        self.warmup_steps = round(warmup_ratio * self.total_steps)
        self.decay, self.final_ratio = decay, final_ratio
        super().__init__(optimizer, self.factor)

    def factor(self, step: int) -> float:
        """Multiplier of the peak lr at optimizer step ``step`` (0-based)."""
        if step < self.warmup_steps:
            return (step + 1) / (self.warmup_steps + 1)
        if self.decay == "constant":
            return 1.0
        span = max(self.total_steps - 1 - self.warmup_steps, 1)
        progress = min((step - self.warmup_steps) / span, 1.0)
        shape = 0.5 * (1 + math.cos(math.pi * progress)) if self.decay == "cosine" else 1 - progress
        return self.final_ratio + (1 - self.final_ratio) * shape
