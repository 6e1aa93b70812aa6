"""Every shipped recipe trains a few steps on SmolLM2-135M-Instruct, with LoRA and with full fine-tuning.

The DPO variants (ipo, orpo, simpo: the DPO class with another loss) run with LoRA only; dpo runs both ways.

The recipes run as a user would run them on their own small chat file: the recipe, the real model, a file, and
the sizes cut down so that each run takes seconds (batch of 2, 2 completions per prompt, 8 new tokens, 2 steps).
"""

import json
import shutil

import pytest
import torch
import yaml
from transformers import AutoModelForCausalLM, AutoTokenizer

from lit_align.commands.export import load_module
from lit_align.embedded import SMOLLM2
from lit_align.rollout import SamplingConfig, generate, stop_token_ids
from tests.helpers import REPO, recipe_data, run_in_process, write_jsonl

# Fit recipes only: the iterate configs (a top-level fit: section) run generate -> fit rounds, tested on the tiny model.
RECIPES = sorted(p.stem for p in (REPO / "recipes").glob("*.yaml") if "fit" not in yaml.safe_load(p.read_text()))
LENGTH_REWARD = '[{"function": "lit_align.rewards.length_penalty", "kwargs": {"max_chars": 1}}]'
QUESTIONS = [(f"What is {i} + {i + 3}?", str(2 * i + 3)) for i in range(8)]


def _user(text):
    return [{"role": "user", "content": text}]


def _assistant(text):
    return [{"role": "assistant", "content": text}]


def _chat_rows(recipe: str) -> list[dict]:
    """Eight conversational rows of the shape the recipe's data module reads."""
    data = recipe_data(recipe)
    if data == "SFTDataModule":
        return [
            {"messages": _user(q) + _assistant(f"It is {a}.") + _user("Sure?") + _assistant("Yes.")}
            for q, a in QUESTIONS
        ]
    if data == "BinaryDataModule":
        return [
            {"prompt": _user(q), "completion": _assistant(a if i % 2 else str(int(a) + 1)), "label": i % 2 == 1}
            for i, (q, a) in enumerate(QUESTIONS)
        ]
    if data == "PromptDataModule":
        return [{"prompt": _user(q), "answer": a} for q, a in QUESTIONS]
    if data == "StepwiseDataModule":  # a right first step, then a right or wrong second one
        return [
            {"prompt": _user(q), "completions": [f"{i}+{i + 3}={a}", f"{a}+0={a if i % 2 else int(a) + 1}"],
             "labels": [True, i % 2 == 1]}
            for i, (q, a) in enumerate(QUESTIONS)
        ]  # fmt: skip
    assert data == "PairwiseDataModule", data
    return [
        {"prompt": _user(q), "chosen": _assistant(a), "rejected": _assistant(str(int(a) + 1))} for q, a in QUESTIONS
    ]


def _small(recipe: str) -> list[str]:
    """Overrides that shrink a recipe's run to seconds on the 2-core CPU."""
    args = ["--data.init_args.batch_size", "2", "--data.init_args.eval_batch_size", "2"]
    if recipe_data(recipe) == "PromptDataModule":
        args += [
            "--data.init_args.max_prompt_length", "96",
            "--model.init_args.completions_per_prompt", "2",
            "--model.init_args.sampling.max_new_tokens", "8",
        ]  # fmt: skip
        # A signal on any answer (two samples of 8 tokens differ in length), so the first steps have something to
        # learn; the recipes' arithmetic rewards are 0 for both samples at 8 tokens. PPO's reward model comes from
        # recipes/rm.yaml, and its minibatch is 128 completions.
        args += ["--model.init_args.rewards", LENGTH_REWARD]  # also in place of grpo_prm's process reward model
        if recipe == "ppo":
            args += ["--model.init_args.mini_batch_size", "4"]
    else:
        args += ["--data.init_args.max_length", "96"]
    return args


def _fit(recipe: str, finetune: str, tmp_path, *extra: str):
    path = write_jsonl(tmp_path / "chat.jsonl", _chat_rows(recipe))
    run_dir = tmp_path / "run"
    run = run_in_process(
        "fit", "--config", str(REPO / "recipes" / f"{recipe}.yaml"),
        "--model.init_args.policy.name_or_path", SMOLLM2, "--model.init_args.policy.finetune", finetune,
        "--data.init_args.source.path", str(path), "--data.init_args.source.val_size", "2",
        "--trainer.max_steps", "2", "--trainer.log_every_n_steps", "1", "--trainer.val_check_interval", "2",
        "--trainer.enable_progress_bar", "false",
        "--trainer.default_root_dir", str(run_dir), *_small(recipe), *extra,
    )  # fmt: skip
    assert run.code == 0, run.stderr[-3000:]
    return run_dir


def _trained(run_dir) -> list[dict]:
    lines = (run_dir / "logs/version_0/metrics.csv").read_text().splitlines()
    header = lines[0].split(",")
    return [dict(zip(header, line.split(","), strict=False)) for line in lines[1:]]


DPO_VARIANTS = ("ipo", "orpo", "simpo")  # the DPO class with another loss: LoRA only, dpo itself runs both ways
RUNS = [(r, f) for r in RECIPES for f in ("lora", "full") if f == "lora" or r not in DPO_VARIANTS]


