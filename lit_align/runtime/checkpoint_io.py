"""Atomic checkpoint writes: a process killed while saving never leaves a half-written checkpoint behind.

Lightning 2.6's ``TorchCheckpointIO`` serialises the whole checkpoint into memory, writes it to a temporary file in
the system temp folder (``$TMPDIR``) and moves it onto the target. When ``$TMPDIR`` is on another filesystem than the
checkpoint (node-local ``/tmp`` and a shared checkpoint folder, the usual cluster layout) that move is a copy into the
target itself, so a kill during the copy leaves a truncated checkpoint; a kill before it leaves a checkpoint-sized
file in ``/tmp``; nothing is fsynced. :class:`AtomicCheckpointIO` writes next to the target and renames.
"""

from __future__ import annotations

import os
import pickle
import re
import traceback
import uuid
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import torch
from fsspec.implementations.local import LocalFileSystem
from lightning.fabric.utilities.cloud_io import get_filesystem
from lightning.fabric.utilities.types import _PATH
from lightning.pytorch.plugins.io import TorchCheckpointIO
from lightning.pytorch.strategies import Strategy

from lit_align.errors import CheckpointError

# Temporary files must not contain "hpc_ckpt_" or "last": Lightning finds the checkpoints to resume from by those
# substrings in file names, and a partial file must never be taken for a checkpoint.
PARTIAL_PREFIX = ".partial-"


class AtomicCheckpointIO(TorchCheckpointIO):
    """``TorchCheckpointIO`` whose local writes are atomic: temp file in the target's folder, fsync, rename.

    After a kill at any point the target holds either its previous content or the complete new checkpoint; at worst a
    hidden ``.partial-<hex>`` file is left next to it. Remote (fsspec) paths keep Lightning's transactional write.
    The checkpoint is streamed to the file instead of being built in memory first.
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path: _PATH, storage_options: Any | None = None) -> None:
        """Write ``checkpoint`` to ``path`` atomically (see the class docstring)."""
        if storage_options is not None or not _is_local(path):
            super().save_checkpoint(checkpoint, path, storage_options)  # raises on storage_options, as Lightning does
            return
        write_atomically(Path(path), lambda f: torch.save(checkpoint, f))


def write_atomically(path: Path, write: Callable[[IO[bytes]], None]) -> None:
    """Call ``write`` on a temporary file next to ``path``, fsync it, rename it onto ``path``, fsync the folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.parent / f"{PARTIAL_PREFIX}{uuid.uuid4().hex}"
    try:
        with open(partial, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(partial, path)  # atomic on POSIX within one filesystem
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    fsync_folder(path.parent)


def fsync_folder(folder: Path) -> None:
    """Make a rename in ``folder`` durable (a no-op where folders cannot be opened, e.g. Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def use_atomic_writes(strategy: Strategy) -> None:
    """Give ``strategy`` an :class:`AtomicCheckpointIO` where it would use Lightning's default ``TorchCheckpointIO``.

    A CheckpointIO the user configured (any other class, or a wrapper such as ``AsyncCheckpointIO``) is left alone.
    Strategies that write their own checkpoints (sharded distributed checkpoints, DeepSpeed) do not go through a
    CheckpointIO for those and are not affected.
    """
    if type(strategy.checkpoint_io) is TorchCheckpointIO:
        strategy.checkpoint_io = AtomicCheckpointIO()


def _is_local(path: _PATH) -> bool:
    return isinstance(get_filesystem(path), LocalFileSystem)


def checkpoint_problem(path: Any, key: str, error: BaseException) -> CheckpointError | None:
    """The one-line error for a checkpoint that failed to load, or None when ``error`` is not about the file.

    Missing, truncated or damaged files, folders where a file is needed, and files that weights-only loading refuses
    (they would run code when unpickled) are the user's to fix; anything else is a bug and keeps its traceback.
    """
    where = f"{key}: '{path}'"
    text = str(error)
    if isinstance(error, FileNotFoundError) or (isinstance(error, OSError) and not Path(str(path)).exists()):
        return CheckpointError(f"{where}: no such checkpoint")
    if isinstance(error, IsADirectoryError):
        return CheckpointError(
            f"{where}: is a folder; give a checkpoint file (a folder of shards needs the FSDP strategy)"
        )
    found = re.search(r"GLOBAL ([\w.]+)", text)
    if isinstance(error, pickle.UnpicklingError) and found:
        return CheckpointError(
            f"{where}: refused as unsafe: it holds objects that weights-only loading does not allow (it needs "
            f"{found.group(1)}); only load checkpoints you trust, and re-save them as plain tensors"
        )
    if isinstance(error, pickle.UnpicklingError) and "weights only" in text.lower():
        return CheckpointError(
            f"{where}: weights-only loading cannot read it: damaged, not written by torch.save, or holding objects "
            "that it does not allow"
        )
    if isinstance(error, (EOFError, zipfile.BadZipFile, pickle.UnpicklingError)) or _raised_by_torch_load(error):
        first = text.strip().splitlines()[0] if text.strip() else ""
        return CheckpointError(f"{where}: truncated or damaged ({type(error).__name__}: {first[:120]})")
    return None


def _raised_by_torch_load(error: BaseException) -> bool:
    """Whether the error came out of torch's checkpoint reader itself (it reads bytes it does not understand)."""
    frames = traceback.extract_tb(error.__traceback__)
    return bool(frames) and Path(frames[-1].filename).name in ("serialization.py", "_weights_only_unpickler.py")


def load_checkpoint_file(path: Path, key: str) -> dict[str, Any]:
    """``torch.load(path, weights_only=True)`` on CPU, with a one-line :class:`CheckpointError` for a bad file."""
    if not path.is_file():
        raise CheckpointError(f"{key}: '{path}': no such checkpoint")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{key}: '{path}': truncated or damaged (empty file)")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 (sorted below: file problems become one line, bugs are re-raised)
        problem = checkpoint_problem(path, key, error)
        if problem is None:
            raise
        raise problem from error


def guard_checkpoint_loading(strategy: Strategy, key: str = "ckpt_path") -> None:
    """Make ``strategy.load_checkpoint`` (what ``--ckpt_path`` resumes through) fail in one line on a bad file."""
    load = strategy.load_checkpoint

    def load_checkpoint(checkpoint_path: _PATH, *args: Any, **kwargs: Any) -> Any:
        try:
            return load(checkpoint_path, *args, **kwargs)
        except Exception as error:  # noqa: BLE001 (file problems become one line; anything else is re-raised)
            problem = checkpoint_problem(checkpoint_path, key, error)
            if problem is None:
                raise
            raise problem from error

    strategy.load_checkpoint = load_checkpoint
