"""``lit-align evaluate-rm``: pairwise accuracy of a reward model, overall and per group."""

import json

import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from lit_align.commands.evaluate_rm import pairwise_accuracy
from lit_align.tasks.arithmetic import make_rows
from tests.helpers import run_in_process, write_jsonl

PAIR = ("chosen", "rejected")


def test_pairwise_accuracy_by_hand():
    chosen = torch.tensor([2.0, 0.0, 1.0, 3.0])
    rejected = torch.tensor([1.0, 0.0, 2.0, -1.0])
    out = pairwise_accuracy(chosen, rejected, ["a", "b", "b", "b"])
    # wins: 2>1 yes, tie no, 1>2 no, 3>-1 yes; margins 1, 0, -1, 4
    assert out["rows"] == 4 and out["accuracy"] == 0.5 and out["margin"] == 1.0
    assert out["groups"] == {"a": {"rows": 1, "accuracy": 1.0}, "b": {"rows": 3, "accuracy": 0.3333}}
    assert "groups" not in pairwise_accuracy(chosen, rejected)


def test_cli_matches_plain_transformers_scoring(random_reward_model):
    result = run_in_process(
        "evaluate-rm", "--model", str(random_reward_model), "--source.num_rows", "40", "--group_field", "wrong_by"
    )
    assert result.returncode == 0, result.stderr[-2000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    # The same 40 test pairs scored one by one with transformers and the chat template.
    model = AutoModelForSequenceClassification.from_pretrained(random_reward_model).eval()
    tokenizer = AutoTokenizer.from_pretrained(random_reward_model)
    rows = make_rows("pairwise", "test", 40, 0)
    wins, by_group = [], {}
    with torch.no_grad():
        for row in rows:
            texts = [tokenizer.apply_chat_template(row["prompt"] + row[k], tokenize=False) for k in PAIR]
            c, r = (model(**tokenizer(t, return_tensors="pt", add_special_tokens=False)).logits for t in texts)
            wins.append(bool(c > r))
            by_group.setdefault(str(row["wrong_by"]), []).append(wins[-1])
    assert 0 < sum(wins) < len(wins), "a random head should win some pairs and lose others"
    assert out["rows"] == 40 and out["accuracy"] == round(sum(wins) / 40, 4)
    assert {k: v["rows"] for k, v in out["groups"].items()} == {k: len(v) for k, v in by_group.items()}


def test_implicit_prompt_rows_and_missing_group_field(tmp_path, random_reward_model):
    rows = [{"chosen": "Q: 1+1? A: 2", "rejected": "Q: 1+1? A: 3"}]
    path = write_jsonl(tmp_path / "pairs.jsonl", rows)
    args = ["evaluate-rm", "--model", str(random_reward_model), "--source.path", str(path), "--source.split", "train"]
    ok = run_in_process(*args)
    assert ok.returncode == 0, ok.stderr[-2000:]
    assert json.loads(ok.stdout.strip().splitlines()[-1])["rows"] == 1
    bad = run_in_process(*args, "--group_field", "subset")
    assert bad.returncode == 2
    assert f"lit-align: error: {path}: row 1: field 'subset': is missing" in bad.stderr


def test_model_is_required():
    result = run_in_process("evaluate-rm")
    assert result.returncode == 2 and "--model" in result.stderr
