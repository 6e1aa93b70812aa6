"""Where a model role's files are: embedded names, local folders (checked), or Hugging Face hub ids."""

from __future__ import annotations

import json
import os
from pathlib import Path

from lit_align.embedded import EMBEDDED_NAMES, embedded_model_path
from lit_align.errors import ModelLoadError

POLICY_KEY = "model.init_args.policy.name_or_path"
GGUF_SUFFIX = ".gguf"


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

    A local ``.gguf`` file is accepted as it is (see :func:`hf_location`).

    Raises:
        ModelLoadError: A local-looking path that does not exist, or a file (other than ``.gguf``) where a folder
            is needed.

    """
    if name_or_path in EMBEDDED_NAMES:
        return str(embedded_model_path(name_or_path))
    path = Path(name_or_path).expanduser()
    if path.is_file():
        if path.suffix == GGUF_SUFFIX:
            return str(path)
        raise ModelLoadError(f"{key}: '{name_or_path}' is a file; a model path must be a folder (or a .gguf file)")
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


def hf_location(path: str) -> tuple[str, dict[str, str]]:
    """Where transformers loads a resolved path from: a ``.gguf`` file is its folder plus ``gguf_file=``."""
    if path.endswith(GGUF_SUFFIX):
        file = Path(path)
        return str(file.parent), {"gguf_file": file.name}
    return path, {}


ADAPTER_CONFIG = "adapter_config.json"


def adapter_base(folder: str) -> str | None:
    """The base model an adapter folder records (``base_model_name_or_path``), or None for a full model folder."""
    config = Path(folder) / ADAPTER_CONFIG
    if not config.is_file():
        return None
    return json.loads(config.read_text()).get("base_model_name_or_path")


def base_reference(name_or_path: str) -> str:
    """How an exported adapter names its base so that a user can resolve it later, on any install.

    An embedded model keeps its name (``lit-align/tiny-sft``: lit-align's loaders and
    :func:`~lit_align.embedded.embedded_model_path` resolve it; its folder inside the install moves with every
    environment), a local folder becomes an absolute path, a hub id stays a hub id. An adapter folder used as the
    base names the base it records.
    """
    if name_or_path in EMBEDDED_NAMES:
        return name_or_path
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        recorded = adapter_base(str(path))
        return base_reference(recorded) if recorded else str(path.resolve())
    return name_or_path


def record_base(adapter_folder: Path, name_or_path: str) -> None:
    """Write :func:`base_reference` of ``name_or_path`` into a saved adapter's config and model card."""
    config_path = adapter_folder / ADAPTER_CONFIG
    config = json.loads(config_path.read_text())
    written, reference = config.get("base_model_name_or_path"), base_reference(name_or_path)
    config["base_model_name_or_path"] = reference
    config_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    card = adapter_folder / "README.md"
    if written and card.is_file():
        card.write_text(card.read_text().replace(str(written), reference))


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
