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
    schedule, so recipes that used torch's class with that value train the same. Two differences, both where
    torch's would crash: the warm-up lasts at least one step (torch divides by zero when ``pct_start *
    total_steps`` is 1), and a run resumed with another ``max_steps`` keeps the new length (the phases are
    stretched to it, as transformers' schedules follow the resumed run's step count) instead of the checkpoint's,
    past which torch's raises.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, max_lr: float | list[float], total_steps: int | None = None,
                 pct_start: float = 0.3, **kwargs: Any) -> None:  # fmt: skip
        """See the class docstring; ``kwargs`` are torch's (``div_factor``, ``final_div_factor``, ...)."""
        steps = run_length(total_steps, "OneCycleLR")
        if pct_start * steps - 1 <= 0 and steps > 2:
            pct_start = 2 / steps  # the warm-up phase ends at step 1
        super().__init__(optimizer, max_lr, total_steps=steps, pct_start=pct_start, **kwargs)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore the position; a different planned length stretches the checkpoint's phases to it."""
        planned = self.total_steps
        super().load_state_dict(state_dict)
        if self.total_steps != planned:
            scale = planned / self.total_steps
            for phase in self._schedule_phases:
                phase["end_step"] = (phase["end_step"] + 1) * scale - 1
            self._schedule_phases[-1]["end_step"] = planned - 1
            self.total_steps = planned


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

    def state_dict(self) -> dict[str, Any]:
        """The position only: the shape comes from the config, and the length from the run that loads it."""
        state = super().state_dict()
        for name in ("total_steps", "warmup_steps", "decay", "final_ratio"):
            state.pop(name, None)
        return state

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
