"""``lit-align check-data`` on a fixture with planted problems reports exactly those counts."""

import copy
import json

import pytest

from lit_align.commands.check_data import check_data
from lit_align.data import DataSource
from lit_align.data.checks import contradictions, length_bias, overlap, repeated
from lit_align.tasks.arithmetic import make_rows
from tests.helpers import run_in_process, write_jsonl

STORY = "please tell me a short story about a brave little cat who"


def _user(text):
    return [{"role": "user", "content": text}]


def _assistant(text):
    return [{"role": "assistant", "content": text}]


def _row(prompt, chosen, rejected, answer=None):
    return {"prompt": _user(prompt), "chosen": _assistant(chosen), "rejected": _assistant(rejected),
            "answer": answer, "wrong_by": 0}  # fmt: skip


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    """200 embedded pairs with 34 labels flipped, then 3 duplicates, 2 reversed pairs, one pair equal as text, one
    equal after truncation to 64 tokens and one story prompt; validation and test files with leaked prompts; an
    evaluation set with 3 of the training prompts and one sharing 8 words with the story."""
    folder = tmp_path_factory.mktemp("planted")
    rows = make_rows("pairwise", "train", 200, seed=1)
    for i, row in enumerate(rows):
        row["score_chosen"], row["score_rejected"] = 7.0, 5.0 if i % 10 else 6.8  # rows 1, 11, 21, ...: low margin
        row["annotator_a"], row["annotator_b"] = i % 2 == 0, i % 3 == 0
    flipped = list(range(30, 200, 5))
    for i in flipped:
        rows[i]["chosen"], rows[i]["rejected"] = rows[i]["rejected"], rows[i]["chosen"]
    rows += [copy.deepcopy(rows[i]) for i in (0, 1, 2)]  # rows 201-203 repeat rows 1-3
    for i in (10, 11):  # rows 204-205 reverse rows 11-12
        rows.append({**copy.deepcopy(rows[i]), "chosen": rows[i]["rejected"], "rejected": rows[i]["chosen"]})
    rows.append(_row("Say a number.", "42", "42", "42"))  # row 206: identical as text
    rows.append(_row("Repeat the digits.", "1" * 70 + "2", "1" * 70 + "3", "0"))  # row 207: equal once cut to 64
    rows.append(_row(STORY + " sails", "A cat sailed.", "No.", None))  # row 208
    for row in rows[-3:]:
        row.update(score_chosen=7.0, score_rejected=5.0, annotator_a=True, annotator_b=False)
    validation = make_rows("pairwise", "validation", 20, seed=1)
    for j, i in enumerate((100, 101, 102, 103)):  # validation rows 1-4 have training prompts
        validation[j]["prompt"] = rows[i]["prompt"]
    test = make_rows("pairwise", "test", 10, seed=1)
    test[0]["prompt"], test[1]["prompt"] = validation[10]["prompt"], validation[11]["prompt"]  # test rows 1-2
    test[2]["prompt"] = rows[120]["prompt"]  # test row 3
    for row in validation + test:
        row.update(score_chosen=7.0, score_rejected=5.0, annotator_a=True, annotator_b=True)
    files = {name: str(write_jsonl(folder / f"{name}.jsonl", data))
             for name, data in (("train", rows), ("validation", validation), ("test", test))}  # fmt: skip
    evaluation = [{"prompt": rows[i]["prompt"]} for i in (150, 151, 152)] + [{"prompt": _user(STORY + " flies")}]
    against = write_jsonl(folder / "eval.jsonl", evaluation)
    return {"files": files, "rows": rows, "flipped": len(flipped), "against": str(against)}


