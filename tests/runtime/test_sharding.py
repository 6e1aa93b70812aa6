"""FSDP2 sharding (configs/strategy/fsdp.yaml) on CPU over gloo with two processes, through the CLI as users run it."""

import csv
import os
import re
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from lit_align.embedded import embedded_model_path
from tests.helpers import ONE_THREAD, REPO, run_lit_align

pytestmark = pytest.mark.sharded  # a tier of its own (pytest -m sharded), run by .ci/run after the default tests

SHARDED = ("--config", "configs/strategy/fsdp.yaml", "--trainer.accelerator", "cpu", "--trainer.devices", "2")
NO_LORA_DROPOUT = ("--model.init_args.policy.lora_dropout", "0")  # dropout draws differ between the two runs
QUIET = ("--trainer.enable_progress_bar", "false", "--trainer.log_every_n_steps", "1")


def _weights(run):
    return load_file(run / "hf_model" / "model.safetensors")


def _fit(*args):
    result = run_lit_align("fit", *args, *QUIET, timeout=300, env=ONE_THREAD)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


@pytest.mark.parametrize(
    ("recipe", "overlay"),
    [("dpo", ()), ("sft", ()), ("dpo", ("--config", "configs/strategy/qlora.yaml", *NO_LORA_DROPOUT))],
    ids=["dpo", "sft", "qlora-dpo"],
)
def test_two_sharded_processes_end_with_the_weights_of_one_process(recipe, overlay, tmp_path):
    # 8 rows: one process takes them as one batch of 8; two processes take 4 each, so every step of both runs sees
    # the same global batch. Plain SGD without clipping, so a gradient summed instead of averaged across processes
    # changes the result (Adam would hide a constant gradient scale); SFT's 8 rows hold unequal numbers of tokens per
    # process, so a token mean taken per process instead of over the global batch fails too (checked by hand).
    # QLoRA: the 4-bit base is sharded with the adapters; the saved folder merges the adapter into the base.
    common = (
        "--config",
        f"recipes/{recipe}.yaml",
        *overlay,
        "--data.init_args.source.num_rows",
        "8",
        "--trainer.max_steps",
        "3",
        "--trainer.limit_val_batches",
        "0",
        "--trainer.gradient_clip_val",
        "null",
        "--model.init_args.optimizer",
        "torch.optim.SGD",
        "--model.init_args.optimizer.init_args.lr",
        "0.05",
        "--model.init_args.lr_scheduler",
        "null",
    )
    _fit(*common, "--data.init_args.batch_size", "8", "--trainer.default_root_dir", str(tmp_path / "one"))
    _fit(*common, *SHARDED, "--data.init_args.batch_size", "4", "--trainer.default_root_dir", str(tmp_path / "two"))

    one, two = _weights(tmp_path / "one"), _weights(tmp_path / "two")
    start = load_file(embedded_model_path("lit-align/tiny-sft") / "model.safetensors")
    assert one.keys() == two.keys()
    moved = max((one[k] - start[k]).abs().max().item() for k in start)
    assert moved > 1e-2  # training changed the weights far more than the tolerance below
    for key in one:
        torch.testing.assert_close(two[key], one[key], rtol=0, atol=1e-5, msg=key)


def _grpo_args(run):
    return (
        "--config",
        "recipes/grpo.yaml",
        "--config",
        "configs/strategy/lora.yaml",
        *SHARDED,
        "--data.init_args.source.num_rows",
        "32",
        "--data.init_args.source.num_val_rows",
        "8",
        "--data.init_args.batch_size",
        "2",
        "--data.init_args.eval_batch_size",
        "4",
        "--model.init_args.completions_per_prompt",
        "4",
        "--model.init_args.kl_coef",
        "0.04",
        "--trainer.val_check_interval",
        "3",
        "--trainer.default_root_dir",
        str(run),
        "--trainer.callbacks+=lightning.pytorch.callbacks.ModelCheckpoint",
        f"--trainer.callbacks.dirpath={run / 'checkpoints'}",
        "--trainer.callbacks.save_last=true",
    )


