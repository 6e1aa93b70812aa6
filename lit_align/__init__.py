"""lit-align: alignment objectives as plain Lightning modules, data shapes as Lightning data modules."""

from lit_align.types import IGNORE_INDEX

__all__ = ["IGNORE_INDEX"]
__version__ = "0.1.0"
