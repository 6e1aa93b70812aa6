"""Old argument names accepted with a deprecation warning (one concept, one name: see docs/glossary.md)."""

from __future__ import annotations

import warnings
from typing import TypeVar

from lit_align.errors import LitAlignError

T = TypeVar("T")


def renamed(new_value: T, old_value: T | None, *, default: T, old: str, new: str, owner: str) -> T:
    """Return ``old_value`` (warning that ``old`` is deprecated) when it was given, else ``new_value``.

    Raises:
        LitAlignError: Both names were given (``new_value`` differs from its ``default``): which one wins is unclear.

    """
    if old_value is None:
        return new_value
    if new_value != default:
        raise LitAlignError(f"model.init_args.{old}: give only '{new}' ('{old}' is its deprecated name)")
    warnings.warn(f"{owner}: '{old}' is deprecated, use '{new}'", FutureWarning, stacklevel=3)
    return old_value
