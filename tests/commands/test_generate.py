"""``lit-align generate``: pairs and best-of-N SFT rows from the tiny model, restartable by shard."""

import json

import pytest

from lit_align.commands.generate import best_rows, generate
from lit_align.commands.scored import Scored
from lit_align.data import DataSource, PairwiseDataModule, SFTDataModule
from lit_align.rollout.texts import Completion
from tests.helpers import run_in_process


def _source(rows=40):
    return DataSource(split="train", val_split=None, test_split=None, num_rows=rows)


def _right(row, field):
    return row[field][0]["content"].strip().split(" ")[0] == row["answer"]


def _lines(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_pairs_prefer_the_higher_score_carry_provenance_and_train_unchanged(tmp_path, capsys):
    out = tmp_path / "pairs.jsonl"
    summary = generate(source=_source(), output=str(out), num_samples=4, shard_size=16)
    rows = _lines(out)
    assert rows and summary["rows"] == len(rows) and summary["shards"] == 3
    assert all(r["chosen_score"] > r["rejected_score"] and r["margin"] == r["chosen_score"] - r["rejected_score"]
               for r in rows)  # fmt: skip
    assert all(_right(r, "chosen") and not _right(r, "rejected") for r in rows)  # the verifier's order
    assert {r["generator"] for r in rows} == {"lit-align/tiny-sft"} and {r["round"] for r in rows} == {0}
    ids = [r["prompt_id"] for r in rows]
    assert len(set(ids)) == len(ids)  # best_worst: one pair per prompt
    assert summary["prompt_coverage"] == pytest.approx(len(ids) / 40, abs=1e-4)
    data = PairwiseDataModule(source=DataSource(path=str(out), val_size=4, test_split=None), batch_size=4,
                              max_length=64)  # fmt: skip
    data.setup("fit")
    batch = next(iter(data.train_dataloader()))
    assert batch["input_ids"].shape[0] == 8  # 4 pairs, chosen then rejected


def test_a_restart_skips_finished_shards_and_ends_with_the_same_file(tmp_path, capsys):
    out = tmp_path / "pairs.jsonl"
    first = generate(source=_source(), output=str(out), num_samples=4, shard_size=16, pairing="all")
    whole = out.read_bytes()
    (tmp_path / "pairs.shards" / "shard-00001.jsonl").unlink()  # as if killed while writing shard 1
    out.unlink()
    again = generate(source=_source(), output=str(out), num_samples=4, shard_size=16, pairing="all")
    assert again["shards_skipped"] == 2 and out.read_bytes() == whole
    assert {k: v for k, v in again.items() if k != "shards_skipped"} == {
        k: v for k, v in first.items() if k != "shards_skipped"
    }


def test_shards_of_other_settings_are_refused_in_one_line(tmp_path, capsys):
    out = tmp_path / "pairs.jsonl"
    generate(source=_source(8), output=str(out), num_samples=2)
    run = run_in_process("generate", "--source.num_rows", "8", "--source.val_split", "null", "--source.test_split",
                         "null", "--num_samples", "3", "--output", str(out))  # fmt: skip
    assert run.code == 2 and run.stderr.count("\n") == 1
    assert "--output" in run.stderr and "num_samples" in run.stderr and "pairs.shards" in run.stderr


@pytest.mark.parametrize(
    ("args", "key"),
    [(["--num_samples", "1"], "--num_samples"), (["--scorer", "none"], "--scorer"), (["--shard_size", "0"], "shard")],
)
def test_meaningless_settings_stop_in_one_line(tmp_path, args, key):
    run = run_in_process("generate", "--source.num_rows", "4", "--output", str(tmp_path / "p.jsonl"), *args)
    assert run.code == 2 and run.stderr.count("\n") == 1 and key in run.stderr, run.stderr


def test_best_rows_by_hand():
    texts = [["12", "13", "12", "x"], ["7", "8", "9", "7"]]
    scores = [[1.0, 0.0, 1.0, None], [0.5, 0.9, 0.9, 0.5]]
    scored = Scored([[Completion(t, [], False) for t in row] for row in texts], [[None] * 4] * 2, scores)
    assert best_rows(scored, None, 1) == [(0, 0), (1, 1)]  # the first of equal scores
    assert best_rows(scored, None, 3) == [(0, 0), (0, 1), (1, 1), (1, 2), (1, 0)]  # "12" twice counts once
    assert best_rows(scored, 0.9, 3) == [(0, 0), (1, 1), (1, 2)]  # below min_score: left out


def test_sft_rows_are_right_answers_that_train_in_the_sft_module(tmp_path, capsys):
    out = tmp_path / "sft.jsonl"
    summary = generate(source=_source(24), output=str(out), mode="sft", num_samples=4, min_score=1.0,
                       rows_per_prompt=2)  # fmt: skip
    rows = _lines(out)
    assert rows and summary["rows"] == len(rows) and all(r["score"] == 1.0 and _right(r, "completion") for r in rows)
    per_prompt: dict[int, list[str]] = {}
    for r in rows:
        per_prompt.setdefault(r["prompt_id"], []).append(r["completion"][0]["content"])
    assert all(len(v) <= 2 and len(set(v)) == len(v) for v in per_prompt.values())
    data = SFTDataModule(source=DataSource(path=str(out), val_size=2, test_split=None), batch_size=4, max_length=64)
    data.setup("fit")
    assert next(iter(data.train_dataloader()))["input_ids"].shape[0] == 4


def test_spin_pairs_put_the_real_answer_over_each_differing_sample_and_count_the_identical(tmp_path, capsys):
    out = tmp_path / "spin.jsonl"
    summary = generate(source=_source(32), output=str(out), mode="spin", num_samples=2, scorer="none")
    rows = _lines(out)
    samples = 64
    kept = {(r["prompt_id"], r["rejected"][0]["content"]) for r in rows}
    assert len(kept) == len(rows)  # a sample repeated for one prompt gives one pair
    assert all(_right(r, "chosen") and r["chosen"][0]["content"] == r["answer"] for r in rows)  # the real answer
    assert all(r["rejected"][0]["content"].strip() != r["answer"] for r in rows)
    identical = summary["spin/identical_fraction"] * samples
    assert identical == pytest.approx(round(identical), abs=0.01) and 0 < identical < samples
    assert len(rows) <= samples - round(identical)
    assert "rejected_score" not in rows[0] or rows[0]["rejected_score"] is None  # no scorer, no scores


def test_spin_reads_prompt_and_completion_rows_too(tmp_path, capsys):
    from tests.helpers import write_jsonl

    answer = [{"role": "assistant", "content": "8"}]
    data = write_jsonl(tmp_path / "sft.jsonl", [{"prompt": "2 + 6 = ?", "completion": answer},
                                                {"prompt": "3 + 5 = ?", "completion": answer}])  # fmt: skip
    source = DataSource(path=str(data), val_split=None, test_split=None)
    summary = generate(source=source, output=str(tmp_path / "out.jsonl"), mode="spin", num_samples=3,
                       scorer="none", answer_field=None)  # fmt: skip
    rows = _lines(tmp_path / "out.jsonl")
    assert summary["prompts"] == 2 and all(r["chosen"] == "8" for r in rows)  # the real answer's text
    assert all(r["chosen"] != r["rejected"] for r in rows)


@pytest.mark.parametrize("mode", ["pairs", "sft", "spin"])
def test_an_empty_completion_makes_no_row_and_is_counted(mode):
    """A model that stops at once writes an empty answer, which the data modules refuse: no row may hold one."""
    from lit_align.commands.generate import _shard_rows

    texts = [["", "5", "6"]]
    scored = Scored([[Completion(t, [], False) for t in texts[0]]], [[False, True, False]], [[2.0, 1.0, 0.0]])
    settings = {"answer_field": "answer", "model": "m", "scorer": "s", "round": 0, "mode": mode,
                "pairing": "best_worst", "min_margin": 0.0, "min_score": None, "rows_per_prompt": 3}  # fmt: skip
    lines, stats = _shard_rows(scored, ["2 + 3 = ?"], ["5"], range(1), settings, ["5"])
    assert stats["empty_samples"] == 1 and lines
    assert all(line.get(field) != "" for line in lines for field in ("chosen", "rejected", "completion"))


CONSTITUTION = "lit_align.rewards.constitution:ArithmeticConstitution"


def test_cai_pairs_are_ordered_by_the_principles_and_never_against_the_answers(tmp_path, capsys):
    from lit_align.rewards.constitution import ArithmeticConstitution

    out = tmp_path / "cai.jsonl"
    summary = generate(source=_source(48), output=str(out), num_samples=4, mode="cai-pairs", scorer=CONSTITUTION)
    rows, c = _lines(out), ArithmeticConstitution()
    assert rows and all(r["chosen_score"] > r["rejected_score"] for r in rows)
    for r in rows:
        question = r["prompt"][0]["content"]
        assert r["rejected_violations"] == c.violations(question, r["rejected"][0]["content"]) != []
        assert r["chosen_violations"] == c.violations(question, r["chosen"][0]["content"])
    ordered = [r for r in rows if _right(r, "chosen") != _right(r, "rejected")]
    assert summary["answer_agreement"] == 1.0 and all(_right(r, "chosen") for r in ordered)  # necessary conditions
    assert summary["answer_ordered_fraction"] == pytest.approx(len(ordered) / len(rows), abs=1e-4)


def test_cai_sft_rows_are_revisions_that_keep_every_principle(tmp_path, capsys):
    from lit_align.rewards.constitution import ArithmeticConstitution

    out = tmp_path / "cai-sft.jsonl"
    summary = generate(source=_source(48), output=str(out), num_samples=1, mode="cai-sft", scorer=CONSTITUTION)
    rows, c = _lines(out), ArithmeticConstitution()
    assert rows and summary["revised_rows"] == sum(r["completion"][0]["content"] != r["original"] for r in rows) > 0
    for r in rows:
        question = r["prompt"][0]["content"]
        assert c.violations(question, r["completion"][0]["content"]) == []
        assert r["violations"] == c.violations(question, r["original"])


def test_cai_modes_refuse_a_scorer_that_is_not_a_constitution(tmp_path):
    args = ["--mode", "cai-sft", "--num_samples", "1", "--scorer", "lit_align.rewards.arithmetic_answer"]
    run = run_in_process("generate", "--source.num_rows", "4", *args, "--output", str(tmp_path / "o.jsonl"))
    assert run.code == 2 and run.stderr.count("\n") == 1 and "constitution" in run.stderr, run.stderr


def test_self_rewarding_pairs_and_batches_never_depend_on_the_answer_column(tmp_path, capsys):
    """The model judges its own samples (``path: $model``): scrambled answers give the same pairs and batches."""
    import torch

    from lit_align.tasks.arithmetic import make_rows

    judge = {"scorer": "lit_align.rewards.judges:LogProbJudge", "scorer_kwargs": {"path": "$model"}}
    rows = make_rows("prompt", "train", 12)
    scrambled = [{**row, "answer": rows[(i + 1) % len(rows)]["answer"]} for i, row in enumerate(rows)]
    made, batches = [], []
    for name, data in (("right", rows), ("scrambled", scrambled)):
        source_file = tmp_path / f"{name}.jsonl"
        source_file.write_text("".join(json.dumps(row) + "\n" for row in data))
        out = tmp_path / f"{name}-pairs.jsonl"
        generate(source=DataSource(path=str(source_file), val_split=None, test_split=None), output=str(out),
                 num_samples=4, **judge)  # fmt: skip
        made.append([{k: v for k, v in r.items() if k != "answer"} for r in _lines(out)])
        module = PairwiseDataModule(source=DataSource(path=str(out), test_split=None, val_split=None),
                                    batch_size=64, max_length=64)  # fmt: skip
        module.setup("fit")
        batches.append(next(iter(module.train_dataloader())))
    assert made[0] and made[0] == made[1]
    assert batches[0].keys() == batches[1].keys()
    assert all(torch.equal(batches[0][k], batches[1][k]) for k in batches[0] if isinstance(batches[0][k], torch.Tensor))
