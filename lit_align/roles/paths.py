"""Where a model role's files are: embedded names, local folders (checked), or Hugging Face hub ids."""

from __future__ import annotations

import os
from pathlib import Path

from lit_align.embedded import EMBEDDED_NAMES, embedded_model_path
from lit_align.errors import ModelLoadError

POLICY_KEY = "model.init_args.policy.name_or_path"


def _looks_local(name_or_path: str) -> bool:
    # Hub ids are "name" or "org/name"; anything else is meant as a path on disk.
    return (
        name_or_path.startswith((".", "/", "~"))
        or name_or_path.count("/") > 1
        or os.sep != "/"
        and os.sep in name_or_path
    )


def resolve_model_path(name_or_path: str, key: str = POLICY_KEY) -> str:
    """Map an embedded name to its folder and check that a local path exists; pass hub ids through.

    Raises:
        ModelLoadError: A local-looking path that does not exist, or a file where a folder is needed.

    """
    if name_or_path in EMBEDDED_NAMES:
        return str(embedded_model_path(name_or_path))
    path = Path(name_or_path).expanduser()
    if path.is_file():
        raise ModelLoadError(f"{key}: '{name_or_path}' is a file; a model path must be a folder")
    if path.is_dir():
        return str(path)
    if _looks_local(name_or_path):
        raise ModelLoadError(f"{key}: model path '{name_or_path}' does not exist")
    if _offline() and not _cached(name_or_path):
        raise ModelLoadError(
            f"{key}: '{name_or_path}' is not a local folder and not in the Hugging Face cache, and the hub is "
            "offline (HF_HUB_OFFLINE=1); download it first or give a local path"
        )
    return name_or_path


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").upper() in ("1", "ON", "YES", "TRUE")


def _cached(repo_id: str) -> bool:
    """Whether a hub model (its config or tokenizer config) is in the local Hugging Face cache."""
    from huggingface_hub import try_to_load_from_cache

    for filename in ("config.json", "tokenizer_config.json"):
        try:
            if isinstance(try_to_load_from_cache(repo_id, filename), str):
                return True
        except ValueError:  # not a valid repo id: let transformers give its own message
            return True
    return False


def first_line(error: Exception) -> str:
    """The first line of an exception's message (its type name when empty), for one-line errors."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
