"""Atomic checkpoint writes: a process killed while saving never leaves a half-written checkpoint behind.

Lightning 2.6's ``TorchCheckpointIO`` serialises the whole checkpoint into memory, writes it to a temporary file in
the system temp folder (``$TMPDIR``) and moves it onto the target. When ``$TMPDIR`` is on another filesystem than the
checkpoint (node-local ``/tmp`` and a shared checkpoint folder, the usual cluster layout) that move is a copy into the
target itself, so a kill during the copy leaves a truncated checkpoint; a kill before it leaves a checkpoint-sized
file in ``/tmp``; nothing is fsynced. :class:`AtomicCheckpointIO` writes next to the target and renames.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import torch
from fsspec.implementations.local import LocalFileSystem
from lightning.fabric.utilities.cloud_io import get_filesystem
from lightning.fabric.utilities.types import _PATH
from lightning.pytorch.plugins.io import TorchCheckpointIO
from lightning.pytorch.strategies import Strategy

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
