"""Old argument names accepted with a deprecation warning (one concept, one name: see docs/glossary.md)."""

from __future__ import annotations

import warnings
from typing import TypeVar

T = TypeVar("T")


def renamed(new_value: T, old_value: T | None, *, old: str, new: str, owner: str) -> T:
    """Return ``old_value`` (warning that ``old`` is deprecated) when it was given, else ``new_value``."""
    if old_value is None:
        return new_value
    warnings.warn(f"{owner}: '{old}' is deprecated, use '{new}'", FutureWarning, stacklevel=3)
    return old_value
