"""``lit-align iterate``: rounds from the last round's model, a frozen reference per round, exact restart."""

import json

import pytest
import torch
import yaml
from transformers import AutoModelForCausalLM

from lit_align.commands.iterate import iterate
from lit_align.ops.fingerprint import fingerprint
from tests.helpers import REPO, run_in_process


def _config(tmp_path, name, kill_flag=None):
    config = yaml.safe_load((REPO / "recipes" / "iterative_dpo.yaml").read_text())
    config.update(rounds=2, output_dir=str(tmp_path / name))
    config["generate"].update(num_samples=4)
    config["generate"]["source"]["num_rows"] = 24
    config["evaluate"]["source"]["num_rows"] = 16
    fit = config["fit"]
    fit["trainer"].update(max_steps=4, val_check_interval=1.0, enable_progress_bar=False)
    fit["trainer"]["callbacks"][1]["init_args"]["every_n_train_steps"] = 1
    fit["trainer"]["callbacks"].append({"class_path": "tests.commands.iterate_probe.ReferenceProbe"})
    if kill_flag is not None:
        fit["trainer"]["callbacks"].append(
            {"class_path": "tests.commands.iterate_probe.KillOnce", "init_args": {"flag": str(kill_flag)}}
        )
    fit["data"]["init_args"].update(batch_size=4)
    fit["data"]["init_args"]["source"]["val_size"] = 4
    return config


def _rows(round_dir):
    """A round's generated rows without the generator column (the model's path differs between the two runs)."""
    lines = [json.loads(line) for line in (round_dir / "rows.jsonl").read_text().splitlines()]
    return [{k: v for k, v in line.items() if k != "generator"} for line in lines]


def _weights(folder):
    return AutoModelForCausalLM.from_pretrained(folder).state_dict()


def test_rounds_start_from_the_last_model_hold_it_frozen_and_a_killed_run_ends_as_an_uninterrupted_one(
    tmp_path, capsys
):
    whole = iterate(**_config(tmp_path, "whole"))
    assert [r["round"] for r in whole] == [0, 1, 2]
    first, second = whole[1], whole[2]
    assert first["start"] == "lit-align/tiny-sft" and second["start"] == first["model"]
    assert first["generate"]["rows"] > 0 and "exact_match" in second["evaluate"]
    # The reference of round 2 is round 1's model, and it does not move while the policy does.
    probe = json.loads((tmp_path / "whole" / "round-2" / "fit" / "probe.json").read_text())
    start_weights = fingerprint(AutoModelForCausalLM.from_pretrained(first["model"]).parameters()).tolist()
    assert probe["start"]["reference"] == start_weights == probe["start"]["policy"]
    assert probe["end"]["reference"] == start_weights and probe["end"]["policy"] != start_weights

    flag = tmp_path / "kill"
    flag.touch()
    with pytest.raises(RuntimeError, match="killed"):
        iterate(**_config(tmp_path, "killed", kill_flag=flag))
    round_two = tmp_path / "killed" / "round-2"
    assert (round_two / "fit" / "checkpoints" / "last.ckpt").exists() and not (round_two / "metrics.json").exists()
    resumed = iterate(**_config(tmp_path, "killed", kill_flag=flag))
    assert json.loads((round_two / "fit" / "probe.json").read_text())["train_starts_at_step"] == [0, 2]  # resumed
    assert _rows(round_two) == _rows(tmp_path / "whole" / "round-2")
    ours, theirs = _weights(resumed[2]["model"]), _weights(second["model"])
    assert all(torch.equal(ours[k], theirs[k]) for k in theirs)
    assert {k: v for k, v in resumed[2]["evaluate"].items() if k != "model"} == {
        k: v for k, v in second["evaluate"].items() if k != "model"
    }
    summary = [json.loads(line) for line in (tmp_path / "killed" / "summary.jsonl").read_text().splitlines()]
    assert [r["round"] for r in summary] == [0, 1, 2]


def test_a_key_iterate_sets_itself_is_refused_in_one_line(tmp_path):
    config = _config(tmp_path, "bad")
    config["generate"]["model"] = "lit-align/tiny-base"
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(config))
    run = run_in_process("iterate", "--config", str(path))
    assert run.code == 2 and run.stderr.count("\n") == 1 and "generate.model" in run.stderr, run.stderr
    config["generate"].pop("model")
    config["generate"]["num_samplez"] = 3
    path.write_text(yaml.safe_dump(config))
    run = run_in_process("iterate", "--config", str(path))
    assert run.code == 2 and run.stderr.count("\n") == 1 and "num_samplez" in run.stderr, run.stderr
    config["generate"].pop("num_samplez")
    config["fit"]["model"]["init_args"]["betta"] = 0.1
    path.write_text(yaml.safe_dump(config))
    run = run_in_process("iterate", "--config", str(path))
    assert run.code == 2 and run.stderr.count("\n") == 1 and "betta" in run.stderr, run.stderr
    assert not (tmp_path / "bad").exists()  # refused before round 0's evaluation and round 1's generation
