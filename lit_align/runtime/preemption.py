"""Pre-emption: on a signal, save at the next batch boundary, requeue the SLURM job, stop; Lightning resumes.

The flow, on every process of the job:

1. SLURM sends ``SIGUSR1`` (``#SBATCH --signal=USR1@120``: 120 s before the time limit) or ``SIGTERM`` (pre-emption,
   ``scancel``). :class:`Requeue`'s handler only records which signal arrived: saving inside a signal handler would
   run in the middle of a forward or backward pass, with the model half-updated and other ranks elsewhere.
2. After the next optimizer step every rank sums the flags (one small all-reduce), so a signal that reached one rank
   stops all ranks at the same step.
3. All ranks save ``<default_root_dir>/hpc_ckpt_<N>.ckpt`` (N = newest + 1): written under a temporary name and
   renamed once complete, older ones deleted only then.
4. Global rank 0 runs ``scontrol requeue $SLURM_JOB_ID`` (``SIGUSR1`` only; a failure is logged). The run stops
   cleanly, with exit code 0 and without writing the Hugging Face model.
5. The requeued job starts the same command. Lightning finds the newest ``hpc_ckpt_<N>.ckpt`` in
   ``default_root_dir`` by itself (``ckpt_path`` left unset under SLURM) and restores weights, optimizer, scheduler,
   loop counters, the data loaders' position and (``RNGState``) the random generators.

Outside SLURM the same happens without the requeue; resume with ``--ckpt_path hpc``.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import threading
from collections.abc import Sequence
from pathlib import Path

import torch
from fsspec.implementations.local import LocalFileSystem
from lightning import Callback, LightningModule, Trainer
from lightning.fabric.plugins.environments import SLURMEnvironment
from lightning.fabric.utilities.cloud_io import get_filesystem
from lightning.pytorch.trainer.connectors.checkpoint_connector import _CheckpointConnector
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn

from lit_align.errors import LitAlignError
from lit_align.runtime.checkpoint_io import PARTIAL_PREFIX, fsync_folder

HPC_PREFIX = "hpc_ckpt_"  # the name Lightning resumes from under SLURM (``_CheckpointConnector._hpc_resume_path``)
_STOP, _REQUEUE = 0, 1  # positions in the flag tensor that the ranks sum


class Requeue(Callback):
    """Save, requeue and stop at the first batch boundary after a pre-emption signal (see the module docstring).

    Args:
        requeue_signals: Signals that save, requeue the job and stop (names such as ``SIGUSR1``).
        stop_signals: Signals that save and stop without requeueing (``SIGTERM``: ``scancel``, pre-emption by a
            scheduler that requeues the job itself, other schedulers).
        requeue_command: Command that requeues the job, run by global rank 0 with ``$VARIABLES`` expanded. Runs only
            under SLURM (``SLURM_JOB_ID`` set); null never requeues.
        keep: Number of ``hpc_ckpt_<N>.ckpt`` files to keep (the newest ones).

    """

    def __init__(
        self,
        requeue_signals: Sequence[str] = ("SIGUSR1",),
        stop_signals: Sequence[str] = ("SIGTERM",),
        requeue_command: str | None = "scontrol requeue $SLURM_JOB_ID",
        keep: int = 1,
    ) -> None:
        """See the class docstring."""
        if keep < 1:
            raise LitAlignError(f"Requeue: keep must be at least 1 (got {keep})")
        self.signals = {_parse_signal(name): _REQUEUE for name in requeue_signals}
        self.signals.update({_parse_signal(name): _STOP for name in stop_signals})
        self.requeue_command, self.keep = requeue_command, keep
        self.requested = [False, False]  # [stop, requeue]; written by the signal handler, read at batch ends
        self.preempted = False  # True once this run saved and stopped because of a signal
        self.checkpoint_path: str | None = None
        self._previous_handlers: dict[signal.Signals, object] = {}
        self._last_step = 0

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        """Turn off Lightning's own SLURM auto-requeue, which saves inside its signal handler.

        This runs before the Trainer installs its handlers, so the change takes effect in the same run.
        """
        environment = getattr(trainer._accelerator_connector, "cluster_environment", None)
        if isinstance(environment, SLURMEnvironment) and environment.auto_requeue:
            rank_zero_warn(
                "Requeue: turning off SLURMEnvironment(auto_requeue=True), which saves inside its signal handler;"
                " set `plugins: {class_path: lightning.pytorch.plugins.environments.SLURMEnvironment,"
                " init_args: {auto_requeue: false}}` (configs/cluster/slurm.yaml) to silence this"
            )
            environment.auto_requeue = False

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Install the signal handlers (after the Trainer's own, which would otherwise replace them)."""
        self._last_step = trainer.global_step
        if threading.current_thread() is not threading.main_thread():
            rank_zero_warn("Requeue: not in the main thread, so no signal handlers can be installed")
            return
        for signum in self.signals:
            self._previous_handlers[signum] = signal.signal(signum, self._handle)

    def _handle(self, signum: int, frame: object) -> None:
        """Record the signal and nothing else; the work happens at the next batch boundary."""
        self.requested[self.signals[signal.Signals(signum)]] = True

    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: object, batch: object, batch_idx: int
    ) -> None:
        """After each optimizer step, agree across ranks on whether a signal arrived; if so, save, requeue and stop."""
        if trainer.global_step == self._last_step:  # mid gradient accumulation: a resume could not restore it
            return
        self._last_step = trainer.global_step
        flags = torch.tensor([float(flag) for flag in self.requested], device=trainer.strategy.root_device)
        flags = trainer.strategy.reduce(flags, reduce_op="sum")  # a collective: every rank calls it at this step
        if not flags.any():
            return
        self.requested = [False, False]
        self.checkpoint_path = save_hpc_checkpoint(trainer, keep=self.keep)
        if flags[_REQUEUE] and trainer.is_global_zero:
            requeue(self.requeue_command)
        self.preempted = True
        trainer.should_stop = True
        rank_zero_info(f"Requeue: stopping at step {trainer.global_step} after a pre-emption signal")

    def teardown(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        """Put back the handlers that were there before :meth:`on_train_start`."""
        for signum, handler in self._previous_handlers.items():
            if signal.getsignal(signum) == self._handle:
                signal.signal(signum, handler)
        self._previous_handlers = {}


def save_hpc_checkpoint(trainer: Trainer, keep: int = 1) -> str:
    """Save ``hpc_ckpt_<N>.ckpt`` in ``default_root_dir`` (N = newest + 1) atomically; keep the ``keep`` newest.

    Every rank must call it (saving a sharded model is a collective). The checkpoint is written under a name that
    Lightning never resumes from and renamed by global rank 0 once every rank has finished writing, so a kill during
    the save leaves the previous checkpoint as the newest complete one. Works for files and checkpoint folders.

    Returns:
        The path of the new checkpoint.

    """
    root = str(trainer.default_root_dir)
    target = trainer.strategy.broadcast(_CheckpointConnector.hpc_save_path(root))  # rank 0 decides N for everyone
    partial = str(Path(target).with_name(PARTIAL_PREFIX + Path(target).name.replace(HPC_PREFIX, "hpc-")))
    trainer.strategy.remove_checkpoint(partial)  # left over from a save that was killed
    trainer.strategy.barrier("lit_align.runtime.preemption.save_hpc_checkpoint")
    trainer.save_checkpoint(partial)  # ends with a barrier: every rank has written its part
    if trainer.is_global_zero:
        fs = get_filesystem(root)
        fs.mv(partial, target, recursive=True)  # a rename within one folder
        if isinstance(fs, LocalFileSystem):
            fsync_folder(Path(root))  # the rename survives a crash of the node
        for old in _hpc_checkpoints(root)[:-keep]:
            trainer.strategy.checkpoint_io.remove_checkpoint(old)
    trainer.strategy.barrier("lit_align.runtime.preemption.save_hpc_checkpoint")
    rank_zero_info(f"Requeue: saved {target}")
    return target


def requeue(command: str | None) -> bool:
    """Run the requeue command under SLURM; log a failure instead of raising. Returns whether the job was requeued."""
    if command is None or "SLURM_JOB_ID" not in os.environ:
        rank_zero_info("Requeue: not a SLURM job, so nothing requeues it; resume with --ckpt_path hpc")
        return False
    args = shlex.split(os.path.expandvars(command))
    try:
        result = subprocess.run(args, capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired) as error:
        rank_zero_warn(f"Requeue: `{shlex.join(args)}` failed: {error}")
        return False
    if result.returncode != 0:
        rank_zero_warn(f"Requeue: `{shlex.join(args)}` exited with {result.returncode}: {result.stderr.strip()}")
        return False
    rank_zero_info(f"Requeue: ran `{shlex.join(args)}`")
    return True


def was_preempted(trainer: Trainer) -> bool:
    """Whether a :class:`Requeue` callback stopped this run because of a pre-emption signal."""
    return any(isinstance(callback, Requeue) and callback.preempted for callback in trainer.callbacks)


def _hpc_checkpoints(root: str) -> list[str]:
    """``hpc_ckpt_<N>.ckpt`` paths in ``root``, oldest (smallest N) first."""
    found = []
    for path in get_filesystem(root).ls(root, detail=False):
        name = Path(path).name
        number = name[len(HPC_PREFIX) : -len(".ckpt")]
        if name.startswith(HPC_PREFIX) and name.endswith(".ckpt") and number.isdigit():
            found.append((int(number), path))
    return [path for _, path in sorted(found)]


def _parse_signal(name: str) -> signal.Signals:
    """``"SIGUSR1"`` or ``"USR1"`` -> ``signal.SIGUSR1``; a one-line error for a name this platform lacks."""
    key = name.upper() if name.upper().startswith("SIG") else f"SIG{name.upper()}"
    if key not in signal.Signals.__members__:
        raise LitAlignError(f"Requeue: unknown signal {name!r} (use a name such as SIGUSR1 or SIGTERM)")
    return signal.Signals[key]