@pytest.mark.parametrize(("recipe", "finetune"), RUNS)
def test_recipe_trains_on_smollm2(recipe, finetune, tmp_path, smollm2):
    run_dir = _fit(recipe, finetune, tmp_path, "--trainer.enable_checkpointing", "false")
    rows = _trained(run_dir)
    losses = [float(r["train/loss"]) for r in rows if r.get("train/loss")]
    assert losses and all(torch.isfinite(torch.tensor(losses))), rows
    assert any(r.get("train/grad_norm") not in (None, "", "0.0") for r in rows), rows  # weights got gradients
    assert any(key.startswith("val/") and value for r in rows for key, value in r.items()), rows  # it validated
    exported = run_dir / "hf_model"
    if finetune == "lora":
        config = json.loads((exported / "config.json").read_text())  # merged into the base by default
        assert "quantization_config" not in config
    shutil.rmtree(run_dir)  # a full fine-tuning export is 540 MB


def test_the_exported_model_reproduces_the_modules_greedy_tokens(tmp_path, smollm2):
    run_dir = _fit("sft", "full", tmp_path)
    config, ckpt = run_dir / "logs/version_0/config.yaml", run_dir / "checkpoints/last.ckpt"
    module = load_module(str(config), str(ckpt)).eval()
    exported = AutoModelForCausalLM.from_pretrained(run_dir / "hf_model").eval()
    tokenizer = AutoTokenizer.from_pretrained(run_dir / "hf_model")
    prompt = tokenizer.apply_chat_template(_user("What is 4 + 7?"), tokenize=False, add_generation_prompt=True)
    ids = tokenizer(prompt, add_special_tokens=False, return_tensors="pt")
    batch = {"input_ids": ids.input_ids, "attention_mask": ids.attention_mask}
    greedy = SamplingConfig(temperature=0.0, max_new_tokens=24)
    outs = [
        generate(model, batch, greedy, pad_token_id=tokenizer.pad_token_id, stop_ids=stop_token_ids(model, tokenizer))
        for model in (module.policy, exported)
    ]
    assert torch.equal(outs[0].completion_ids, outs[1].completion_ids)
    base = AutoModelForCausalLM.from_pretrained(smollm2).eval()
    with torch.no_grad():
        trained = module.policy(**batch).logits
        assert torch.allclose(trained, exported(**batch).logits, atol=1e-4)
        assert not torch.allclose(trained, base(**batch).logits, atol=1e-3)  # two steps did move the weights


REAL_ROUNDS = sorted(p for p in (REPO / "recipes/real").glob("*.yaml") if "fit" in yaml.safe_load(p.read_text()))


@pytest.mark.parametrize(
    "recipe", sorted(set((REPO / "recipes/real").glob("*.yaml")) - set(REAL_ROUNDS)), ids=lambda p: p.stem
)
def test_real_recipe_trains_two_steps(recipe, tmp_path, smollm2):
    """The SmolLM2 recipes as shipped (their own data), cut to 2 steps of 2 rows."""
    run = run_in_process(
        "fit", "--config", str(recipe), "--trainer.max_steps", "2", "--trainer.log_every_n_steps", "1",
        "--trainer.val_check_interval", "2", "--trainer.limit_val_batches", "1", "--trainer.enable_checkpointing",
        "false", "--trainer.enable_progress_bar", "false", "--trainer.default_root_dir", str(tmp_path / "run"),
        "--data.init_args.batch_size", "2", "--data.init_args.eval_batch_size", "2",
        "--data.init_args.source.num_rows", "8", "--data.init_args.source.num_val_rows", "2",
    )  # fmt: skip
    assert run.code == 0, run.stderr[-3000:]
    rows = _trained(tmp_path / "run")  # two steps of 2 prompts may have no signal yet: the run must only work
    assert any(r.get("train/lr") for r in rows) and any(k.startswith("val/") and v for r in rows for k, v in r.items())
    shutil.rmtree(tmp_path / "run")


def test_real_spin_round_runs_as_shipped_cut_small(tmp_path, smollm2, capsys):
    """recipes/real/spin-smollm2.yaml, one round cut to 4 problems and 2 steps: generate -> DPO -> evaluate on SmolLM2.

    SPIN always makes pairs (the real answer over a differing sample), so a round runs at any accuracy; the other real
    iterate configs share its fit and evaluate sections and are parsed by tests/test_recipes.py.
    """
    from lit_align.commands.iterate import iterate

    assert len(REAL_ROUNDS) == 3, REAL_ROUNDS
    config = yaml.safe_load((REPO / "recipes/real/spin-smollm2.yaml").read_text())
    config.update(rounds=1, output_dir=str(tmp_path / "spin"))
    config["generate"].update(max_new_tokens=24, batch_size=4)
    config["generate"]["source"]["num_rows"] = 4
    config["evaluate"].update(max_new_tokens=24, batch_size=4)
    config["evaluate"]["source"]["num_rows"] = 4
    config["fit"]["trainer"].update(max_steps=2, val_check_interval=1.0, enable_progress_bar=False)
    config["fit"]["data"]["init_args"].update(batch_size=2, eval_batch_size=2)
    config["fit"]["data"]["init_args"]["source"]["val_size"] = 1
    summary = iterate(**config)
    assert [r["round"] for r in summary] == [0, 1]
    assert summary[1]["generate"]["rows"] > 0 and "spin/identical_fraction" in summary[1]["generate"]
    assert "exact_match" in summary[1]["evaluate"] and (tmp_path / "spin/round-1/fit/hf_model/config.json").is_file()
