import pytest

from lit_align.data.pairwise import PairwiseDataModule
from lit_align.data.sources import DataSource
from lit_align.data.templates import split_implicit_prompt
from lit_align.errors import DataError
from lit_align.types import IGNORE_INDEX
from tests.helpers import write_jsonl


def _module(tmp_path, rows, **kwargs):
    path = write_jsonl(tmp_path / "pairs.jsonl", rows)
    return PairwiseDataModule(tokenizer="lit-align/tiny-sft", source=DataSource(path=str(path)), **kwargs)


def test_chat_pairs_stack_chosen_then_rejected(tmp_path, tiny_tokenizer):
    row = {
        "prompt": [{"role": "user", "content": "1+1?"}],
        "chosen": [{"role": "assistant", "content": "2"}],
        "rejected": [{"role": "assistant", "content": "30"}],
    }
    dm = _module(tmp_path, [row, row])
    dm.setup("fit")
    batch = next(iter(dm.splits.loader("train", shuffle=False)))
    assert batch["input_ids"].shape[0] == 4 and batch["index"].tolist() == [0, 1]
    decoded = [tiny_tokenizer.decode([t for t in row if t != IGNORE_INDEX]) for row in batch["labels"].tolist()]
    assert decoded == ["2</s>", "2</s>", "30</s>", "30</s>"]
    prompt_ids = batch["input_ids"][0][: len("<|user|>1+1?<|end|><|assistant|>") - 27]
    assert tiny_tokenizer.decode(batch["input_ids"][2][batch["attention_mask"][2].bool()]).startswith("<|user|>1+1?")
    assert prompt_ids.numel() > 0


def test_implicit_prompt_from_shared_conversation(tmp_path, tiny_tokenizer):
    chosen = "\n\nHuman: hi\n\nAssistant: hello there"
    rejected = "\n\nHuman: hi\n\nAssistant: help"
    assert split_implicit_prompt(chosen, rejected) == ("\n\nHuman: hi\n\nAssistant:", " hello there", " help")
    messages = [{"role": "user", "content": "q"}]
    assert (
        split_implicit_prompt(
            messages + [{"role": "assistant", "content": "a"}], messages + [{"role": "assistant", "content": "b"}]
        )[0]
        == messages
    )
    dm = _module(tmp_path, [{"chosen": chosen, "rejected": rejected}])
    dm.setup("fit")
    assert tiny_tokenizer.decode(dm.rows["train"][0]["prompt_ids"]) == "\n\nHuman: hi\n\nAssistant:"


def test_truncation_keeps_prompt_end_and_completion_start_and_counts(tmp_path, tiny_tokenizer):
    rows = [
        {"prompt": "abcdefghij", "chosen": "0123456789", "rejected": "ABCDEFGHIJ"},
        {"prompt": "p", "chosen": "c", "rejected": "r"},
    ]
    dm = _module(tmp_path, rows, max_length=12, max_prompt_length=6)
    with pytest.warns(UserWarning, match="2 rows: 1 truncated"):
        dm.setup("fit")
    row = dm.rows["train"][0]
    assert tiny_tokenizer.decode(row["prompt_ids"]) == "efghij"
    assert (
        tiny_tokenizer.decode(row["chosen_ids"]) == "012345" and tiny_tokenizer.decode(row["rejected_ids"]) == "ABCDEF"
    )
    assert dm.stats["train"]["truncated"] == 1


BAD = [
    (
        {"prompt": "p", "chosen": "same", "rejected": "same"},
        "row 2: field 'rejected': chosen and rejected are identical",
    ),
    ({"prompt": "p", "chosen": "", "rejected": "r"}, "row 2: field 'chosen': is empty"),
    (
        {"prompt": "p" * 30, "chosen": "c", "rejected": "r"},
        "row 2: field 'prompt': the prompt (30 tokens) leaves no room for the completion at max_length=20",
    ),
]


@pytest.mark.parametrize(("row", "message"), BAD)
def test_bad_pairs_stop_with_file_row_and_field(tmp_path, row, message):
    dm = _module(tmp_path, [{"prompt": "p", "chosen": "c", "rejected": "r"}, row], max_length=20)
    with pytest.raises(DataError) as info:
        dm.setup("fit")
    assert str(info.value) == f"{tmp_path / 'pairs.jsonl'}: {message}"


def test_bad_pairs_are_skipped_and_counted_when_asked(tmp_path):
    good = {"prompt": "p", "chosen": "c", "rejected": "r"}
    dm = _module(tmp_path, [good] + [row for row, _ in BAD], max_length=20, on_bad_row="skip")
    with pytest.warns(UserWarning, match="3 skipped"):
        dm.setup("fit")
    assert len(dm.rows["train"]) == 1 and dm.stats["train"]["skipped"] == 3
    assert dm.stats["train"]["skipped: chosen and rejected are identical"] == 1


@pytest.mark.parametrize("implicit", [False, True])
def test_validation_prompts_never_appear_in_training(tmp_path, implicit):
    rows = []
    for i in range(30):
        for j in range(4):
            pair = {"prompt": f"question {i} ?", "chosen": f" yes {j}", "rejected": f" no {j}"}
            if implicit:
                pair = {"chosen": pair["prompt"] + pair["chosen"], "rejected": pair["prompt"] + pair["rejected"]}
            rows.append(pair)
    path = write_jsonl(tmp_path / "pairs.jsonl", rows)
    dm = PairwiseDataModule(tokenizer="lit-align/tiny-sft", source=DataSource(path=str(path), val_size=0.25))
    dm.setup("fit")
    prompts = {split: {tuple(r["prompt_ids"]) for r in dm.rows[split]} for split in ("train", "val")}
    assert len(prompts["train"]) + len(prompts["val"]) == 30 and not prompts["train"] & prompts["val"]


