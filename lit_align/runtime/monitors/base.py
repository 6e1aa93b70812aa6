"""What every failure-mode monitor shares: metric histories, one warning with cause and fix, an optional stop."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from lightning import Callback, LightningModule, Trainer
from lightning.pytorch.utilities import rank_zero_warn

from lit_align.domains import NonNegativeInt, PositiveInt
from lit_align.errors import SignalError

ALARMS_FILE = "monitors.jsonl"
"""Each alarm as a JSON line in the run folder (``trainer.default_root_dir``); ``lit-align report`` shows them."""


class Monitor(Callback):
    """Base of the failure-mode monitors: keeps the histories of some logged metrics and raises one alarm.

    A subclass names the metrics it reads (``keys``) and implements :meth:`check`, called after every optimizer
    step once ``after_steps`` steps have passed; it returns the warning (what happened, the likely cause, the usual
    fix) or None. A monitor fires once per run; ``stop`` also ends the run (one line, exit 2). A metric the
    objective does not log leaves the monitor idle. Histories and the fired flag are saved in checkpoints.

    Args:
        after_steps: Steps before the first check.
        window: Steps averaged at the start and at the end of a history.
        stop: Stop the run when the monitor fires.

    """

    name = "monitor"
    keys: tuple[str, ...] = ()

    def __init__(self, after_steps: NonNegativeInt = 20, window: PositiveInt = 10, stop: bool = False) -> None:
        """See the class docstring."""
        self.after_steps, self.window, self.stop = after_steps, window, stop
        self.history: dict[str, list[float]] = {}
        self.fired = False
        self._step = -1

    def read(self, trainer: Trainer) -> dict[str, float] | None:
        """The current values of ``keys`` from the logged metrics, or None when one is missing."""
        values = {}
        for key in self.keys:
            value = trainer.callback_metrics.get(key)
            if value is None:
                return None
            values[key] = float(value)
        return values

    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, idx: int
    ) -> None:
        """Record this step's values and check them (once per optimizer step)."""
        if self.fired or trainer.global_step == self._step:
            return
        self._step = trainer.global_step
        values = self.read(trainer)
        if values is None or any(math.isnan(v) for v in values.values()):
            return
        for key, value in values.items():
            self.history.setdefault(key, []).append(value)
        if trainer.global_step >= self.after_steps:
            message = self.check(trainer, pl_module)
            if message:
                self.alarm(trainer, message)

    def check(self, trainer: Trainer, pl_module: LightningModule) -> str | None:
        """The warning to give now, or None (see the class docstring)."""
        raise NotImplementedError

    def alarm(self, trainer: Trainer, message: str) -> None:
        """Warn once (and write the alarm to the run folder); with ``stop``, end the run."""
        if self.fired:
            return
        self.fired = True
        text = f"{self.name} at step {trainer.global_step}: {message}"
        rank_zero_warn(text)
        if trainer.is_global_zero:
            folder = Path(trainer.default_root_dir)
            folder.mkdir(parents=True, exist_ok=True)
            with (folder / ALARMS_FILE).open("a") as f:
                f.write(json.dumps({"step": trainer.global_step, "monitor": self.name, "message": message}) + "\n")
        if self.stop:
            raise SignalError(f"{text} (stopped by the monitor; stop: false only warns)")

    def state_dict(self) -> dict[str, Any]:
        """Histories and the fired flag, so a resumed run neither forgets its start nor warns twice."""
        return {"history": self.history, "fired": self.fired}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`."""
        self.history, self.fired = state_dict["history"], state_dict["fired"]
