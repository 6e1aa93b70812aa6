"""Every YAML under recipes/ and configs/ parses: recipes alone, overlays on top of recipes/sft.yaml."""

import re
import shlex
from pathlib import Path

import pytest
import yaml

from lit_align.commands.fit import run_cli
from tests.helpers import REPO, recipe_data

ALL_RECIPES = sorted((REPO / "recipes").rglob("*.yaml"))
ROUNDS = [r for r in ALL_RECIPES if "fit" in yaml.safe_load(r.read_text())]  # lit-align iterate configs
RECIPES = [r for r in ALL_RECIPES if r not in ROUNDS]  # lit-align fit configs
OVERLAYS = sorted((REPO / "configs").rglob("*.yaml"))


def test_yaml_count():
    # Update these numbers when you add a recipe or an overlay; a file that goes missing fails here.
    assert len(RECIPES) == 18, RECIPES  # 15 on the embedded model, 3 under recipes/real (SmolLM2)
    assert len(ROUNDS) == 7, ROUNDS  # iterate configs: 4 on the embedded model, 3 under recipes/real
    assert len(OVERLAYS) == 15, OVERLAYS


def _parse(*configs: Path, capsys) -> str:
    args = ["fit"]
    for config in configs:
        args += ["--config", str(config)]
    with pytest.raises(SystemExit) as info:
        run_cli([*args, "--print_config"])
    out = capsys.readouterr()
    assert info.value.code == 0, out.err[-2000:]
    return out.out


@pytest.mark.parametrize("recipe", ROUNDS, ids=lambda p: p.name)
def test_iterate_recipe_parses_and_its_fit_section_is_a_recipe(recipe, tmp_path, capsys):
    from lit_align.commands.iterate import iterate_cli

    with pytest.raises(SystemExit) as info:
        iterate_cli(["--config", str(recipe), "--print_config"])
    assert info.value.code == 0
    resolved = yaml.safe_load(capsys.readouterr().out)
    assert resolved["rounds"] >= 1 and resolved["generate"] and resolved["evaluate"]
    fit = tmp_path / "fit.yaml"
    fit.write_text(yaml.safe_dump(resolved["fit"]))
    model = yaml.safe_load(_parse(fit, capsys=capsys))["model"]
    assert model["class_path"].startswith("lit_align.objectives.")


def test_self_rewarding_asks_the_judge_question_its_starting_model_learned():
    from lit_align.tasks.arithmetic import JUDGE_LABELS, JUDGE_PATTERN, JUDGE_TEMPLATE

    rounds = yaml.safe_load((REPO / "recipes" / "self_rewarding.yaml").read_text())
    sft = yaml.safe_load((REPO / "recipes" / "self_rewarding_sft.yaml").read_text())
    judge = rounds["generate"]["scorer_kwargs"]
    assert judge["template"] == JUDGE_TEMPLATE and judge["labels"] == JUDGE_LABELS
    assert judge["pattern"] == JUDGE_PATTERN and judge["path"] == "$model"
    assert sft["data"]["init_args"]["source"]["path"] == "lit-align/arithmetic-judge"
    start = rounds["fit"]["model"]["init_args"]["policy"]["name_or_path"]
    assert start == f"{sft['trainer']['default_root_dir']}/hf_model"


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.name)
def test_recipe_parses(recipe, capsys):
    assert yaml.safe_load(recipe.read_text())
    resolved = yaml.safe_load(_parse(recipe, capsys=capsys))
    assert resolved["model"]["class_path"].startswith("lit_align.objectives.")
    assert resolved["data"]["class_path"].startswith("lit_align.data.")


def _objective(recipe: Path) -> str:
    return yaml.safe_load(recipe.read_text())["model"]["class_path"].rsplit(".", 1)[1]


@pytest.mark.parametrize("recipe", [r for r in RECIPES if _objective(r) != "SFT"], ids=lambda p: p.name)
def test_every_recipe_but_sft_turns_failure_monitors_on(recipe):
    """SFT logs nothing a monitor reads; every other recipe has the monitors that fit its objective."""
    from lit_align.runtime import monitors

    paths = [c["class_path"] for c in yaml.safe_load(recipe.read_text())["trainer"]["callbacks"]]
    named = [p.rsplit(".", 1)[1] for p in paths if p.startswith("lit_align.runtime.monitors.")]
    assert named and all(isinstance(getattr(monitors, n), type) for n in named), paths


@pytest.mark.parametrize("overlay", OVERLAYS, ids=lambda p: str(p.relative_to(REPO / "configs")))
def test_overlay_parses_on_a_recipe(overlay, capsys):
    assert isinstance(yaml.safe_load(overlay.read_text()), dict)
    # An overlay names the recipe it goes on in a "# base: recipes/x.yaml" first line; the default is sft.yaml.
    first = overlay.read_text().splitlines()[0]
    base = first.split("base:", 1)[1].strip() if first.startswith("# base:") else "recipes/sft.yaml"
    resolved = yaml.safe_load(_parse(REPO / base, overlay, capsys=capsys))
    given = yaml.safe_load(overlay.read_text())
    policy = given.get("model", {}).get("init_args", {}).get("policy", {})
    for key, value in policy.items():  # the overlay's values win over the recipe's
        assert resolved["model"]["init_args"]["policy"][key] == value

    data = given.get("data", {}).get("init_args", {})
    for key, value in data.items():
        if not isinstance(value, dict):
            assert resolved["data"]["init_args"][key] == value


