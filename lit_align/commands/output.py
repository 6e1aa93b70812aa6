"""How the report commands write their results: JSON with floats rounded to 4 digits and NaN as null."""

from __future__ import annotations

import math
from typing import Any


def rounded(value: Any) -> Any:
    """``value`` with every float rounded to 4 digits and NaN written as None, inside dicts and lists too."""
    if isinstance(value, dict):
        return {k: rounded(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [rounded(v) for v in value]
    if isinstance(value, float):
        return None if math.isnan(value) else round(value, 4)
    return value
