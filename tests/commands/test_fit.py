"""The ``lit-align`` command as a user runs it: fit with overlays, saved config, CSV log, and bad input."""

import csv
import json

import pytest
import torch

from tests.helpers import REPO, run_in_process, run_lit_align, write_jsonl

FAST = [
    "--trainer.max_steps",
    "2",
    "--trainer.val_check_interval",
    "2",
    "--trainer.enable_progress_bar",
    "false",
    "--trainer.enable_model_summary",
    "false",
    "--trainer.log_every_n_steps",
    "1",
    "--data.init_args.source.num_rows",
    "32",
    "--data.init_args.source.num_val_rows",
    "8",
    "--data.init_args.batch_size",
    "4",
    "--model.init_args.policy.name_or_path",
    "lit-align/tiny-sft",
]


def _fit(tmp_path, *extra):
    return run_lit_align(
        "fit", "--config", "recipes/sft.yaml", *FAST, *extra, "--trainer.default_root_dir", str(tmp_path / "run")
    )


def test_fit_writes_config_csv_and_hf_model_and_refuses_to_overwrite_a_finished_run(tmp_path):
    first = _fit(tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    assert (tmp_path / "run" / "checkpoints" / "last.ckpt").is_file()  # the recipe keeps a last checkpoint
    again = _fit(tmp_path)  # a fresh run into the folder of a finished one would overwrite its model
    assert again.returncode == 2 and _error_line(again) == (
        f"lit-align: error: trainer.default_root_dir: '{tmp_path / 'run'}' already holds a finished run (hf_model/); "
        "continue it with --ckpt_path last, or give another trainer.default_root_dir"
    )
    resumed = _fit(tmp_path, "--ckpt_path", "last", "--trainer.max_steps", "4")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    with open(tmp_path / "run" / "logs" / "version_1" / "metrics.csv") as f:
        losses = [r for r in csv.DictReader(f) if r.get("train/loss")]
    last = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert len(losses) == 2 and last["global_step"] == 4  # it continued from step 2: two more steps, not four
    configs = sorted((tmp_path / "run").rglob("config.yaml"))
    assert len(configs) == 2 and "name_or_path: lit-align/tiny-sft" in configs[0].read_text()
    hparams = next((tmp_path / "run").rglob("hparams.yaml")).read_text()
    assert "tokenizer: lit-align/tiny-sft" in hparams  # the data module received the linked value
    with open(next((tmp_path / "run").rglob("metrics.csv"))) as f:
        rows = list(csv.DictReader(f))
    assert {"train/loss", "val/loss", "train/token_accuracy", "val/token_accuracy", "train/tokens_seen"} <= set(rows[0])
    assert (tmp_path / "run" / "hf_model" / "model.safetensors").exists()


@pytest.mark.parametrize("overlay", ["configs/strategy/lora.yaml", "configs/strategy/qlora.yaml"])
def test_adapter_overlays_run_sft_steps(tmp_path, overlay):
    result = _fit_in_process(tmp_path, "--config", str(REPO / overlay))
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "run" / "hf_model" / "model.safetensors").exists()  # merged adapter


