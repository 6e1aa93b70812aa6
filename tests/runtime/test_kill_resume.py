"""A recipe run killed with SIGKILL mid-run resumes from its newest checkpoint with ``--ckpt_path last``."""

import csv
import os
import signal
import subprocess
import sys
import time

import torch

from tests.helpers import REPO, run_lit_align


def _args(run):
    return [
        "fit",
        "--config",
        "recipes/sft.yaml",
        "--model.init_args.policy.name_or_path",
        "lit-align/tiny-sft",
        "--data.init_args.source.num_rows",
        "4000",
        "--data.init_args.batch_size",
        "8",
        "--trainer.max_steps",
        "120",
        "--trainer.val_check_interval",
        "120",
        "--trainer.enable_progress_bar",
        "false",
        "--trainer.log_every_n_steps",
        "1",
        "--trainer.default_root_dir",
        str(run),
        # The recipe's ModelCheckpoint (the last callback) writes <run>/checkpoints/last.ckpt; here every 20 steps,
        # keeping each, so the test can wait for step 40.
        "--trainer.callbacks.every_n_train_steps=20",
        "--trainer.callbacks.save_top_k=-1",
    ]


def test_sigkill_then_resume_from_last_checkpoint(tmp_path):
    run = tmp_path / "run"
    proc = subprocess.Popen(
        [sys.executable, "-m", "lit_align.commands", *_args(run)],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    last = run / "checkpoints" / "last.ckpt"
    deadline = time.time() + 240
    while time.time() < deadline and not any((run / "checkpoints").glob("*step=40*.ckpt")):
        assert proc.poll() is None, "the run ended before it could be killed"
        time.sleep(0.2)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL and last.exists()
    assert not (run / "hf_model").exists()  # it died mid-run
    # The kill may land while a checkpoint is being written; whatever last.ckpt holds now is what must be resumed.
    last_step = torch.load(last, map_location="cpu", weights_only=True)["global_step"]
    assert last_step >= 20 and last_step % 20 == 0

    resumed = run_lit_align(*_args(run), "--ckpt_path", "last", timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert (run / "hf_model" / "model.safetensors").exists()
    logs = sorted((run / "logs").glob("version_*/metrics.csv"))
    assert len(logs) == 2  # the killed run's log and the resumed run's
    with open(logs[-1]) as f:
        steps = [int(r["step"]) for r in csv.DictReader(f) if r.get("train/loss")]
    # The resumed run's first logged step is the one after the checkpoint (steps are 0-based), and it finished.
    assert steps[0] == last_step and steps[-1] == 119
