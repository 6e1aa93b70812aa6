import re

from lit_align.rewards import final_number
from lit_align.rewards.verifiable import answer_matches
from lit_align.tasks import word_problems as wp


def test_splits_are_disjoint_and_their_problems_have_the_stated_answer():
    seen = {split: {tuple(r["prompt"][0]["content"].split(" Give")[0].split()[1:]) for r in wp.make_rows(
        "prompt", split, 300)} for split in wp.SPLITS}  # fmt: skip
    assert not seen["train"] & seen["test"] and not seen["validation"] & seen["test"]
    for row in wp.make_rows("prompt", "test", 200):
        a, b = map(int, re.findall(r"\d+", row["prompt"][0]["content"])[:2])
        story = row["prompt"][0]["content"]
        if "boxes" in story:
            assert int(row["answer"]) == a * b
        elif "gave away" in story or "get off" in story:
            assert int(row["answer"]) == a - b
        elif "buys" in story or "girls" in story:
            assert int(row["answer"]) == a + b


def test_chosen_ends_in_the_answer_rejected_in_another_number():
    rows = wp.make_rows("pairwise", "train", 50, seed=3)
    assert rows == wp.make_rows("pairwise", "train", 50, seed=3)
    chosen = final_number(None, [r["chosen"] for r in rows], answer=[r["answer"] for r in rows])
    rejected = final_number(None, [r["rejected"] for r in rows], answer=[r["answer"] for r in rows])
    assert chosen == [1.0] * 50 and rejected == [0.0] * 50
    binary = wp.make_rows("binary", "train", 200)
    assert final_number(None, [r["completion"] for r in binary], answer=[r["answer"] for r in binary]) == [
        float(r["label"]) for r in binary
    ]


def test_match_final_reads_the_last_number():
    completions, answers = ["7 + 5 = 12. The answer is 12.", "It is 12.", "12, not 13", "no number"], ["12"] * 4
    assert answer_matches(completions, answers, match="final") == [True, True, False, False]
    # leading: the first integer (7, none, 12, none)
    assert answer_matches(completions, answers, match="leading") == [False, False, True, False]
    assert answer_matches(["12"], [None]) == [None]  # a row without an answer is not matched
