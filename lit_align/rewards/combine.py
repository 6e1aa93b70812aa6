r"""Rewards named in YAML by import path, combined with weights, with failures reported or counted.

```yaml
rewards:
  - function: lit_align.rewards.arithmetic_answer
  - function: lit_align.rewards.regex_format
    weight: 0.2
    kwargs: {pattern: "-?\\d+"}
  - function: lit_align.rewards.RewardModelScorer     # a class: built once with kwargs, then called
    kwargs: {path: runs/rm/hf_model}
```

Shape legend: N completions.
"""

from __future__ import annotations

import importlib
import math
import numbers
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Literal

import torch
from lightning.pytorch.utilities import rank_zero_warn

from lit_align.errors import LitAlignError

OnRewardError = Literal["raise", "none"]


@dataclass(frozen=True)
class RewardSpec:
    """One reward function and its weight.

    Args:
        function: Import path of a callable ``(prompts, completions, **columns) -> list[float | None]``, as
            ``package.module.name`` or ``package.module:name``; a class is instantiated once with ``kwargs``.
        weight: Weight of this reward in the total.
        name: Name in the logs (``rewards/<name>``); defaults to the callable's name.
        kwargs: Keyword arguments bound to the function (or given to the class).

    """

    function: str
    weight: float = 1.0
    name: str | None = None
    kwargs: dict[str, Any] = field(default_factory=dict)


def import_object(path: str, key: str) -> Any:
    """Import ``package.module.name`` or ``package.module:name`` (never evaluates the string)."""
    module_name, _, attr = path.partition(":") if ":" in path else path.rpartition(".")
    try:
        return getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError, ValueError) as error:
        raise LitAlignError(f"{key}: cannot import '{path}': {error}") from error


def build_reward(spec: RewardSpec, key: str) -> tuple[str, Callable[..., list]]:
    """Return ``(name, callable)`` for a spec."""
    target = import_object(spec.function, key)
    if isinstance(target, type):
        try:
            return spec.name or target.__name__, target(**spec.kwargs)
        except TypeError as error:
            raise LitAlignError(f"{key}: cannot build {spec.function}: {error}") from error
    if not callable(target):
        raise LitAlignError(f"{key}: '{spec.function}' is not callable")
    name = spec.name or getattr(target, "__name__", spec.function.rsplit(".", 1)[-1])
    return name, partial(target, **spec.kwargs) if spec.kwargs else target


@dataclass
class RewardScores:
    """Scores of N completions.

    Attributes:
        total: Weighted sum of the known rewards; NaN where every reward is unknown. Shape: (N,)
        per_reward: Each reward's values, NaN where it returned None or failed. Shape: (N,) each
        failures: Samples each reward failed on in this batch.

    """

    total: torch.Tensor
    per_reward: dict[str, torch.Tensor]
    failures: Counter


class RewardSet:
    """Several weighted rewards called together.

    Args:
        specs: The rewards.
        on_error: ``raise`` stops the run at the first reward that raises, naming the reward and the sample;
            ``none`` scores that sample None for that reward, counts it and warns.
        key: Config key shown in error messages.

    """

    def __init__(self, specs: list[RewardSpec], on_error: OnRewardError = "raise", key: str = "rewards") -> None:
        """See the class docstring."""
        if not specs:
            raise LitAlignError(f"{key}: at least one reward is needed")
        # jsonargparse hands list items of a dataclass type over as plain dicts.
        specs = [s if isinstance(s, RewardSpec) else RewardSpec(**s) for s in specs]
        built = [build_reward(s, f"{key}[{i}].function") for i, s in enumerate(specs)]
        self.names = [name for name, _ in built]
        if len(set(self.names)) != len(self.names):
            raise LitAlignError(f"{key}: two rewards share a name ({self.names}); set 'name' on one of them")
        self.functions = [fn for _, fn in built]
        self.weights = [s.weight for s in specs]
        self.on_error = on_error

    def __call__(self, prompts: list[Any], completions: list[Any], columns: dict[str, list[Any]]) -> RewardScores:
        """Score every completion with every reward and combine them."""
        failures: Counter = Counter()
        per_reward = {}
        for name, fn in zip(self.names, self.functions, strict=True):
            values = self._call(name, fn, prompts, completions, columns, failures)
            per_reward[name] = torch.tensor([math.nan if v is None else float(v) for v in values])
        stacked = torch.stack([per_reward[n] * w for n, w in zip(self.names, self.weights, strict=True)])  # (K, N)
        total = stacked.nansum(0)
        total[stacked.isnan().all(0)] = math.nan
        return RewardScores(total, per_reward, failures)

    def _call(
        self, name: str, fn: Callable, prompts: list, completions: list, columns: dict, failures: Counter
    ) -> list:
        try:
            return self._checked(name, fn(prompts, completions, **columns), len(completions))
        except Exception:  # noqa: BLE001 (any user code may fail; find and report the sample below)
            pass
        values: list = []
        for i in range(len(completions)):
            one = {k: v[i : i + 1] for k, v in columns.items()}
            try:
                values += self._checked(name, fn(prompts[i : i + 1], completions[i : i + 1], **one), 1)
            except Exception as error:  # noqa: BLE001
                message = (
                    f"reward '{name}' failed on sample {i} (prompt={prompts[i]!r}, completion={completions[i]!r}): "
                    f"{type(error).__name__}: {error}"
                )
                if self.on_error == "raise":
                    raise LitAlignError(message + " (set on_reward_error: none to score it None and go on)") from error
                rank_zero_warn(message + "; scored None")
                failures[name] += 1
                values.append(None)
        return values

    @staticmethod
    def _checked(name: str, values: Any, expected: int) -> list:
        if not isinstance(values, (list, tuple)) or len(values) != expected:
            raise TypeError(f"reward '{name}' must return a list of {expected} floats or None, got {values!r:.80}")
        for v in values:
            if v is not None and not isinstance(v, numbers.Real) and not (torch.is_tensor(v) and v.numel() == 1):
                raise TypeError(f"reward '{name}' returned {v!r}, not a float or None")
        return [None if v is None else float(v) for v in values]


# Checkpoints keep the module's hyperparameters; let them load with torch.load(weights_only=True).
torch.serialization.add_safe_globals([RewardSpec])
