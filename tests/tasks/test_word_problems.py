import re

from lit_align.commands.evaluate import exact_match
from lit_align.rewards import final_number
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


def test_evaluate_match_final_reads_the_last_number(monkeypatch, tiny_tokenizer):
    import torch

    completions = iter([["7 + 5 = 12. The answer is 12.", "It is 12."]])
    monkeypatch.setattr(tiny_tokenizer, "batch_decode", lambda *a, **k: next(completions))

    class Model(torch.nn.Module):
        device = torch.device("cpu")

        def generate(self, input_ids, **_):
            return input_ids

    prompts, answers = ["a", "b"], ["12", "12"]
    accuracy, _ = exact_match(Model(), tiny_tokenizer, prompts, answers, match="final")
    assert accuracy == 1.0
    completions = iter([["7 + 5 = 12. The answer is 12.", "It is 12."]])
    assert (
        exact_match(Model(), tiny_tokenizer, prompts, answers, match="leading")[0] == 0.0
    )  # they start with 7 and a word
