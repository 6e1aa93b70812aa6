import pytest

from lit_align.data.binary import BinaryDataModule
from lit_align.data.sources import DataSource
from lit_align.errors import DataError
from lit_align.types import IGNORE_INDEX
from tests.helpers import write_jsonl


def _module(tmp_path, rows, **kwargs):
    path = write_jsonl(tmp_path / "binary.jsonl", rows)
    return BinaryDataModule(tokenizer="lit-align/tiny-sft", source=DataSource(path=str(path)), **kwargs)


def test_rows_carry_label_and_a_mismatched_completion(tmp_path, tiny_tokenizer):
    rows = [{"prompt": f"q{i}", "completion": f"a{i}", "label": i % 2 == 0} for i in range(4)]
    dm = _module(tmp_path, rows, batch_size=4)
    dm.setup("fit")
    items = dm.rows["train"]
    assert [r["label"] for r in items] == [True, False, True, False]
    # the mismatched completions are a permutation of the completions with no row paired with itself
    own = [tuple(r["completion_ids"]) for r in items]
    other = [tuple(r["kl_completion_ids"]) for r in items]
    assert sorted(own) == sorted(other) and all(a != b for a, b in zip(own, other, strict=True))
    batch = next(iter(dm.splits.loader("train", shuffle=False)))
    assert batch["input_ids"].shape[0] == 8 and batch["desirable"].tolist() == [True, False, True, False]
    kl_row = [t for t in batch["labels"][4].tolist() if t != IGNORE_INDEX]
    assert kl_row == list(items[0]["kl_completion_ids"])


def test_mismatched_completions_come_from_another_prompt(tmp_path):
    """Unpaired pairs give two rows per prompt; no row may take its KL completion from its own prompt."""
    rows = [{"prompt": f"q{i}", "chosen": f"good {i}", "rejected": f"bad {i}"} for i in range(6)]
    dm = _module(tmp_path, rows, unpair=True, batch_size=4)
    dm.setup("fit")
    items = dm.rows["train"]
    by_completion = {tuple(r["completion_ids"]): tuple(r["prompt_ids"]) for r in items}
    assert len(items) == 12
    for item in items:
        assert by_completion[tuple(item["kl_completion_ids"])] != tuple(item["prompt_ids"])


def test_mismatched_partners_by_hand():
    import random

    from lit_align.data.binary import mismatched_partners

    keys = ["a", "a", "a", "b", "c", "c"]  # the largest prompt holds 3 of 6 rows: still possible
    for seed in range(20):
        partner = mismatched_partners(keys, random.Random(seed))
        assert sorted(partner) == list(range(6)) and all(keys[i] != keys[j] for i, j in enumerate(partner))
    assert mismatched_partners(["a"], random.Random(0)) == [0]


def test_unpair_turns_each_pair_into_two_labelled_rows(tmp_path, tiny_tokenizer):
    dm = _module(tmp_path, [{"prompt": "q", "chosen": "good", "rejected": "bad"}], unpair=True)
    dm.setup("fit")
    items = dm.rows["train"]
    assert [(tiny_tokenizer.decode(r["completion_ids"]), r["label"]) for r in items] == [
        ("good</s>", True),
        ("bad</s>", False),
    ]


# Note: datasets decodes a string "true" in a mixed JSON column to the boolean true, so it cannot be caught here.
@pytest.mark.parametrize("label", [1, "yes", None])
def test_label_must_be_boolean(tmp_path, label):
    dm = _module(
        tmp_path,
        [{"prompt": "q", "completion": "a", "label": True}, {"prompt": "q", "completion": "a", "label": label}],
    )
    with pytest.raises(DataError) as info:
        dm.setup("fit")
    expected = "is missing" if label is None else f"must be true or false, got {label!r}"
    assert str(info.value) == f"{tmp_path / 'binary.jsonl'}: row 2: field 'label': {expected}"


def test_non_boolean_labels_can_be_skipped_and_counted(tmp_path):
    rows = [
        {"prompt": "q", "completion": "a", "label": True},
        {"prompt": "q", "completion": "b", "label": "yes"},
        {"prompt": "r", "completion": "c", "label": False},
    ]
    dm = _module(tmp_path, rows, on_bad_row="skip")
    with pytest.warns(UserWarning, match=r"1 skipped \(1 must be true or false, got 'yes': row 2\)"):
        dm.setup("fit")
    assert len(dm.rows["train"]) == 2 and dm.stats["train"]["skipped"] == 1


@pytest.mark.parametrize("label", [True, False])
def test_a_training_set_with_one_label_only_is_refused(tmp_path, label):
    rows = [{"prompt": "q", "completion": "a", "label": label}, {"prompt": "r", "completion": "b", "label": label}]
    with pytest.raises(DataError) as info:
        _module(tmp_path, rows).setup("fit")
    kind = "desirable (true)" if label else "undesirable (false)"
    assert str(info.value) == (
        f"{tmp_path / 'binary.jsonl'}: field 'label': every training row is {kind}; "
        "KTO needs both desirable and undesirable rows"
    )


def test_checks_make_a_completion_labelled_both_ways_a_bad_row(tmp_path):
    from lit_align.tasks.arithmetic import make_rows
    from tests.helpers import write_jsonl

    rows = make_rows("binary", "train", 20, seed=4)
    rows.append({**rows[2], "label": not rows[2]["label"]})  # row 21 contradicts row 3
    source = DataSource(path=str(write_jsonl(tmp_path / "b.jsonl", rows)))
    dm = BinaryDataModule(source=source, checks=["contradictions"], on_bad_row="skip", max_length=64)
    dm.setup("fit")
    assert dm.stats["train"]["skipped: states the reverse of an earlier row (the contradictions check)"] == 1
