"""What a run reports while it runs: lr, gradient norm before clipping, throughput, plain lines in log files."""

import csv

from tests.helpers import REPO, run_in_process

ARGS = ["--data.init_args.source.num_rows", "64", "--data.init_args.source.num_val_rows", "8"]
ARGS += ["--data.init_args.batch_size", "8", "--trainer.max_steps", "4", "--trainer.val_check_interval", "4"]
ARGS += ["--trainer.log_every_n_steps", "2", "--trainer.enable_progress_bar", "false"]


def _run(tmp_path, recipe, *extra):
    run = run_in_process("fit", "--config", str(REPO / f"recipes/{recipe}.yaml"), *ARGS, *extra,
                         "--trainer.default_root_dir", str(tmp_path))  # fmt: skip
    assert run.code == 0, run.stderr[-2000:]
    with open(tmp_path / "logs" / "version_0" / "metrics.csv") as f:
        return run, [r for r in csv.DictReader(f) if r.get("train/lr")]


def test_lr_grad_norm_and_throughput_reach_the_csv_and_log_files_get_plain_lines(tmp_path):
    run, rows = _run(tmp_path, "dpo")
    assert [int(r["step"]) for r in rows] == [1, 3]  # every log_every_n_steps (0-based steps)
    for name in ("train/lr", "train/grad_norm", "train/step_time", "train/tokens_per_s", "train/samples_per_s"):
        assert all(float(r[name]) > 0 for r in rows), name
    lines = [line for line in run.stdout.splitlines() if line.startswith("step ")]  # stdout is not a terminal here
    assert [line.split(" | ")[0] for line in lines] == ["step 2/4", "step 4/4"]
    assert all("loss " in line and "rewards/accuracies " in line and "lr " in line for line in lines)


def test_the_gradient_norm_is_measured_before_clipping(tmp_path):
    _, rows = _run(tmp_path, "dpo", "--trainer.gradient_clip_val", "1e-6")
    assert all(float(r["train/grad_norm"]) > 1e-3 for r in rows)  # after clipping it would be at most 1e-6


def test_manual_objectives_report_the_norm_before_their_own_clipping(tmp_path):
    run, rows = _run(tmp_path, "grpo", "--model.init_args.max_grad_norm", "1e-6",
                   "--model.init_args.completions_per_prompt", "4",
                   "--model.init_args.sampling.max_new_tokens", "4")  # fmt: skip
    assert rows and all(float(r["train/grad_norm"]) > 1e-3 for r in rows)
    lines = [line for line in run.stdout.splitlines() if line.startswith("step ")]
    assert lines and all(" reward " in line and " loss " not in line for line in lines)  # no ~0 surrogate loss


def test_the_bar_shows_the_objectives_main_metrics_first_and_no_v_num():
    from lit_align.runtime.progress import bar_metrics

    grpo = {"v_num": 0, "train/loss": 0.0, "train/kl": 0.1, "train/reward": 0.5, "train/lr": 1.5e-4, "val/reward": 0.4}
    assert list(bar_metrics(grpo)) == ["reward", "kl", "lr", "val/reward"]  # GRPO's ~0 surrogate loss left out
    assert bar_metrics(grpo)["lr"] == "1.50e-04"
    dpo = {"v_num": 1, "train/loss": 0.6, "train/rewards/margins": 0.2, "train/rewards/accuracies": 0.8}
    assert list(bar_metrics(dpo)) == ["rewards/accuracies", "rewards/margins", "loss"]


def test_an_added_logger_and_the_csv_log_share_one_version_folder(tmp_path):
    run = run_in_process("fit", "--config", str(REPO / "recipes/sft.yaml"), *ARGS,
                         "--trainer.logger", "tests.helpers.FolderLogger",
                         f"--trainer.logger.save_dir={tmp_path}",
                         "--trainer.default_root_dir", str(tmp_path))  # fmt: skip
    assert run.code == 0, run.stderr[-2000:]
    # jsonargparse keeps the default logger's matching init_args (name: logs) for the class given instead.
    versions = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("version_*"))
    assert versions == ["logs/version_7"]  # one version folder: the CSV log went into the added logger's
    assert (tmp_path / "logs" / "version_7" / "metrics.csv").is_file()