def test_the_binarized_ultrafeedback_layout_reads_as_prompt_and_completions(tmp_path, tiny_tokenizer):
    """A text ``prompt`` next to ``chosen`` / ``rejected`` conversations that open with it (HuggingFaceH4 style)."""
    question = "What is 2 + 2?"
    user = {"role": "user", "content": question}
    rows = [
        {
            "prompt": question,
            "chosen": [user, {"role": "assistant", "content": "4"}],
            "rejected": [user, {"role": "assistant", "content": "5"}],
            "score_chosen": 9.0,
        }
    ]
    dm = _module(tmp_path, rows)
    dm.setup("fit")
    row = dm.rows["train"][0]
    assert tiny_tokenizer.decode(row["prompt_ids"]) == "<|user|>What is 2 + 2?<|end|><|assistant|>"
    assert tiny_tokenizer.decode(row["chosen_ids"]) == "4</s>" and tiny_tokenizer.decode(row["rejected_ids"]) == "5</s>"


def test_checks_make_duplicates_contradictions_and_leaks_bad_rows(tmp_path):
    import copy

    from lit_align.errors import DataError
    from lit_align.tasks.arithmetic import make_rows
    from tests.helpers import write_jsonl

    rows = make_rows("pairwise", "train", 20, seed=4)
    rows.append(copy.deepcopy(rows[3]))  # row 21 repeats row 4
    rows.append({**copy.deepcopy(rows[5]), "chosen": rows[5]["rejected"], "rejected": rows[5]["chosen"]})  # row 22
    validation = make_rows("pairwise", "validation", 6, seed=4)
    validation[2]["prompt"] = rows[0]["prompt"]  # validation row 3 leaks a training prompt
    files = {"train": str(write_jsonl(tmp_path / "train.jsonl", rows)),
             "validation": str(write_jsonl(tmp_path / "val.jsonl", validation))}  # fmt: skip
    source = DataSource(path="json", data_files=files, test_split=None)
    checks = ["duplicates", "contradictions", "leaks"]
    dm = PairwiseDataModule(source=source, checks=checks, max_length=64)
    with pytest.raises(
        DataError, match=r"train.jsonl: row 21: repeats an earlier row exactly \(the duplicates check\)"
    ):
        dm.setup("fit")
    dm = PairwiseDataModule(source=source, checks=checks, max_length=64, on_bad_row="skip")
    dm.setup("fit")
    assert dm.stats["train"]["skipped: repeats an earlier row exactly (the duplicates check)"] == 1
    assert dm.stats["train"]["skipped: states the reverse of an earlier row (the contradictions check)"] == 1
    assert dm.stats["val"]["skipped: its prompt is also in the training split (the leaks check)"] == 1
    assert len(dm.rows["train"]) == 20 and len(dm.rows["val"]) == 5
    unchecked = PairwiseDataModule(source=source, max_length=64)
    unchecked.setup("fit")
    assert len(unchecked.rows["train"]) == 22 and len(unchecked.rows["val"]) == 6


@pytest.mark.parametrize("on_bad_row", ["error", "skip"])
def test_a_bad_row_after_a_thousand_good_ones_is_named_or_counted(tmp_path, on_bad_row):
    """datasets.map typed the error column null from a first write batch without errors (found on generated pairs
    whose row 1552 had an empty answer): the run ended in a TypeError traceback instead of one line."""
    rows = [{"prompt": f"q{i}", "chosen": f" c{i}", "rejected": f" r{i}"} for i in range(1600)]
    rows[1551]["rejected"] = ""
    dm = _module(tmp_path, rows, max_length=20, on_bad_row=on_bad_row)
    if on_bad_row == "error":
        with pytest.raises(DataError, match="row 1552: field 'rejected'"):
            dm.setup("fit")
    else:
        with pytest.warns(UserWarning, match="1 skipped"):
            dm.setup("fit")
        assert len(dm.rows["train"]) == 1599 and dm.stats["train"]["skipped"] == 1


@pytest.mark.parametrize("on_bad_row", ["error", "skip"])
def test_a_bad_row_is_named_by_its_line_in_the_file_after_a_val_size_split(tmp_path, on_bad_row):
    """With val_size the training rows are a selection of the file; messages named the position in the selection."""
    rows = [{"prompt": f"q{i}", "chosen": f" c{i}", "rejected": f" r{i}"} for i in range(60)]
    rows[49]["rejected"] = ""  # line 50 of the file
    path = write_jsonl(tmp_path / "pairs.jsonl", rows)
    source = DataSource(path=str(path), val_size=10)
    dm = PairwiseDataModule(tokenizer="lit-align/tiny-sft", source=source, max_length=20, on_bad_row=on_bad_row)
    if on_bad_row == "error":
        with pytest.raises(DataError, match="row 50: field 'rejected'"):
            dm.setup("fit")
    else:
        with pytest.warns(UserWarning, match=r"1 skipped.*\b50\b"):
            dm.setup("fit")
