"""A simulated 2-node SLURM job on localhost is pre-empted, requeues itself and resumes to the uninterrupted weights.

Each "node" is one ``lit-align fit`` process with the variables ``srun`` would set (DDP over gloo, one CPU device per
node). ``scontrol`` is a fake on ``PATH`` that records its arguments. The job is launched through the shipped overlay
``configs/cluster/slurm.yaml``, as a user would.
"""

import csv
import os
import socket
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tests.helpers import REPO

STEPS, SIGNAL_STEP, JOB_ID = 12, 5, "4242"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _fake_scontrol(bin_dir: Path, record: Path) -> None:
    bin_dir.mkdir()
    script = bin_dir / "scontrol"
    script.write_text(f'#!/bin/sh\necho "$@" >> "{record}"\n')
    script.chmod(script.stat().st_mode | stat.S_IEXEC)


def _env(rank: int, port: int, bin_dir: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "MASTER_", "PL_", "LOCAL_RANK"))}
    env.update(
        SLURM_NTASKS="2",
        SLURM_PROCID=str(rank),
        SLURM_LOCALID="0",
        SLURM_NODEID=str(rank),
        SLURM_NNODES="2",
        SLURM_NTASKS_PER_NODE="1",
        SLURM_JOB_ID=JOB_ID,
        SLURM_JOB_NAME="lit-align-test",
        SLURM_NODELIST="localhost",
        SLURM_JOB_NODELIST="localhost",
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        PATH=f"{bin_dir}{os.pathsep}{env.get('PATH', '')}",
        OMP_NUM_THREADS="1",  # two processes share the machine
    )
    return env


def _args(run: Path, *extra: str) -> list[str]:
    return [
        "fit",
        "--config",
        "recipes/sft.yaml",
        "--config",
        "configs/cluster/slurm.yaml",
        "--model.init_args.policy.name_or_path",
        "lit-align/tiny-sft",
        "--model.init_args.lr_scheduler.init_args.total_steps",
        str(STEPS),
        "--data.init_args.source.num_rows",
        "64",
        "--data.init_args.source.num_val_rows",
        "4",
        "--data.init_args.batch_size",
        "4",
        "--trainer.num_nodes",
        "2",
        "--trainer.devices",
        "1",
        "--trainer.accelerator",
        "cpu",
        "--trainer.strategy",
        "ddp",
        "--trainer.max_steps",
        str(STEPS),
        "--trainer.val_check_interval",  # one validation, at the end; 8 batches per epoch, so runs cross an epoch
        str(STEPS),
        "--trainer.check_val_every_n_epoch",
        "null",
        "--trainer.log_every_n_steps",
        "1",
        "--trainer.enable_progress_bar",
        "false",
        "--trainer.enable_model_summary",
        "false",
        "--trainer.enable_checkpointing",
        "false",
        "--trainer.default_root_dir",
        str(run),
        *extra,
    ]


def _launch(run: Path, bin_dir: Path, *extra: str) -> None:
    """Start both "nodes" as srun would and wait for them; fail with both logs if either fails."""
    port = _free_port()
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "lit_align.commands", *_args(run, *extra)],
            cwd=REPO,
            env=_env(rank, port, bin_dir),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for rank in range(2)
    ]
    outs = [proc.communicate(timeout=240)[0] for proc in procs]
    for rank, (proc, out) in enumerate(zip(procs, outs, strict=True)):
        assert proc.returncode == 0, f"rank {rank}:\n{out[-3000:]}"


def _logged_steps(run: Path, version: int) -> list[int]:
    with open(run / "logs" / f"version_{version}" / "metrics.csv") as f:
        return [int(row["step"]) for row in csv.DictReader(f) if row.get("train/loss")]


@pytest.fixture(scope="module")
def straight(tmp_path_factory) -> Path:
    """The uninterrupted 2-node run."""
    tmp = tmp_path_factory.mktemp("straight")
    _fake_scontrol(tmp / "bin", tmp / "scontrol.log")
    _launch(tmp / "run", tmp / "bin")
    return tmp / "run"


def test_preempted_job_requeues_and_resumes_to_the_same_weights(straight, tmp_path):
    run, record = tmp_path / "run", tmp_path / "scontrol.log"
    _fake_scontrol(tmp_path / "bin", record)
    # SIGUSR1 reaches rank 0 only, after step SIGNAL_STEP: rank 1 must stop at the same step.
    signal_at = ["--trainer.callbacks+=tests.helpers.SignalAtStep", f"--trainer.callbacks.step={SIGNAL_STEP}"]
    _launch(run, tmp_path / "bin", *signal_at)

    assert sorted(p.name for p in run.glob("*.ckpt")) == ["hpc_ckpt_1.ckpt"]
    assert not list(run.glob(".partial-*"))
    checkpoint = torch.load(run / "hpc_ckpt_1.ckpt", map_location="cpu", weights_only=True)
    # SignalAtStep runs after Requeue's check at step SIGNAL_STEP, so the next boundary is the end of the next step.
    assert checkpoint["global_step"] == SIGNAL_STEP + 1
    assert record.read_text().split() == ["requeue", JOB_ID]  # once, from global rank 0
    assert not (run / "hf_model").exists()  # a pre-empted run is not finished
    assert _logged_steps(run, 0)[-1] == SIGNAL_STEP  # steps are logged 0-based

    # The requeued job runs the same command, with no ckpt_path: Lightning finds hpc_ckpt_1.ckpt itself.
    _launch(run, tmp_path / "bin")
    assert _logged_steps(run, 1)[0] == SIGNAL_STEP + 1 and _logged_steps(run, 1)[-1] == STEPS - 1
    assert record.read_text().split() == ["requeue", JOB_ID]  # no second requeue

    resumed = load_file(run / "hf_model" / "model.safetensors")
    expected = load_file(straight / "hf_model" / "model.safetensors")
    start = load_file(REPO / "lit_align" / "embedded" / "tiny-sft" / "model.safetensors")
    assert any(not torch.equal(expected[k], start[k]) for k in expected)  # training moved the weights
    for name, value in expected.items():
        assert torch.equal(resumed[name], value), name  # bit for bit
