"""StepwiseDataModule: labels at exactly the step-end tokens, ignore index elsewhere, integer or float kept."""

import pytest
import torch

from lit_align.data import DataSource, StepwiseDataModule
from lit_align.errors import DataError
from lit_align.types import IGNORE_INDEX
from tests.helpers import write_jsonl

PROMPT = [{"role": "user", "content": "What is 23 + 45 - 17?"}]


def _module(tmp_path, rows, **kwargs):
    path = write_jsonl(tmp_path / "steps.jsonl", rows)
    kwargs.setdefault("batch_size", len(rows))
    return StepwiseDataModule(source=DataSource(path=str(path), test_split=None), **kwargs)


def _batch(dm):
    dm.setup("fit")
    return next(iter(dm.splits.loader("train", shuffle=False)))


def test_labels_sit_on_each_steps_separator_and_nowhere_else(tmp_path, tiny_tokenizer):
    rows = [{"prompt": PROMPT, "completions": ["23+45=69", "69-17=52"], "labels": [False, False]},
            {"prompt": "23 + 45 =", "completions": ["68"], "labels": [True]}]  # fmt: skip
    batch = _batch(_module(tmp_path, rows))
    labels = batch["step_labels"]
    assert labels.dtype == torch.long  # booleans become 0 / 1 integers, never a bool tensor
    first = tiny_tokenizer.decode(batch["input_ids"][0][batch["attention_mask"][0].bool()])
    assert first == "<|user|>What is 23 + 45 - 17?<|end|><|assistant|>23+45=69\n69-17=52\n"
    ends = (labels[0] != IGNORE_INDEX).nonzero().flatten().tolist()
    assert [tiny_tokenizer.decode(batch["input_ids"][0][: e + 1])[-9:] for e in ends] == ["23+45=69\n", "69-17=52\n"]
    assert labels[0, ends].tolist() == [0, 0]
    plain_ends = (labels[1] != IGNORE_INDEX).nonzero().flatten().tolist()
    assert labels[1, plain_ends].tolist() == [1] and tiny_tokenizer.decode(batch["input_ids"][1][plain_ends]) == "\n"
    # Everything else, prompt and padding included, is the ignore index: 3 labelled tokens in all.
    assert (labels != IGNORE_INDEX).sum() == 3


def test_lm_labels_cover_the_right_steps_before_the_first_wrong_one(tmp_path, tiny_tokenizer):
    rows = [{"prompt": PROMPT, "completions": ["23+45=68", "68-17=52", "52+1=53"], "labels": [1, 0, 0]},
            {"prompt": PROMPT, "completions": ["23+45=69", "69-17=52"], "labels": [0.25, 0.0]}]  # fmt: skip
    batch = _batch(_module(tmp_path, rows))
    first = [t for t in batch["labels"][0].tolist() if t != IGNORE_INDEX]
    assert tiny_tokenizer.decode(first) == "23+45=68\n"  # the right opening step, its separator included
    assert (batch["labels"][1] == IGNORE_INDEX).all()  # wrong from the first step: nothing to imitate


def test_soft_labels_stay_float_and_a_separator_is_configurable(tmp_path, tiny_tokenizer):
    rows = [{"prompt": PROMPT, "completions": ["23+45=68", "68-17=51"], "labels": [0.875, 0.25]}]
    batch = _batch(_module(tmp_path, rows, step_separator=" ;"))
    labels = batch["step_labels"]
    assert labels.dtype == torch.float32
    ends = (labels[0] != IGNORE_INDEX).nonzero().flatten()
    assert labels[0, ends].tolist() == [0.875, 0.25]
    assert tiny_tokenizer.decode(batch["input_ids"][0]).endswith("23+45=68 ;68-17=51 ;")


def test_outcome_supervision_puts_the_solutions_label_at_its_end_only(tmp_path):
    rows = [{"prompt": PROMPT, "completions": ["23+45=68", "68-17=52"], "labels": [True, False]},
            {"prompt": PROMPT, "completions": ["23+45=68", "68-17=51"], "labels": [0.875, 0.75]}]  # fmt: skip
    steps = _batch(_module(tmp_path, rows))["step_labels"]
    outcome = _batch(_module(tmp_path, rows, supervise="outcome"))["step_labels"]
    last = [(row != IGNORE_INDEX).nonzero().flatten()[-1].item() for row in steps]
    assert [(row != IGNORE_INDEX).nonzero().flatten().tolist() for row in outcome] == [[e] for e in last]
    assert [outcome[i, e].item() for i, e in enumerate(last)] == [0.0, 0.75]


def test_truncation_drops_the_later_steps_labels(tmp_path):
    rows = [{"prompt": "x", "completions": ["1+1=2", "2+1=3"], "labels": [1, 0]}]
    dm = _module(tmp_path, rows, max_length=9)  # "x", then 6 tokens for step 1: its end is token 8
    batch = _batch(dm)
    assert (batch["step_labels"] != IGNORE_INDEX).sum() == 1 and batch["input_ids"].shape[1] == 9
    assert dm.stats["train"]["truncated"] == 1


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ({"prompt": "p", "completions": ["a", "b"], "labels": [True]}, r"field 'labels': must hold one label per step"),
        ({"prompt": "p", "completions": ["a"], "labels": [2]}, r"field 'labels': step 1: a label must be"),
        ({"prompt": "p", "completions": ["a"], "labels": [float("nan")]}, r"field 'labels': step 1: a label must"),
        ({"prompt": "p", "completions": ["a", " "], "labels": [1, 0]}, r"field 'completions': step 2 is empty"),
        ({"prompt": "p", "completions": "a", "labels": [1]}, r"field 'completions': must be a non-empty list"),
        ({"prompt": "p", "labels": [1]}, r"field 'completions': is missing"),
    ],
)
def test_bad_rows_name_their_row_and_field(tmp_path, row, message):
    good = {"prompt": "p", "completions": ["a"], "labels": [1]}
    with pytest.raises(DataError, match=r"row 2: " + message):
        _module(tmp_path, [good, row]).setup("fit")


@pytest.mark.parametrize("supervise", ["steps", "outcome"])
def test_step_token_mask_marks_the_steps_not_the_prompt_separators_or_padding(tmp_path, tiny_tokenizer, supervise):
    rows = [{"prompt": PROMPT, "completions": ["23+45=68", "68-17=51"], "labels": [True, True]},
            {"prompt": PROMPT, "completions": ["23+45=69"], "labels": [False]}]  # fmt: skip
    batch = _batch(_module(tmp_path, rows, supervise=supervise))
    for i, text in enumerate(["23+45=6868-17=51", "23+45=69"]):
        assert tiny_tokenizer.decode(batch["input_ids"][i][batch["step_token_mask"][i]]) == text
