"""Bad input as a new user gives it: each case ends in one line naming the key (or file, row and field), exit 2.

Cases run the CLI in this process (``run_in_process``): an exception that escapes ``main`` is a traceback the user
would see and fails the test. Every case asserts the exact error line.
"""

import json
import os

import pytest
import torch

from tests.helpers import REPO, run_in_process, write_jsonl

QUIET = ["--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]
SMALL = ["--data.init_args.source.num_rows", "16", "--data.init_args.source.num_val_rows", "4"]
SMALL += ["--data.init_args.batch_size", "4", "--trainer.max_steps", "2", "--trainer.val_check_interval", "2"]
TINY_GRPO = ["--model.init_args.completions_per_prompt", "4", "--model.init_args.sampling.max_new_tokens", "4"]
TINY_GRPO += ["--model.init_args.eval_sampling.max_new_tokens", "4"]


def _fails(tmp_path, *args, expected: str) -> None:
    run = run_in_process(*args, *QUIET, "--trainer.default_root_dir", str(tmp_path / "run"))
    lines = [line for line in run.stderr.splitlines() if line.startswith("lit-align: error:")]
    assert run.code == 2, run.stderr[-2000:]
    assert lines == [f"lit-align: error: {expected}"], run.stderr[-2000:]
    assert "Traceback" not in run.stderr


def _recipe(name: str) -> list[str]:
    return ["fit", "--config", str(REPO / "recipes" / f"{name}.yaml")]


# --- config values outside their domain: refused while parsing, before anything loads -------------------------

DOMAINS = [
    ("dpo", "model.init_args.beta", "-0.1", "must be > 0, got -0.1"),
    ("dpo", "model.init_args.beta", "0", "must be > 0, got 0"),
    ("dpo", "model.init_args.label_smoothing", "0.5", "must be >= 0 and < 0.5, got 0.5"),
    ("dpo", "model.init_args.sft_weight", "-1", "must be >= 0, got -1"),
    ("simpo", "model.init_args.simpo_gamma", "-0.5", "must be >= 0, got -0.5"),
    ("grpo", "model.init_args.completions_per_prompt", "1", "must be >= 2, got 1"),
    ("grpo", "model.init_args.completions_per_prompt", "0", "must be >= 2, got 0"),
    ("grpo", "model.init_args.epsilon", "0", "must be > 0, got 0"),
    ("grpo", "model.init_args.epsilon_high", "-0.2", "must be > 0, got -0.2"),
    ("grpo", "model.init_args.kl_coef", "-0.01", "must be >= 0, got -0.01"),
    ("grpo", "model.init_args.num_iterations", "0", "must be > 0, got 0"),
    ("grpo", "model.init_args.max_grad_norm", "-1", "must be > 0, got -1"),
    ("grpo", "model.init_args.no_signal_patience", "-1", "must be >= 0, got -1"),
    ("grpo", "model.init_args.sampling.temperature", "-1", "must be >= 0, got -1"),
    ("grpo", "model.init_args.sampling.top_p", "0", "must be > 0 and <= 1, got 0"),
    ("grpo", "model.init_args.sampling.max_new_tokens", "0", "must be > 0, got 0"),
    ("grpo", "data.init_args.max_prompt_length", "0", "must be > 0, got 0"),
    ("ppo", "model.init_args.gamma", "1.5", "must be >= 0 and <= 1, got 1.5"),
    ("ppo", "model.init_args.gae_lambda", "-0.1", "must be >= 0 and <= 1, got -0.1"),
    ("ppo", "model.init_args.ppo_epochs", "0", "must be > 0, got 0"),
    ("ppo", "model.init_args.vf_coef", "0", "must be > 0, got 0"),
    ("ppo", "model.init_args.target_kl", "-1", "must be > 0, got -1"),
    ("kto", "model.init_args.desirable_weight", "0", "must be > 0, got 0"),
    ("kto", "model.init_args.beta", "-1", "must be > 0, got -1"),
    ("online_dpo", "model.init_args.completions_per_prompt", "1", "must be >= 2, got 1"),
    ("online_dpo", "model.init_args.regenerate_every", "0", "must be > 0, got 0"),
    ("rm", "model.init_args.center_rewards_coefficient", "-0.01", "must be >= 0, got -0.01"),
    ("sft", "data.init_args.batch_size", "0", "must be > 0, got 0"),
    ("sft", "data.init_args.max_length", "0", "must be > 0, got 0"),
    ("dpo", "data.init_args.eval_batch_size", "-4", "must be > 0, got -4"),
    ("dpo", "data.init_args.num_workers", "-1", "must be >= 0, got -1"),
    ("dpo", "data.init_args.source.val_size", "-0.5", "must be >= 0, got -0.5"),
    ("dpo", "data.init_args.source.num_rows", "0", "must be > 0, got 0"),
    ("dpo", "model.init_args.policy.lora_r", "0", "must be > 0, got 0"),
    ("dpo", "model.init_args.policy.lora_dropout", "1.0", "must be >= 0 and < 1, got 1.0"),
    ("dpo", "model.init_args.reference.refresh_every", "-1", "must be >= 0, got -1"),
]


@pytest.mark.parametrize(("recipe", "key", "value", "expected"), DOMAINS, ids=lambda x: str(x))
def test_a_value_outside_its_domain_names_the_key_and_the_domain(tmp_path, recipe, key, value, expected):
    _fails(tmp_path, *_recipe(recipe), f"--{key}", value, expected=f"{key}: {expected} (see lit-align --help)")


TRAINER = [
    ("max_steps", "-5", "must be -1 (no limit) or > 0, got -5"),
    ("max_epochs", "0", "must be -1 (no limit) or > 0, got 0"),
    ("accumulate_grad_batches", "0", "must be an integer >= 1, got 0"),
    ("val_check_interval", "0", "must be an integer >= 1 (batches) or a fraction in (0, 1] of an epoch, got 0"),
    ("val_check_interval", "1.5", "must be an integer >= 1 (batches) or a fraction in (0, 1] of an epoch, got 1.5"),
    ("gradient_clip_val", "-1", "must be >= 0, got -1"),
    ("log_every_n_steps", "0", "must be >= 1, got 0"),
]


@pytest.mark.parametrize(("key", "value", "expected"), TRAINER)
def test_trainer_values_that_would_train_nothing_or_crash_later_are_refused(tmp_path, key, value, expected):
    _fails(tmp_path, *_recipe("dpo"), f"--trainer.{key}", value, expected=f"trainer.{key}: {expected}")


def test_lightnings_own_configuration_errors_are_one_line(tmp_path):
    _fails(
        tmp_path,
        *_recipe("dpo"),
        "--trainer.limit_val_batches",
        "-1",
        expected="trainer: You have passed invalid value -1 for limit_val_batches, it has to be in [0.0, 1.0] or an "
        "int.",
    )


def test_a_combination_checked_in_a_constructor_names_the_config_key(tmp_path):
    _fails(
        tmp_path,
        *_recipe("dpo"),
        "--data.init_args.max_prompt_length",
        "600",
        expected="data.init_args.max_prompt_length: must be below max_length (64), got 600",
    )


@pytest.mark.parametrize(("recipe", "group"), [("grpo", 8), ("online_dpo", 4)])
def test_greedy_training_samples_are_refused_where_completions_are_compared(tmp_path, recipe, group):
    _fails(tmp_path, *_recipe(recipe), "--model.init_args.sampling.temperature", "0",
           expected=f"model.init_args.sampling.temperature: must be > 0: greedy decoding gives {group} identical "
           "completions per prompt, so there is nothing to compare (temperature 0 is for eval_sampling)")  # fmt: skip


def test_a_hub_id_that_is_not_cached_offline_names_the_policy_key(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    _fails(tmp_path, *_recipe("dpo"), "--model.init_args.policy.name_or_path", "someorg/no-such-model",
           expected="model.init_args.policy.name_or_path: 'someorg/no-such-model' is not a local folder and not in "
           "the Hugging Face cache, and the hub is offline (HF_HUB_OFFLINE=1); download it first or give a local "
           "path")  # fmt: skip


def test_a_yaml_syntax_error_names_the_file_line_and_column(tmp_path):
    overlay = tmp_path / "overlay.yaml"
    overlay.write_text("model:\n  init_args:\n    beta: [1,\n")
    _fails(
        tmp_path,
        *_recipe("dpo"),
        "--config",
        str(overlay),
        expected=f"--config: '{overlay}': line 4, column 1: invalid YAML: expected the node content, but found "
        "'<stream end>'",
    )


# --- optimizer and scheduler: built when training starts ------------------------------------------------------

OPTIMIZER = [
    (["--model.init_args.optimizer.init_args.lr", "-0.1", "--model.init_args.lr_scheduler", "null"],
     "model.init_args.optimizer: Invalid learning rate: -0.1"),
    (["--model.init_args.optimizer.init_args.lr", "0", "--model.init_args.lr_scheduler", "null"],
     "model.init_args.optimizer: lr must be > 0 (nothing trains at 0), got 0.0"),
    (["--model.init_args.lr_scheduler.init_args.max_lr", "0"],
     "model.init_args.lr_scheduler: max_lr must be > 0 (nothing trains at 0), got 0.0"),
    (["--model.init_args.optimizer.init_args.weight_decay", "-1"],
     "model.init_args.optimizer: Invalid weight_decay value: -1.0"),
    (["--model.init_args.optimizer.init_args.betas", "[0.9, 1.5]"],
     "model.init_args.optimizer: Invalid beta parameter at index 1: 1.5"),
    (["--model.init_args.lr_scheduler.init_args.max_lr", "-0.1"],
     "model.init_args.lr_scheduler: max_lr must be a finite number >= 0, got -0.1"),
    (["--model.init_args.lr_scheduler.init_args.pct_start", "1.5"],
     "model.init_args.lr_scheduler: Expected float between 0 and 1 pct_start, but got 1.5"),
]  # fmt: skip


@pytest.mark.parametrize(("args", "expected"), OPTIMIZER)
def test_optimizer_and_scheduler_arguments_are_checked_before_the_first_step(tmp_path, args, expected):
    _fails(tmp_path, *_recipe("dpo"), *SMALL, *args, expected=expected)


# --- checkpoints -------------------------------------------------------------------------------------------------


class _RunsCode:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


def _checkpoints(tmp_path) -> dict:
    good = {"state_dict": {"w": torch.zeros(2)}, "epoch": 0, "global_step": 1}
    torch.save(good, tmp_path / "good.ckpt")
    data = (tmp_path / "good.ckpt").read_bytes()
    (tmp_path / "truncated.ckpt").write_bytes(data[: len(data) // 2])
    (tmp_path / "empty.ckpt").write_bytes(b"")
    torch.save({**good, "payload": _RunsCode()}, tmp_path / "unsafe.ckpt")  # would run `touch pwned` if unpickled
    (tmp_path / "notes.ckpt").write_text("hello\n")  # not a checkpoint at all
    (tmp_path / "folder.ckpt").mkdir()
    return {
        "notes": f"'{tmp_path / 'notes.ckpt'}': truncated or damaged (KeyError: 101)",
        "folder": f"'{tmp_path / 'folder.ckpt'}': is a folder; give a checkpoint file (a folder of shards needs the "
        "FSDP strategy)",
        "missing": f"'{tmp_path / 'missing.ckpt'}': no such checkpoint",
        "truncated": f"'{tmp_path / 'truncated.ckpt'}': truncated or damaged",
        "empty": f"'{tmp_path / 'empty.ckpt'}': truncated or damaged",
        "unsafe": f"'{tmp_path / 'unsafe.ckpt'}': refused as unsafe: it holds objects that weights-only loading does "
        "not allow (it needs posix.system); only load checkpoints you trust, and re-save them as plain tensors",
    }


@pytest.mark.parametrize("kind", ["missing", "truncated", "empty", "unsafe", "notes", "folder"])
def test_fit_with_a_bad_ckpt_path_is_one_line(tmp_path, kind, monkeypatch):
    monkeypatch.chdir(tmp_path)
    expected = _checkpoints(tmp_path)[kind]
    run = run_in_process(
        *_recipe("sft"), *SMALL, *QUIET,
        "--trainer.default_root_dir", str(tmp_path / "run"), "--ckpt_path", str(tmp_path / f"{kind}.ckpt"),
    )  # fmt: skip
    lines = [line for line in run.stderr.splitlines() if line.startswith("lit-align: error:")]
    assert run.code == 2 and len(lines) == 1, run.stderr[-2000:]
    assert lines[0].startswith(f"lit-align: error: --ckpt_path: {expected}"), lines[0]
    assert not (tmp_path / "pwned").exists()


@pytest.mark.parametrize("kind", ["missing", "truncated", "empty", "unsafe"])
def test_export_with_a_bad_ckpt_path_is_one_line(tmp_path, kind, monkeypatch):
    monkeypatch.chdir(tmp_path)
    expected = _checkpoints(tmp_path)[kind]
    run = run_in_process(
        "export", "--run_config", str(REPO / "recipes/sft.yaml"), "--ckpt_path", str(tmp_path / f"{kind}.ckpt"),
        "--out", "out",
    )  # fmt: skip
    lines = [line for line in run.stderr.splitlines() if line.startswith("lit-align: error:")]
    assert run.code == 2 and len(lines) == 1, run.stderr[-2000:]
    assert lines[0].startswith(f"lit-align: error: --ckpt_path: {expected}"), lines[0]
    assert not (tmp_path / "pwned").exists()


# --- data files ----------------------------------------------------------------------------------------------------

PAIR = {"prompt": "What is 2 + 2?", "chosen": " 4", "rejected": " 5"}
USER, ANSWER = {"role": "user", "content": "What is 2 + 2?"}, {"role": "assistant", "content": "4"}
CHAT_PAIR = {"chosen": [USER, ANSWER], "rejected": [USER, {**ANSWER, "content": "5"}]}  # one file, one format


def _pairs(tmp_path, rows, *extra, recipe="dpo", expected):
    path = write_jsonl(tmp_path / "data.jsonl", rows)
    _fails(tmp_path, *_recipe(recipe), *SMALL, "--data.init_args.source.path", str(path), *extra,
           expected=expected.format(path=path))  # fmt: skip


DATA = [
    ("no shared beginning", [PAIR, {"chosen": "Paris.", "rejected": "London."}], [],
     "{path}: row 2: field 'prompt': is missing, and chosen and rejected share no beginning to take it from"),
    ("no shared first message",
     [CHAT_PAIR, {"chosen": [USER, ANSWER], "rejected": [{**USER, "content": "hi"}, ANSWER]}], [],
     "{path}: row 2: field 'prompt': is missing, and chosen and rejected share no beginning to take it from"),
    ("differ before the answer",
     [CHAT_PAIR, {"chosen": [USER, ANSWER, USER, ANSWER],
                  "rejected": [USER, ANSWER, {**USER, "content": "x"}, ANSWER]}],
     [], "{path}: row 2: field 'chosen': after the prompt shared with the other completion, the next message is from "
     "the user, not the assistant"),
    ("identical after truncation", [{"prompt": "q", "chosen": "a", "rejected": "b"},
                                    {"prompt": "q", "chosen": "abcdefgh", "rejected": "abcdefgX"}],
     ["--data.init_args.max_length", "6"],
     "{path}: row 2: field 'rejected': chosen and rejected are identical after truncation to max_length=6"),
    ("unknown role", [{"prompt": [USER], "chosen": [ANSWER], "rejected": [{**ANSWER, "content": "5"}]},
                      {"prompt": [{"role": "robot", "content": "hi"}], "chosen": [ANSWER],
                       "rejected": [{**ANSWER, "content": "5"}]}], [],
     "{path}: row 2: field 'prompt': message 0 has role 'robot'; expected one of system, user, assistant, tool, "
     "developer, function, ipython"),
    ("text prompt, other conversations", [{"prompt": "What is 3 + 3?", "chosen": [USER, ANSWER],
                                           "rejected": [USER, {**ANSWER, "content": "5"}]}], [],
     "{path}: row 1: field 'prompt': is plain text but chosen and rejected are conversations that do not open with "
     "it; give the prompt as messages, or only the completions in chosen and rejected"),
    ("prompt fills max_length", [{"prompt": "x" * 80, "chosen": "a", "rejected": "b"}],
     ["--data.init_args.max_length", "32"],
     "{path}: row 1: field 'prompt': the prompt (80 tokens) leaves no room for the completion at max_length=32"),
    ("one prompt for every row", [PAIR, {**PAIR, "chosen": " four"}], ["--data.init_args.source.val_size", "0.5"],
     "{path}: val_size=0.5 leaves 0 training and 2 validation rows (2 rows; rows of one prompt stay together)"),
]  # fmt: skip


@pytest.mark.parametrize(("rows", "extra", "expected"), [d[1:] for d in DATA], ids=[d[0] for d in DATA])
def test_bad_pairs_name_file_row_and_field(tmp_path, rows, extra, expected):
    _pairs(tmp_path, rows, *extra, expected=expected)


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (b'{"prompt": "a", "chosen": "b" "rejected": "c"}', "is not valid JSON (Expecting ',' delimiter at column 31)"),
        (b'{"prompt": "caf\xe9", "chosen": "b", "rejected": "c"}', "is not valid UTF-8 (byte 0xe9 at column 16)"),
        (b"[1, 2]", "must be a JSON object, got list"),
    ],
)
def test_a_line_that_is_not_json_or_not_utf8_names_its_line(tmp_path, line, reason):
    path = tmp_path / "data.jsonl"
    path.write_bytes((json.dumps(PAIR) + "\n").encode() * 2 + line + b"\n")
    _fails(tmp_path, *_recipe("dpo"), *SMALL, "--data.init_args.source.path", str(path),
           expected=f"{path}: row 3: {reason}")  # fmt: skip


def test_a_json_array_with_a_syntax_error_names_the_line(tmp_path):
    path = tmp_path / "data.json"
    path.write_text("[\n" + json.dumps(PAIR) + ",\n" + json.dumps(PAIR)[:-1] + "\n]\n")
    _fails(tmp_path, *_recipe("dpo"), *SMALL, "--data.init_args.source.path", str(path),
           expected=f"{path}: line 4 column 1: invalid JSON: Expecting ',' delimiter")  # fmt: skip


def test_a_kto_file_with_one_label_only(tmp_path):
    rows = [{"prompt": f"q{i}", "completion": "a", "label": True} for i in range(4)]
    path = write_jsonl(tmp_path / "data.jsonl", rows)
    _fails(tmp_path, *_recipe("kto"), *SMALL, "--data.init_args.source.path", str(path),
           expected=f"{path}: field 'label': every training row is desirable (true); KTO needs both desirable and "
           "undesirable rows")  # fmt: skip


def test_an_unknown_chat_template_is_one_line(tmp_path):
    _fails(tmp_path, *_recipe("sft"), *SMALL, "--data.init_args.chat_template", "vicuna",
           expected="data.init_args.chat_template: 'vicuna' is not a named template (chatml), a Jinja file or a "
           "Jinja template")  # fmt: skip


def test_an_exported_model_keeps_the_chat_template_it_was_trained_with(tmp_path):
    run = run_in_process(*_recipe("sft"), *SMALL, *QUIET, "--data.init_args.chat_template", "chatml",
                         "--data.init_args.max_length", "256",
                         "--trainer.default_root_dir", str(tmp_path / "run"))  # fmt: skip
    assert run.code == 0, run.stderr[-2000:]
    from transformers import AutoTokenizer

    saved = AutoTokenizer.from_pretrained(tmp_path / "run" / "hf_model")
    assert "<|im_start|>" in saved.chat_template


def test_sft_rows_are_checked_like_the_others(tmp_path):
    rows = [{"messages": [USER, ANSWER]}, {"messages": [{"role": "robot", "content": "x"}, ANSWER]}]
    path = write_jsonl(tmp_path / "data.jsonl", rows)
    _fails(tmp_path, *_recipe("sft"), *SMALL, "--data.init_args.source.path", str(path),
           expected=f"{path}: row 2: field 'messages': message 0 has role 'robot'; expected one of system, user, "
           "assistant, tool, developer, function, ipython")  # fmt: skip


def test_skipping_bad_rows_names_them_and_trains_on_the_rest(tmp_path):
    path = tmp_path / "data.jsonl"
    good = [json.dumps({**PAIR, "prompt": f"What is {i} + 2?"}).encode() for i in range(8)]
    path.write_bytes(b"\n".join([*good[:3], b'{"prompt": "caf\xe9"}', *good[3:], b"{oops"]) + b"\n")
    run = run_in_process(*_recipe("dpo"), *SMALL, *QUIET, "--data.init_args.source.path", str(path),
                         "--data.init_args.on_bad_row", "skip",
                         "--trainer.default_root_dir", str(tmp_path / "run"))  # fmt: skip
    assert run.code == 0, run.stderr[-2000:]
    assert (
        f"{path}: 10 rows: 2 skipped (1 is not valid JSON (Expecting property name enclosed in double quotes at "
        "column 2): row 10; 1 is not valid UTF-8 (byte 0xe9 at column 16): row 4)"
    ) in run.warnings


# --- rewards --------------------------------------------------------------------------------------------------------

REWARDS = "tests.commands.bad_rewards"


def _grpo(tmp_path, reward, *extra, **kwargs):
    rewards = json.dumps([{"function": f"{REWARDS}.{reward}"}])
    args = [*_recipe("grpo"), *SMALL, *TINY_GRPO, "--model.init_args.rewards", rewards, *extra]
    if "expected" in kwargs:
        return _fails(tmp_path, *args, expected=kwargs["expected"])
    return run_in_process(*args, *QUIET, "--trainer.default_root_dir", str(tmp_path / "run"))


STOP = "(set model.init_args.no_signal_patience: 0 to only warn)"
NO_REWARD = "no completion of 16 has a usable reward (failures: '{name}' on 16); check that the reward can read the " \
            "data's columns and returns floats"  # fmt: skip


@pytest.mark.parametrize("reward", ["always_none", "always_nan"])
def test_a_reward_that_never_scores_stops_the_run(tmp_path, reward):
    reason = NO_REWARD.format(name=reward)
    _grpo(tmp_path, reward, "--model.init_args.no_signal_patience", "2",
          expected=f"stopped after 2 batches in a row without learning signal: {reason} {STOP}")  # fmt: skip


def test_a_constant_reward_stops_the_run(tmp_path):
    _grpo(tmp_path, "constant", "--model.init_args.no_signal_patience", "2",
          expected="stopped after 2 batches in a row without learning signal: every group of 4 completions got the "
          "same reward (e.g. 0), so there is nothing to compare; the task may be too hard or too easy for the "
          f"policy, or the reward may ignore the completion {STOP}")  # fmt: skip


def test_a_reward_for_another_task_stops_the_run(tmp_path):
    rows = [{"prompt": f"What is {i} + 1?", "answer": f"Add one.\n#### {i + 1}"} for i in range(16)]
    path = write_jsonl(tmp_path / "gsm8k-like.jsonl", rows)
    rewards = json.dumps([{"function": "lit_align.rewards.arithmetic_answer"}])
    _fails(tmp_path, *_recipe("grpo"), *SMALL, *TINY_GRPO, "--data.init_args.source.path", str(path),
           "--model.init_args.rewards", rewards, "--model.init_args.no_signal_patience", "2",
           expected=f"stopped after 2 batches in a row without learning signal: "
           f"{NO_REWARD.format(name='arithmetic_answer')} {STOP}")  # fmt: skip


def test_inf_is_a_counted_failure_and_never_reaches_the_loss(tmp_path):
    run = _grpo(tmp_path, "inf_on_first", "--trainer.log_every_n_steps", "1")
    assert run.code == 0, run.stderr[-2000:]
    assert any(w.startswith("reward 'inf_on_first' returned inf for sample 0") for w in run.warnings)
    log = (tmp_path / "run" / "logs" / "version_0" / "metrics.csv").read_text().splitlines()
    header, rows = log[0].split(","), [line.split(",") for line in log[1:]]
    failures = [r[header.index("train/rewards/inf_on_first/failures")] for r in rows]
    losses = [r[header.index("train/loss")] for r in rows]
    assert [float(f) for f in failures if f] == [1.0, 1.0]  # the first of 16 completions, at each of 2 steps
    assert all(loss and loss != "nan" for loss in losses if loss)


@pytest.mark.parametrize(
    ("reward", "expected"),
    [
        ("raises", "reward 'raises' failed on sample 0 (prompt={p!r}, completion={c}): RuntimeError: judge unavailable "
         "(set on_reward_error: none to score it None and go on)"),
        ("needs_label", "reward 'needs_label' failed on sample 0 (prompt={p!r}, completion={c}): TypeError: "
         "needs_label() missing 1 required positional argument: 'label' (the data give the columns ['answer']) "
         "(set on_reward_error: none to score it None and go on)"),
    ],
)  # fmt: skip
def test_a_failing_reward_names_itself_and_the_sample(tmp_path, reward, expected):
    """A reward that raises names the sample (its batch call is retried sample by sample to find it)."""
    run = _grpo(tmp_path, reward)
    lines = [line for line in run.stderr.splitlines() if line.startswith("lit-align: error:")]
    assert run.code == 2 and len(lines) == 1, run.stderr[-2000:]
    head, tail = expected.split("(prompt={p!r}, completion={c})")
    assert lines[0].startswith(f"lit-align: error: {head}(prompt=") and lines[0].endswith(tail), lines[0]


@pytest.mark.parametrize(
    ("reward", "expected"),
    [
        (  # first met in the sanity validation: 4 prompts, one greedy completion each
            "wrong_length",
            "reward 'wrong_length' must return a list of 4 floats or None (one per completion), got [1.0]",
        ),
        ("text_scores", "reward 'text_scores' returned 'good', not a float or None"),
    ],
)
def test_a_reward_that_breaks_its_contract_is_an_error_whatever_on_reward_error_says(tmp_path, reward, expected):
    _grpo(tmp_path, reward, "--model.init_args.on_reward_error", "none", expected=expected)


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ({"function": f"{REWARDS}.constant", "weight": 0}, "model.init_args.rewards: every weight is 0, so nothing "
         "is optimised (weight 0 only logs a reward, e.g. a gold check next to a learned reward)"),
        ({"function": f"{REWARDS}.NOT_CALLABLE"}, f"model.init_args.rewards[0].function: '{REWARDS}.NOT_CALLABLE' "
         "is not callable"),
        ({"function": f"{REWARDS}.nope"}, f"model.init_args.rewards[0].function: cannot import '{REWARDS}.nope': "
         f"module '{REWARDS}' has no attribute 'nope'"),
    ],
)  # fmt: skip
def test_a_reward_spec_that_cannot_work_is_refused_before_training(tmp_path, spec, expected):
    _fails(tmp_path, *_recipe("grpo"), *SMALL, "--model.init_args.rewards", json.dumps([spec]), expected=expected)


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["evaluate", "--batch_size", "0"], "batch_size: must be > 0, got 0 (see lit-align --help)"),
        (["evaluate", "--max_new_tokens", "-1"], "max_new_tokens: must be > 0, got -1 (see lit-align --help)"),
        (["evaluate", "--batch_size", "abc"], "batch_size: invalid literal for int() with base 10: 'abc' "
         "(see lit-align --help)"),
        (["evaluate-rm", "--batch_size", "0"], "batch_size: must be > 0, got 0 (see lit-align --help)"),
        (["export", "--ckpt_path"], "argument --ckpt_path: expected one argument (see lit-align --help)"),
    ],
)  # fmt: skip
def test_the_other_commands_refuse_bad_flags_in_one_line(tmp_path, args, expected):
    run = run_in_process(*args)
    assert run.code == 2 and run.stderr.strip().splitlines()[-1] == f"lit-align: error: {expected}", run.stderr
    assert "usage:" not in run.stderr


def test_evaluate_names_an_unreadable_line(tmp_path):
    path = tmp_path / "prompts.jsonl"
    path.write_bytes(b'{"prompt": "caf\xe9", "answer": "2"}\n')
    run = run_in_process("evaluate", "--source.path", str(path))
    assert run.code == 2
    assert run.stderr.strip().splitlines()[-1] == (
        f"lit-align: error: {path}: row 1: is not valid UTF-8 (byte 0xe9 at column 16)"
    )


def test_a_reward_written_for_trl_trains_in_grpo_unchanged(tmp_path):
    rewards = json.dumps([{"function": "tests.rewards.trl_style.brevity"}])
    run = run_in_process(*_recipe("grpo"), *SMALL, *TINY_GRPO, *QUIET, "--model.init_args.rewards", rewards,
                         "--trainer.log_every_n_steps", "1",
                         "--trainer.default_root_dir", str(tmp_path / "run"))  # fmt: skip
    assert run.code == 0, run.stderr[-2000:]
    header = (tmp_path / "run" / "logs" / "version_0" / "metrics.csv").read_text().splitlines()[0].split(",")
    assert "train/rewards/brevity" in header
