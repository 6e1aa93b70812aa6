"""Pure functions over a metric's history (one value per optimizer step), used by the failure-mode monitors."""

from __future__ import annotations

import math
from collections.abc import Sequence


def window_mean(values: Sequence[float], window: int, *, last: bool = True) -> float:
    """Mean of the last (or first) ``window`` values; NaN when there are none."""
    part = values[-window:] if last else values[:window]
    return sum(part) / len(part) if part else math.nan


def change(values: Sequence[float], window: int) -> float:
    """Mean of the last ``window`` values minus the mean of the first ``window``."""
    return window_mean(values, window) - window_mean(values, window, last=False)


def correlation(x: Sequence[float], y: Sequence[float]) -> float:
    """Pearson correlation of two equally long series; 0 when either is constant."""
    assert len(x) == len(y), "two series of one length"
    n = len(x)
    if n < 2:
        return 0.0
    mx, my = sum(x) / n, sum(y) / n
    sx = math.sqrt(sum((a - mx) ** 2 for a in x))
    sy = math.sqrt(sum((b - my) ** 2 for b in y))
    if sx == 0 or sy == 0:
        return 0.0
    return sum((a - mx) * (b - my) for a, b in zip(x, y, strict=True)) / (sx * sy)
