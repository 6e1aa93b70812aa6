"""The embedded default: a tiny character-level tokenizer and Llama model, usable offline.

``lit-align/tiny-sft`` ships inside this package: ``lit-align/tiny-base`` after ``recipes/sft.yaml``.
``lit-align/tiny-base`` (random initialisation) is not shipped; :func:`embedded_model_path` builds it
reproducibly on first use into ``$LIT_ALIGN_CACHE`` (default ``~/.cache/lit-align``).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

EMBEDDED_DIR = Path(__file__).parent
EMBEDDED_NAMES = ("lit-align/tiny-base", "lit-align/tiny-sft")
BUILD_VERSION = 2  # bump when build.py changes what it writes, so stale cached copies are not reused


def cache_dir() -> Path:
    """Folder for models built on demand."""
    return Path(os.environ.get("LIT_ALIGN_CACHE", Path.home() / ".cache" / "lit-align"))


def embedded_model_path(name: str) -> Path:
    """Folder of an embedded model, building ``tiny-base`` first if it is not there yet."""
    if name == "lit-align/tiny-sft":
        return EMBEDDED_DIR / "tiny-sft"
    if name != "lit-align/tiny-base":
        raise KeyError(name)
    import torch

    path = cache_dir() / f"tiny-base-v{BUILD_VERSION}-torch{torch.__version__.split('+')[0]}"
    if not (path / "model.safetensors").exists():
        from lit_align.embedded.build import write_base

        path.parent.mkdir(parents=True, exist_ok=True)
        # Build in a private folder and rename it into place, so concurrent processes never see half a model.
        tmp = Path(tempfile.mkdtemp(dir=path.parent))
        write_base(tmp)
        try:
            tmp.rename(path)
        except OSError:  # another process won the race
            shutil.rmtree(tmp, ignore_errors=True)
    return path