def test_sharded_grpo_generates_checkpoints_resumes_exactly_and_exports(tmp_path):
    # LoRA policy sharded; its generate() runs on both ranks with synced steps; the reference is the adapter-disabled
    # policy; validation also generates. The checkpoint is a folder of shards.
    run = tmp_path / "run"
    args = _grpo_args(run)
    _fit(*args, "--trainer.max_steps", "3")
    shards = run / "checkpoints" / "last.ckpt"
    assert shards.is_dir() and len(list(shards.glob("*.distcp"))) == 2  # one shard file per process

    with open(run / "logs" / "version_0" / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["step"] for r in rows if r.get("train/reward")] == ["0", "1", "2"]
    assert any(r.get("val/reward") for r in rows)

    # The folder of shards becomes a Hugging Face folder equal to the one saved at the end of fit.
    exported = tmp_path / "exported"
    result = run_lit_align(
        "export",
        "--run_config",
        str(run / "logs" / "version_0" / "config.yaml"),
        "--ckpt_path",
        str(shards),
        "--out",
        str(exported),
        env=ONE_THREAD,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    final = _weights(run)
    for key, value in load_file(exported / "model.safetensors").items():
        assert torch.equal(value, final[key]), key

    # A sharded checkpoint resumes (weights, optimizer, data position, each rank's random state) and the run ends
    # at step 5 with the weights of a run that was never interrupted.
    resumed = _fit(*args, "--trainer.max_steps", "5", "--ckpt_path", str(shards))
    assert "Restored all states" in resumed.stdout + resumed.stderr
    with open(run / "logs" / "version_1" / "metrics.csv") as f:
        assert [r["step"] for r in csv.DictReader(f) if r.get("train/reward")] == ["3", "4"]
    straight = tmp_path / "straight"
    _fit(*_grpo_args(straight), "--trainer.max_steps", "5")
    for key, value in _weights(straight).items():
        assert torch.equal(value, _weights(run)[key]), key


def test_every_other_objective_trains_with_all_its_roles_sharded(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "tests/runtime/sharded_objectives.py"]
        + [str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **ONE_THREAD},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    found = dict(re.findall(r"trained (\S+) moved=\S+ sharded=(\S+)", result.stdout))
    assert found == {
        "KTO": "policy,reference.model",
        "SimPO": "policy",
        "ORPO": "policy",
        "RewardModel": "policy",
        "RewardModel-regularised-expanded": "policy",
        "PPO": "policy,reference.model,value_head",
        "PPO-value-model": "policy,reference.model,value_backbone,value_head",
        "OnlineDPO": "policy,reference.model",
        "KTO-qlora": "policy",  # the reference is the policy with its adapter disabled
        "ORPO-qlora": "policy",
        "SFT-checkpointing-bf16": "policy",
    }, result.stdout
    assert all(float(m) > 1e-5 for m in re.findall(r"moved=(\S+)", result.stdout))
    # Ranks seeded differently hold different new weights (LoRA) before sharding; all train rank 0's.
    assert "start rank0" in result.stdout
    # ram_efficient_loading: rank 1 builds meta-device skeletons and receives rank 0's weights and buffers.
    for name in ("DPO", "RewardModel"):
        assert f"skeleton-loading {name} rank0 skeleton=False" in result.stdout
        assert f"skeleton-loading {name} rank1 skeleton=True" in result.stdout
        assert f"skeleton-loading {name} filled=True" in result.stdout


@pytest.mark.parametrize(("strategy", "expected"), [("ours", "intact"), ("lightning", "damaged")])
def test_a_save_of_shards_that_dies_half_way_leaves_the_previous_checkpoint_intact(strategy, expected, tmp_path):
    # Lightning's own ModelParallelStrategy writes into the existing folder: the same failure damages it there.
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "tests/runtime/sharded_atomic_save.py"]
        + [str(tmp_path), strategy],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **ONE_THREAD},
    )
    assert f"RESULT {expected}" in result.stdout, result.stdout[-2000:] + result.stderr[-3000:]