def test_the_report_counts_exactly_what_was_planted(planted, capsys):
    source = DataSource(path="json", data_files=planted["files"])
    report = check_data(
        source=source, against=DataSource(path=planted["against"]), tokenizer="lit-align/tiny-sft", max_length=64,
        label_fields=("annotator_a", "annotator_b"), scorer="verifier",
    )  # fmt: skip
    train = report["splits"]["train"]
    assert train["rows"] == 208 and train["unreadable"]["count"] == 0
    assert train["duplicates"] == {"count": 3, "rows": [201, 202, 203]}
    assert train["contradictions"] == {"count": 2, "rows": [204, 205]}
    assert train["identical"] == {"count": 1, "rows": [206]}
    assert train["truncation_ties"]["count"] == 1 and train["truncation_ties"]["rows"] == [207]
    assert train["identical_tokens"]["count"] == 0
    assert report["split_overlap"]["validation_in_train"] == {"count": 4, "rows": [1, 2, 3, 4]}
    assert report["split_overlap"]["test_in_validation"] == {"count": 2, "rows": [1, 2]}
    assert report["split_overlap"]["test_in_train"] == {"count": 1, "rows": [3]}
    assert report["against"]["train"]["exact"] == {"count": 3, "rows": [151, 152, 153]}
    assert report["against"]["train"]["ngram"] == {"count": 1, "rows": [208]}  # the templated prompts have < 8 words
    low = train["low_margin"]
    # rows 1, 11, ..., 191 and the copies of rows 1 (row 201) and 11 (row 204)
    assert low["count"] == 22 and low["rows"][:3] == [1, 11, 21] and low["fields"] == ["score_chosen", "score_rejected"]
    # The verifier abstains on rows 206-208 (a tie twice, no answer once): 34 flips + 2 reversed among 205.
    mislabel = train["mislabel"]
    assert (mislabel["disagree"], mislabel["compared"], mislabel["abstained"]) == (36, 205, 3)
    planted_share = (planted["flipped"] + 2) / 205
    assert mislabel["interval"][0] <= planted_share <= mislabel["interval"][1]
    assert mislabel["rate"] == pytest.approx(planted_share, abs=1e-4)
    # Cohen's kappa of the two annotator columns, by hand: p_o and p_e from the four cells.
    a, b = [r["annotator_a"] for r in planted["rows"]], [r["annotator_b"] for r in planted["rows"]]
    p_o = sum(x == y for x, y in zip(a, b, strict=True)) / 208
    p_e = (sum(a) / 208) * (sum(b) / 208) + (1 - sum(a) / 208) * (1 - sum(b) / 208)
    assert train["label_agreement"]["kappa"] == pytest.approx((p_o - p_e) / (1 - p_e), abs=1e-4)
    # Character tokens: the chosen is longer exactly when its text is.
    lengths = [(len(r["chosen"][0]["content"]), len(r["rejected"][0]["content"])) for r in planted["rows"]]
    longer = sum(c > r for c, r in lengths) / 208
    assert train["length_bias"]["chosen_longer"] == pytest.approx(longer, abs=1e-4)
    assert train["length_bias"]["unit"] == "tokens"
    warnings = "\n".join(report["warnings"])
    for phrase in ("3 exact duplicate rows", "2 pairs state the reverse", "4 validation rows have a prompt",
                   "below about 10000", "the scorer contradicts 17.6% of labels"):  # fmt: skip
        assert phrase in warnings, phrase
    assert "warning: " in capsys.readouterr().err


def test_clean_embedded_data_raises_no_finding_but_its_size(capsys):
    report = check_data(source=DataSource(num_rows=300, num_val_rows=50), scorer="verifier", min_pairs=100)
    for split in report["splits"].values():
        assert split["duplicates"]["count"] == 0 and split["contradictions"]["count"] == 0
        assert split["mislabel"]["disagree"] == 0
    assert all(v["count"] == 0 for v in report["split_overlap"].values())
    assert report["warnings"] == []


def test_the_pure_checks_by_hand():
    assert repeated(["a", "b", "a", "c", "b", "a"]) == [2, 4, 5]
    pairs = [("p", "A", "B"), ("p", "B", "A"), ("q", "A", "B"), ("p", "B", "A"), ("q", "A", "B")]
    assert contradictions(pairs) == [1]  # counted once; repeats of either order are duplicates, not new conflicts
    exact, shared = overlap([["a", "b", "c"], ["x", "a", "b"], ["z"]], [["a", "b", "c"], ["q", "z"]], 2)
    assert (exact, shared) == ([0], [0, 1])
    bias = length_bias([3, 5, 2, 2], [1, 5, 4, 1])  # diffs +2, 0, -2, +1
    assert bias == {"chosen_longer": 0.5, "rejected_longer": 0.25, "same_length": 0.25, "mean_difference": 0.25}


def test_binary_rows_conflicting_labels_and_the_cli(tmp_path):
    rows = make_rows("binary", "train", 40, seed=2)
    rows.append({**rows[5], "label": not rows[5]["label"]})  # row 41 contradicts row 6
    data = write_jsonl(tmp_path / "b.jsonl", rows)
    result = run_in_process("check-data", "--source.path", str(data), "--scorer", "verifier")
    assert result.returncode == 0, result.stderr[-1000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    train = report["splits"]["train"]
    assert report["shape"] == "binary" and train["contradictions"] == {"count": 1, "rows": [41]}
    assert train["mislabel"]["disagree"] == 1  # the verifier agrees with every generated label but the flipped one
    assert "completions got both labels" in result.stderr


def test_a_truncation_check_without_a_tokenizer_is_refused():
    result = run_in_process("check-data", "--max_length", "64")
    assert result.returncode == 2
    assert "--max_length: needs --tokenizer" in result.stderr.strip().splitlines()[-1]


def test_columns_that_are_not_there_are_named():
    result = run_in_process("check-data", "--source.num_rows", "20", "--score_fields", "[a, score_rejected]")
    assert result.returncode == 2
    assert (
        "--score_fields: ['a', 'score_rejected'] not among the columns of lit-align/arithmetic[train]"
        in (result.stderr.strip().splitlines()[-1])
    )