def _readme_stacks() -> list[list[str]]:
    """Every ``lit-align fit --config recipes/...`` command in the README (continuation lines joined)."""
    text = (REPO / "README.md").read_text().replace("\\\n", " ")
    commands = re.findall(r"lit-align fit (--config recipes/[^`\n|&]*)", text)
    return sorted({tuple(shlex.split(c, comments=True)) for c in commands})


def test_readme_shows_stacks():
    stacks = _readme_stacks()
    assert any("configs/model/qwen2.5-0.5b.yaml" in s and "configs/data/ultrafeedback.yaml" in s for s in stacks)
    assert len(stacks) >= 10, stacks


@pytest.mark.parametrize("stack", _readme_stacks(), ids=" ".join)
def test_readme_stack_keeps_the_recipes_optimizer_and_schedule(stack, capsys):
    """Model, data, hardware and strategy overlays never change the recipe's tuned optimizer and schedule (only the
    command's own --model.init_args.optimizer / lr_scheduler arguments may)."""
    configs = [stack[i + 1] for i, a in enumerate(stack) if a == "--config"]
    recipe = REPO / configs[0]
    args = [a for a in stack if a != "--print_config"]
    with pytest.raises(SystemExit) as info:
        run_cli(["fit", *args, "--print_config"])
    out = capsys.readouterr()
    assert info.value.code == 0, out.err[-2000:]
    resolved = yaml.safe_load(out.out)
    alone = yaml.safe_load(_parse(recipe, capsys=capsys))
    for key in ("optimizer", "lr_scheduler"):
        if not any(a.startswith(f"--model.init_args.{key}") for a in stack):
            assert resolved["model"]["init_args"].get(key) == alone["model"]["init_args"].get(key), key
    assert resolved["trainer"]["max_steps"] == alone["trainer"]["max_steps"] or "--trainer.max_steps" in stack


def _six_rows(recipe: Path) -> list[dict]:
    """Six rows of the shape the recipe's data module reads, as a user's own small file would hold."""
    questions = [(f"What is {i} + 1?", str(i + 1)) for i in range(6)]
    data = recipe_data(recipe)
    if data == "StepwiseDataModule":
        return [{"prompt": q, "completions": [f"{a}", f"{a}+0={a}"], "labels": [True, i % 2 == 0]}
                for i, (q, a) in enumerate(questions)]  # fmt: skip
    if data == "SFTDataModule":
        return [{"prompt": q, "completion": f" {a}"} for q, a in questions]
    if data == "BinaryDataModule":
        return [{"prompt": q, "completion": f" {a}", "label": i % 2 == 0} for i, (q, a) in enumerate(questions)]
    if data == "PromptDataModule":
        return [{"prompt": q, "answer": a} for q, a in questions]
    assert data == "PairwiseDataModule", data
    return [{"prompt": q, "chosen": f" {a}", "rejected": f" {int(a) + 1}"} for q, a in questions]


@pytest.mark.parametrize("recipe", [r for r in RECIPES if r.parent.name != "real"], ids=lambda p: p.stem)
def test_every_recipe_trains_and_validates_on_a_six_row_file(recipe, tmp_path):
    """Shipped intervals (validate every 20-500 steps) meet a 6-row file: validation moves to each epoch's end."""
    from tests.helpers import run_in_process, write_jsonl

    path = write_jsonl(tmp_path / "six.jsonl", _six_rows(recipe))
    extra = []
    init = yaml.safe_load(recipe.read_text())["model"]["init_args"]
    if init["policy"]["name_or_path"].startswith("runs/"):  # made by another recipe (chains_sft for prm, grpo_prm)
        extra = ["--model.init_args.policy.name_or_path", "lit-align/tiny-sft"]
    if any(str(r.get("kwargs", {}).get("path", "")).startswith("runs/") for r in init.get("rewards") or []):
        extra += ["--model.init_args.rewards", '[{"function": "lit_align.rewards.final_number"}]']  # ppo's RM, a PRM
    run = run_in_process(
        "fit", "--config", str(recipe), "--data.init_args.source.path", str(path),
        "--data.init_args.source.val_size", "2", "--trainer.max_steps", "2", *extra,
        "--trainer.enable_progress_bar", "false", "--trainer.default_root_dir", str(tmp_path / "run"),
    )  # fmt: skip
    assert run.code == 0, run.stderr[-3000:]
    assert any(
        "training batches of one epoch of this data; validating at the end of every epoch" in w for w in run.warnings
    )
    header = (tmp_path / "run" / "logs" / "version_0" / "metrics.csv").read_text().splitlines()[0].split(",")
    assert any(name.startswith("val/") for name in header), header
    assert (tmp_path / "run" / "hf_model" / "config.json").is_file()
