"""A process killed while writing a checkpoint leaves the previous checkpoint intact (AtomicCheckpointIO).

The writer runs in a subprocess whose file writes into the checkpoint's folder stop halfway with SIGKILL, the way a
pre-empted job dies when SLURM's grace period ends during a save.
"""

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from lightning.pytorch.trainer.connectors.checkpoint_connector import _CheckpointConnector

from lit_align.commands.fit import run_cli
from lit_align.runtime.checkpoint_io import AtomicCheckpointIO
from tests.helpers import REPO

SIZE = 1 << 20  # floats in the checkpoint: 4 MiB, written in many pieces

# Replace open() so that a binary file opened for writing in the checkpoint's folder is killed (SIGKILL) halfway
# through; fileno() is hidden so that shutil copies through write() too.
_WRITER = f"""
import builtins, io, os, signal, sys
import torch
target, how = sys.argv[1], sys.argv[2]
folder, real_open, limit = os.path.dirname(target), builtins.open, {SIZE} * 2

class Dying:
    def __init__(self, f):
        self.f, self.written = f, 0
    def write(self, data):
        if self.written + len(data) > limit:
            self.f.write(bytes(data)[: limit - self.written]); self.f.flush()
            os.kill(os.getpid(), signal.SIGKILL)
        self.written += len(data)
        return self.f.write(data)
    def fileno(self):
        raise io.UnsupportedOperation("fileno")
    def __getattr__(self, name):
        return getattr(self.f, name)
    def __enter__(self):
        return self
    def __exit__(self, *exc):
        self.f.close()

def dying_open(file, mode="r", *args, **kwargs):
    f = real_open(file, mode, *args, **kwargs)
    in_folder = isinstance(file, (str, os.PathLike)) and os.path.dirname(os.path.abspath(file)) == folder
    return Dying(f) if in_folder and "w" in mode and "b" in mode else f

builtins.open = dying_open
new = {{"state_dict": {{"w": torch.ones({SIZE})}}, "global_step": 2}}
if how == "atomic":
    from lit_align.runtime.checkpoint_io import AtomicCheckpointIO
    AtomicCheckpointIO().save_checkpoint(new, target)
elif how == "lightning":
    from lightning.pytorch.plugins.io import TorchCheckpointIO
    TorchCheckpointIO().save_checkpoint(new, target)
else:  # naive: straight onto the target
    with open(target, "wb") as f:
        torch.save(new, f)
print("finished")
"""


def _save_killed(target: Path, how: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """Write an old checkpoint at ``target``, then try to overwrite it in a process that dies halfway."""
    torch.save({"state_dict": {"w": torch.zeros(SIZE)}, "global_step": 1}, target)
    return subprocess.run(
        [sys.executable, "-c", _WRITER, str(target), how],
        cwd=REPO,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


def _loads(path: Path) -> dict | None:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception:
        return None


def test_kill_during_atomic_write_keeps_the_old_checkpoint(tmp_path):
    target = tmp_path / "hpc_ckpt_1.ckpt"
    result = _save_killed(target, "atomic")
    assert result.returncode == -signal.SIGKILL, result.stderr[-2000:]
    old = _loads(target)
    assert old is not None and old["global_step"] == 1 and not old["state_dict"]["w"].any()
    # The half-written file is hidden, not a *.ckpt, and not counted by Lightning's hpc resume (it picks N = 1).
    assert [p.name for p in tmp_path.glob("*.ckpt")] == ["hpc_ckpt_1.ckpt"]
    assert len(list(tmp_path.glob(".partial-*"))) == 1
    assert Path(_CheckpointConnector.hpc_save_path(tmp_path)).name == "hpc_ckpt_2.ckpt"


def test_kill_during_a_plain_write_corrupts_the_checkpoint(tmp_path):
    """Control: the same kill while writing straight onto the target leaves a file that does not load."""
    target = tmp_path / "hpc_ckpt_1.ckpt"
    result = _save_killed(target, "naive")
    assert result.returncode == -signal.SIGKILL, result.stderr[-2000:]
    assert _loads(target) is None


@pytest.mark.skipif(
    not Path("/dev/shm").is_dir() or os.stat("/dev/shm").st_dev == os.stat(REPO).st_dev,
    reason="needs a second filesystem (/dev/shm) for $TMPDIR",
)
def test_lightning_writer_is_not_atomic_when_tmpdir_is_another_filesystem(tmp_path):
    """Why AtomicCheckpointIO exists (Lightning 2.6): its temp file goes to $TMPDIR, then is copied onto the target."""
    target = tmp_path / "hpc_ckpt_1.ckpt"
    shm = Path("/dev/shm") / f"lit-align-test-{os.getpid()}"
    shm.mkdir()
    try:
        result = _save_killed(target, "lightning", env={**os.environ, "TMPDIR": str(shm)})
        assert result.returncode == -signal.SIGKILL, result.stderr[-2000:]
        assert _loads(target) is None
    finally:
        for leftover in shm.iterdir():
            leftover.unlink()
        shm.rmdir()


def test_atomic_io_round_trips_and_replaces(tmp_path):
    io, target = AtomicCheckpointIO(), tmp_path / "sub" / "x.ckpt"
    for step in (1, 2):
        io.save_checkpoint({"global_step": step}, target)
    assert io.load_checkpoint(target, weights_only=True) == {"global_step": 2}
    assert sorted(p.name for p in target.parent.iterdir()) == ["x.ckpt"]


def test_cli_trainer_writes_checkpoints_atomically(tmp_path):
    cli = run_cli(
        [
            "--config",
            str(REPO / "recipes" / "sft.yaml"),
            "--model.init_args.policy.name_or_path",
            "lit-align/tiny-sft",
            "--trainer.default_root_dir",
            str(tmp_path),
        ],
        run=False,
    )
    assert type(cli.trainer.strategy.checkpoint_io) is AtomicCheckpointIO
