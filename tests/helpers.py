"""Helpers shared by tests."""

import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import torch.distributed as dist
import torch.multiprocessing as mp
from lightning import Callback
from lightning.pytorch.loggers import Logger

REPO = Path(__file__).resolve().parents[1]


def recipe_data(recipe: Path | str) -> str:
    """The data module a recipe trains on, by class name ("SFTDataModule", "StepwiseDataModule", ...).

    Tests that write a small file for every shipped recipe pick its row shape by this, not by the recipe's name, so
    that a new recipe gets the rows its data module reads.
    """
    import yaml

    path = Path(recipe) if str(recipe).endswith(".yaml") else REPO / "recipes" / f"{recipe}.yaml"
    return yaml.safe_load(path.read_text())["data"]["class_path"].rsplit(".", 1)[-1]


def write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def run_lit_align(
    *args: str, cwd: Path = REPO, timeout: int = 300, env: dict | None = None
) -> subprocess.CompletedProcess:
    """Run the console script as a user would and capture its output (``env`` adds environment variables)."""
    return subprocess.run(
        [sys.executable, "-m", "lit_align.commands", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


# Several processes on a 2-core machine: one thread each, or they slow each other down.
ONE_THREAD = {"OMP_NUM_THREADS": "1"}


class SignalAtStep(Callback):
    """Callback (``class_path: tests.helpers.SignalAtStep``) that sends a signal to its own process once.

    It fires after optimizer step ``step`` on global rank ``rank`` only, so a test can deliver a pre-emption signal at
    a known point of a run, and to one rank of several.
    """

    def __init__(self, step: int, signal: str = "SIGUSR1", rank: int = 0) -> None:
        self.step, self.signal, self.rank = step, signal, rank

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step == self.step and trainer.global_rank == self.rank:
            os.kill(os.getpid(), signal.Signals[self.signal])


def _gloo_worker(rank: int, port: int, out: dict, compute: Callable[[int], object]) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    try:
        gathered = [None, None]
        dist.all_gather_object(gathered, compute(rank))
        if rank == 0:
            out.update(ranks=gathered)
    finally:
        dist.destroy_process_group()


def run_on_two_processes(compute: Callable[[int], object]) -> list:
    """Run ``compute(rank)`` (a module-level function) in 2 CPU processes joined over gloo; return both results."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = mp.Manager().dict()
    mp.spawn(_gloo_worker, args=(port, out, compute), nprocs=2, join=True)
    return out["ranks"]


class InProcessRun(NamedTuple):
    """What :func:`run_in_process` saw: the exit code, stderr, and the warnings raised."""

    code: int
    stderr: str
    warnings: list[str]
    stdout: str = ""

    @property
    def returncode(self) -> int:
        """The exit code, under the name a subprocess result gives it."""
        return self.code


def run_in_process(*args: str) -> InProcessRun:
    """Run ``lit-align <args>`` in this process, as :func:`run_lit_align` but much faster (no new interpreter).

    For the many bad-input cases. An exception that escapes ``main`` (a traceback a user would see) is not caught,
    so it fails the calling test.
    """
    import contextlib
    import io
    import warnings

    from lit_align.commands import main

    err, out = io.StringIO(), io.StringIO()
    code = 0
    with (
        contextlib.redirect_stderr(err),
        contextlib.redirect_stdout(out),
        warnings.catch_warnings(record=True) as caught,
    ):
        warnings.simplefilter("always")
        try:
            main(list(args))
        except SystemExit as exit_:
            code = exit_.code if isinstance(exit_.code, int) else 1
    return InProcessRun(code, err.getvalue(), [str(w.message) for w in caught], out.getvalue())


class FolderLogger(Logger):
    """A logger laid out as TensorBoard's (``save_dir/name/version_N``) that writes nothing, for logger tests."""

    def __init__(self, save_dir: str, name: str = "tb") -> None:
        super().__init__()
        self._save_dir, self._name = save_dir, name

    @property
    def name(self) -> str:
        return self._name

    @property
    def version(self) -> int:
        return 7

    @property
    def save_dir(self) -> str:
        return self._save_dir

    @property
    def log_dir(self) -> str:
        return os.path.join(self._save_dir, self._name, f"version_{self.version}")

    def log_hyperparams(self, params, *args, **kwargs) -> None:
        pass

    def log_metrics(self, metrics, step=None) -> None:
        pass