@pytest.mark.parametrize("subcommand", ["validate", "test"])
def test_validate_and_test_subcommands_log_their_stage(tmp_path, subcommand):
    stage = "val" if subcommand == "validate" else "test"
    result = run_in_process(
        subcommand,
        "--config",
        str(REPO / "recipes/sft.yaml"),
        *FAST[8:],
        "--trainer.default_root_dir",
        str(tmp_path / "run"),
        "--trainer.limit_val_batches",
        "2",
        "--trainer.limit_test_batches",
        "2",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    with open(next((tmp_path / "run").rglob("metrics.csv"))) as f:
        rows = list(csv.DictReader(f))
    assert float(rows[-1][f"{stage}/loss"]) > 0 and f"{stage}/token_accuracy" in rows[-1]


@pytest.mark.parametrize("recipe", ["sft", "dpo", "kto", "grpo", "rm"])
def test_the_data_tokenizer_follows_the_policy(recipe):
    """The policy is named once (model section); the data module's tokenizer is linked to it. tiny-base differs from
    every data module's default tokenizer (tiny-sft), so the check fails without the link."""
    from lit_align.commands.fit import run_cli

    cli = run_cli(
        ["--config", f"recipes/{recipe}.yaml", "--model.init_args.policy.name_or_path", "lit-align/tiny-base"],
        run=False,
    )
    assert cli.datamodule.hparams.tokenizer == "lit-align/tiny-base"


def test_evaluate_prints_exact_match(tmp_path):
    result = run_in_process("evaluate", "--source.num_rows", "16")
    assert result.returncode == 0, result.stderr[-2000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["rows"] == 16 and 0.0 <= out["exact_match"] <= 1.0


def _in_process(*args):
    """The CLI run in this process (fast: no new interpreter); it has a subprocess result's fields."""
    return run_in_process(*args)


def _fit_in_process(tmp_path, *extra):
    return _in_process(
        "fit",
        "--config",
        str(REPO / "recipes/sft.yaml"),
        *extra,
        *FAST,
        "--trainer.default_root_dir",
        str(tmp_path / "run"),
    )


def _error_line(result):
    lines = [line for line in result.stderr.splitlines() if line.startswith("lit-align: error:")]
    assert len(lines) == 1, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    return lines[0]


@pytest.mark.parametrize(
    ("rows", "expected"),
    [
        ([{"prompt": "a", "completion": "b"}, {"prompt": "a"}], "row 2: field 'completion': is missing"),
        ([{"prompt": "", "completion": "b"}], "row 1: field 'prompt': is empty"),
        ([{"prompt": ["x"], "completion": "b"}], "row 1: field 'prompt': message 0 has no 'role'"),
        ([{"prompt": 7, "completion": "b"}], "row 1: field 'prompt': must be a string, got int"),
    ],
)
def test_bad_rows_exit_2_with_file_row_and_field(tmp_path, rows, expected):
    path = write_jsonl(tmp_path / "bad.jsonl", rows)
    result = _fit_in_process(tmp_path, "--data.init_args.source.path", str(path))
    assert result.returncode == 2
    assert _error_line(result) == f"lit-align: error: {path}: {expected}"


@pytest.mark.parametrize(
    ("content", "expected"),
    [("", "file is empty"), ("{oops\n", "row 1: is not valid JSON (Expecting property name enclosed in double quotes")],
)
def test_empty_or_unreadable_file_exits_2(tmp_path, content, expected):
    path = tmp_path / "data.jsonl"
    path.write_text(content)
    result = _fit_in_process(tmp_path, "--data.init_args.source.path", str(path))
    assert result.returncode == 2
    assert _error_line(result).startswith(f"lit-align: error: {path}: {expected}")


def test_missing_model_path_exits_2_naming_the_key(tmp_path):
    result = _in_process(
        "fit",
        "--config",
        str(REPO / "recipes/sft.yaml"),
        "--model.init_args.policy.name_or_path",
        str(tmp_path / "no-such-model"),
        "--trainer.default_root_dir",
        str(tmp_path / "run"),
    )
    assert result.returncode == 2
    assert _error_line(result) == (
        f"lit-align: error: model.init_args.policy.name_or_path: "
        f"model path '{tmp_path / 'no-such-model'}' does not exist"
    )


def test_unknown_class_exits_2_naming_the_key(tmp_path):
    result = _in_process(
        "fit",
        "--config",
        str(REPO / "recipes/sft.yaml"),
        "--model.class_path",
        "lit_align.objectives.Nope",
        "--trainer.default_root_dir",
        str(tmp_path / "run"),
    )
    assert result.returncode == 2
    line = _error_line(result)
    assert line.startswith("lit-align: error: model: ") and "'lit_align.objectives.Nope'" in line
    assert "usage:" not in result.stderr


def test_bad_config_value_exits_2_naming_the_nested_key(tmp_path):
    result = _in_process(
        "fit", "--config", str(REPO / "recipes/sft.yaml"), "--model.init_args.policy.finetune", "lorax"
    )
    assert result.returncode == 2
    line = _error_line(result)
    assert line.startswith("lit-align: error: model.init_args.policy.finetune: ") and "lorax" in line


def test_readme_test_command_is_what_ci_runs():
    readme = (REPO / "README.md").read_text()
    ci_lines = (REPO / ".ci" / "run").read_text().splitlines()
    command = ci_lines[ci_lines.index("# README test command (keep identical to the README's quickstart):") + 1]
    assert command.endswith("python -m pytest")
    assert command in readme.splitlines()


def test_unimportable_reward_exits_2_naming_the_key(tmp_path):
    result = _in_process(
        "fit",
        "--config",
        str(REPO / "recipes/grpo.yaml"),
        "--model.init_args.rewards",
        '[{"function": "mypkg.rewards.judge"}]',
        "--trainer.default_root_dir",
        str(tmp_path / "run"),
    )
    assert result.returncode == 2
    line = _error_line(result)
    assert line == (
        "lit-align: error: model.init_args.rewards[0].function: cannot import 'mypkg.rewards.judge': "
        "No module named 'mypkg'"
    )


def test_reference_spec_from_yaml(tmp_path):
    """A separate reference model and a refresh schedule, given in YAML, reach the reference component."""
    from lit_align.commands.fit import run_cli

    config = tmp_path / "ref.yaml"
    config.write_text(
        "model:\n  init_args:\n    reference:\n      kind: model\n      model: {name_or_path: lit-align/tiny-base}\n"
        "      refresh_every: 8\n      refresh_mix: 0.5\n"
    )
    cli = run_cli(["--config", "recipes/dpo.yaml", "--config", str(config)], run=False)
    reference = cli.model.reference
    assert reference.kind == "model" and reference.spec.model.name_or_path == "lit-align/tiny-base"
    assert (reference.spec.refresh_every, reference.spec.refresh_mix) == (8, 0.5)
    assert run_cli(["--config", "recipes/dpo.yaml"], run=False).model.reference.kind == "copy"  # plain 'auto'


def test_help_lists_every_command_and_each_one_answers_its_own_help():
    from lit_align.commands import COMMANDS

    listing = run_in_process("--help")
    assert listing.code == 0
    listed = [line.split()[0] for line in listing.stdout.splitlines() if line.startswith("  ")]
    assert listed == list(COMMANDS)
    for command in COMMANDS:
        own = run_in_process(command, "--help")
        assert own.code == 0 and "usage:" in own.stdout, (command, own.stderr[-500:])


def test_print_config_shows_the_logger_the_run_uses():
    printed = run_in_process("fit", "--config", str(REPO / "recipes/dpo.yaml"), "--print_config")
    assert printed.code == 0
    assert "  logger:\n    class_path: lit_align.runtime.loggers.RunLog\n" in printed.stdout


def test_the_cli_silences_lightnings_manual_optimization_checkpoint_sample():
    """GRPO / PPO / online DPO checkpoints every N steps made Lightning print a 20-line code sample each time."""
    import warnings

    from lightning.pytorch.utilities import rank_zero_warn

    from lit_align.commands import quiet

    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        quiet()
        rank_zero_warn("Using ModelCheckpoint with manual optimization and every_n_train_steps, but no ...")
        rank_zero_warn("a warning that stays")
    assert [str(w.message) for w in seen] == ["a warning that stays"]
