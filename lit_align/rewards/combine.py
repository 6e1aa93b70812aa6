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
import inspect
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
        function: Import path (``package.module.name`` or ``package.module:name``) of a callable
            ``(prompts=, completions=, **columns) -> list[float | None]``, called by keyword as TRL calls reward
            functions; a class is instantiated once with ``kwargs``.
        weight: Weight of this reward in the total; 0 logs the reward (``rewards/<name>``) without optimising it.
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


def _accepted(fn: Callable, given: dict[str, list]) -> dict[str, list]:
    """The keywords of ``given`` that ``fn`` takes: all of them when it has ``**kwargs``, else those it names."""
    try:
        parameters = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):  # no signature (some builtins): give everything
        return given
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
        return given
    names = {p.name for p in parameters if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    return {k: v for k, v in given.items() if k in names}


@dataclass
class RewardScores:
    """Scores of N completions.

    Attributes:
        total: Weighted sum of the known rewards; NaN where every reward is unknown. Shape: (N,)
        per_reward: Each reward's values, NaN where it returned None, NaN or inf, or raised. Shape: (N,) each
        failures: Samples each reward could not score in this batch (None, NaN, inf or an exception).

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
        for i, spec in enumerate(specs):
            if not math.isfinite(spec.weight):
                raise LitAlignError(f"{key}[{i}].weight: must be a finite number, got {spec.weight}")
        if all(spec.weight == 0 for spec in specs):
            raise LitAlignError(
                f"{key}: every weight is 0, so nothing is optimised (weight 0 only logs a reward, e.g. a gold check "
                "next to a learned reward)"
            )
        built = [build_reward(s, f"{key}[{i}].function") for i, s in enumerate(specs)]
        self.names = [name for name, _ in built]
        if len(set(self.names)) != len(self.names):
            raise LitAlignError(f"{key}: two rewards share a name ({self.names}); set 'name' on one of them")
        self.functions = [fn for _, fn in built]
        self.weights = [s.weight for s in specs]
        self.on_error = on_error
        self._warned: set[tuple[str, str]] = set()  # (reward, kind) already reported, so a long run is not flooded

    def __call__(
        self,
        prompts: list[Any],
        completions: list[Any],
        columns: dict[str, list[Any]],
        completion_ids: list[list[int]] | None = None,
    ) -> RewardScores:
        """Score every completion with every reward and combine them.

        Each reward is called by keyword, as TRL calls its reward functions: ``prompts=``, ``completions=``, every
        column by its name and ``completion_ids=`` (the sampled token ids) when given. A function without
        ``**kwargs`` gets only the keywords it names, so ``def reward(completions, **kwargs)`` and
        ``def reward(prompts, completions, answer)`` both work.
        """
        failures: Counter = Counter()
        per_reward = {}
        given = {**columns, "prompts": prompts, "completions": completions}
        if completion_ids is not None:
            given["completion_ids"] = completion_ids
        for name, fn in zip(self.names, self.functions, strict=True):
            values, raised = self._call(name, fn, given, len(completions))
            for i, v in enumerate(values):
                if v is None or not math.isfinite(v):
                    failures[name] += 1
                    if i not in raised:  # an exception was reported where it happened
                        self._warn_once(name, "None" if v is None else repr(v), prompts[i], completions[i], i)
            per_reward[name] = torch.tensor([math.nan if v is None or not math.isfinite(v) else v for v in values])
        stacked = torch.stack([per_reward[n] * w for n, w in zip(self.names, self.weights, strict=True)])  # (K, N)
        total = stacked.nansum(0)
        total[stacked.isnan().all(0)] = math.nan
        return RewardScores(total, per_reward, failures)

    def _call(self, name: str, fn: Callable, given: dict[str, list], n: int) -> tuple[list, set]:
        """The reward's values for every sample, and the samples on which it raised (scored None)."""
        kwargs = _accepted(fn, given)
        try:
            values = fn(**kwargs)
        except Exception:  # noqa: BLE001 (any user code may fail; find and report the sample below)
            pass
        else:
            return self._checked(name, values, n), set()
        values: list = []
        raised: set[int] = set()
        prompts, completions = given["prompts"], given["completions"]
        for i in range(n):
            try:
                values += self._checked(name, fn(**{k: v[i : i + 1] for k, v in kwargs.items()}), 1)
            except LitAlignError:  # a broken contract (wrong length or type) is an error whatever on_error says
                raise
            except Exception as error:  # noqa: BLE001
                message = (
                    f"reward '{name}' failed on sample {i} (prompt={prompts[i]!r:.200}, "
                    f"completion={completions[i]!r:.200}): {type(error).__name__}: {error}"
                )
                if isinstance(error, TypeError) and "argument" in str(error):
                    columns = sorted(set(given) - {"prompts", "completions", "completion_ids"})
                    message += f" (the data give the columns {columns})"
                if self.on_error == "raise":
                    raise LitAlignError(message + " (set on_reward_error: none to score it None and go on)") from error
                rank_zero_warn(message + "; scored None")
                raised.add(i)
                values.append(None)
        return values, raised

    def _warn_once(self, name: str, kind: str, prompt: Any, completion: Any, index: int) -> None:
        """Report the first sample a reward returns None / NaN / inf for (every one is counted in ``failures``)."""
        if (name, kind) in self._warned:
            return
        self._warned.add((name, kind))
        rank_zero_warn(
            f"reward '{name}' returned {kind} for sample {index} (prompt={prompt!r:.200}, completion="
            f"{completion!r:.200}); such samples are left out of the loss and counted as rewards/{name}/failures"
        )

    @staticmethod
    def _checked(name: str, values: Any, expected: int) -> list:
        """The values as floats or None; a reward that returns anything else is refused (it breaks the contract)."""
        if not isinstance(values, (list, tuple)) or len(values) != expected:
            raise LitAlignError(
                f"reward '{name}' must return a list of {expected} floats or None (one per completion), "
                f"got {values!r:.80}"
            )
        for v in values:
            if v is not None and not isinstance(v, numbers.Real) and not (torch.is_tensor(v) and v.numel() == 1):
                raise LitAlignError(f"reward '{name}' returned {v!r:.80}, not a float or None")
        return [None if v is None else float(v) for v in values]


# Checkpoints keep the module's hyperparameters; let them load with torch.load(weights_only=True).
torch.serialization.add_safe_globals([RewardSpec])
