"""The Requeue callback: a signal saves at the next step and stops; ``ckpt_path="hpc"`` resumes to the same weights."""

import signal

import pytest
import torch
from lightning import Trainer, seed_everything
from lightning.pytorch.plugins.environments import SLURMEnvironment

from lit_align.data import DataSource, SFTDataModule
from lit_align.errors import LitAlignError
from lit_align.objectives import SFT
from lit_align.roles.models import ModelSpec
from lit_align.runtime.callbacks import RNGState, SaveHuggingFace
from lit_align.runtime.preemption import Requeue, requeue, save_hpc_checkpoint
from tests.helpers import SignalAtStep


def _fit(root, steps, *callbacks, ckpt_path=None, seed=0):
    seed_everything(seed)
    module = SFT(policy=ModelSpec(name_or_path="lit-align/tiny-sft"), optimizer=lambda p: torch.optim.AdamW(p, 1e-3))
    data = SFTDataModule(source=DataSource(num_rows=64, num_val_rows=4), batch_size=4)
    trainer = Trainer(
        max_steps=steps,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        callbacks=[RNGState(), *callbacks],
        default_root_dir=root,
    )
    trainer.fit(module, data, ckpt_path=ckpt_path)
    return trainer, module


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    """An uninterrupted 6-step run."""
    return _fit(tmp_path_factory.mktemp("straight"), 6)[1]


@pytest.mark.parametrize("signum", ["SIGUSR1", "SIGTERM"])
def test_signal_saves_at_the_next_step_stops_and_resumes_exactly(tmp_path, straight, signum):
    callback = Requeue(requeue_command="false")  # would fail loudly if it ran: outside SLURM it must not
    trainer, _ = _fit(tmp_path, 6, callback, SignalAtStep(2, signum), SaveHuggingFace())
    assert callback.preempted and trainer.global_step == 3  # the signal came after Requeue's check at step 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hpc_ckpt_1.ckpt"]  # no hf_model, no partial file
    assert signal.getsignal(signal.Signals[signum]) != callback._handle  # handlers put back after fit
    _, resumed = _fit(tmp_path, 6, Requeue(), ckpt_path="hpc", seed=123)
    for (name, a), b in zip(straight.policy.named_parameters(), resumed.policy.parameters(), strict=True):
        assert torch.equal(a, b), name


def test_save_keeps_the_newest_checkpoints_only(tmp_path):
    trainer, _ = _fit(tmp_path, 1)
    paths = [save_hpc_checkpoint(trainer, keep=2) for _ in range(3)]
    assert [p.rsplit("/", 1)[-1] for p in paths] == ["hpc_ckpt_1.ckpt", "hpc_ckpt_2.ckpt", "hpc_ckpt_3.ckpt"]
    assert sorted(p.name for p in tmp_path.glob("*.ckpt")) == ["hpc_ckpt_2.ckpt", "hpc_ckpt_3.ckpt"]


def test_requeue_command_runs_only_under_slurm_and_a_failure_is_not_fatal(monkeypatch, tmp_path):
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    assert not requeue("true")
    monkeypatch.setenv("SLURM_JOB_ID", "7")
    out = tmp_path / "args"
    assert requeue(f"sh -c 'echo $0 > {out}' $SLURM_JOB_ID") and out.read_text() == "7\n"
    assert not requeue("false") and not requeue("no-such-scontrol requeue 7")


def test_lightning_auto_requeue_is_turned_off(monkeypatch):
    for key in ("SLURM_NTASKS", "SLURM_NTASKS_PER_NODE"):
        monkeypatch.setenv(key, "1")
    environment = SLURMEnvironment(auto_requeue=True)
    trainer = Trainer(plugins=[environment], logger=False, enable_checkpointing=False, accelerator="cpu")
    with pytest.warns(UserWarning, match="auto_requeue"):
        Requeue().setup(trainer, None, "fit")
    assert not environment.auto_requeue


def test_unknown_signal_is_a_one_line_error():
    with pytest.raises(LitAlignError, match="unknown signal 'SIGNOPE'"):
        Requeue(requeue_signals=["SIGNOPE"])
