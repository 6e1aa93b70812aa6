"""lit-align: alignment objectives as plain Lightning modules, data shapes as Lightning data modules."""

import logging

from lit_align.types import IGNORE_INDEX

# bitsandbytes warns on every CPU import that an optional download-only kernel is missing; its fallback works.
logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)

__all__ = ["IGNORE_INDEX"]
__version__ = "0.1.0"
