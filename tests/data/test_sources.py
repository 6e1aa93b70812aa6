import csv

import datasets
import pytest

from lit_align.data.sources import BAD_ROW, DataSource, load_splits
from lit_align.errors import DataError
from lit_align.types import Shape
from tests.helpers import write_jsonl

ROWS = [{"prompt": f"p{i}", "completion": f"c{i}"} for i in range(10)]


def test_jsonl_file_with_val_fraction(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", ROWS)
    train, val = load_splits(DataSource(path=str(path), val_size=0.2), Shape.SFT)
    assert (len(train), len(val)) == (8, 2)
    assert {r["prompt"] for r in train.rows} | {r["prompt"] for r in val.rows} == {r["prompt"] for r in ROWS}
    assert train.origin == str(path)


def test_single_file_has_no_validation_unless_asked(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", ROWS)
    train, val = load_splits(DataSource(path=str(path)), Shape.SFT)
    assert len(train) == 10 and val is None


def test_csv_and_parquet_files(tmp_path):
    with open(tmp_path / "d.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, ["prompt", "completion"])
        writer.writeheader()
        writer.writerows(ROWS)
    datasets.Dataset.from_list(ROWS).to_parquet(str(tmp_path / "d.parquet"))
    for name in ("d.csv", "d.parquet"):
        train, _ = load_splits(DataSource(path=str(tmp_path / name), num_rows=4), Shape.SFT)
        assert train.rows["prompt"] == ["p0", "p1", "p2", "p3"]


def test_builder_with_data_files_per_split(tmp_path):
    write_jsonl(tmp_path / "train.jsonl", ROWS[:7])
    write_jsonl(tmp_path / "dev.jsonl", ROWS[7:])
    files = {"train": str(tmp_path / "train.jsonl"), "validation": str(tmp_path / "dev.jsonl")}
    train, val = load_splits(DataSource(path="json", data_files=files), Shape.SFT)
    assert (len(train), len(val)) == (7, 3)
    assert val.origin == files["validation"]


def test_embedded_task_rows_and_validation():
    train, val = load_splits(DataSource(num_rows=30, num_val_rows=5), Shape.PAIRWISE)
    assert len(train) == 30 and len(val) == 5
    assert set(train.rows.column_names) == {"prompt", "chosen", "rejected", "answer", "wrong_by"}
    assert train.origin == "lit-align/arithmetic[train]"


@pytest.mark.parametrize(
    ("content", "message"),
    [(None, "file does not exist"), ("", "file is empty")],
)
def test_unusable_files_name_the_file(tmp_path, content, message):
    path = tmp_path / "bad.jsonl"
    if content is not None:
        path.write_text(content)
    with pytest.raises(DataError, match=f"^{path}: {message}"):
        load_splits(DataSource(path=str(path)), Shape.SFT)


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (b'{"prompt": "a",', "is not valid JSON (Expecting property name enclosed in double quotes at column 16)"),
        (b'{"prompt": "caf\xe9"}', "is not valid UTF-8 (byte 0xe9 at column 16)"),
        (b'["a", "b"]', "must be a JSON object, got list"),
    ],
)
def test_a_line_that_cannot_be_read_becomes_a_marked_row_with_its_file_line_number(tmp_path, line, reason):
    path = tmp_path / "rows.jsonl"
    path.write_bytes(b'{"prompt": "ok"}\n\n' + line + b'\n{"prompt": "ok too"}\n')
    train, _ = load_splits(DataSource(path=str(path)), Shape.SFT)
    assert train.rows[BAD_ROW] == [None, reason, None]  # the blank line is not a row, as for datasets
    assert train.rows["prompt"] == ["ok", None, "ok too"]


def test_val_size_keeps_every_row_of_a_prompt_on_one_side(tmp_path):
    rows = [{"prompt": f"q{i}", "completion": f"a{i}-{j}"} for i in range(37) for j in range(4)]
    path = write_jsonl(tmp_path / "d.jsonl", rows)
    train, val = load_splits(DataSource(path=str(path), val_size=0.25), Shape.SFT, lambda row: row["prompt"])
    train_prompts, val_prompts = set(train.rows["prompt"]), set(val.rows["prompt"])
    assert not train_prompts & val_prompts and len(train_prompts | val_prompts) == 37
    assert len(val) % 4 == 0 and abs(len(val) - 37) <= 3  # whole groups, about a quarter of 148 rows
    # Row-wise (the previous behaviour) almost every validation prompt also appears in training:
    random_split = datasets.Dataset.from_list(rows).train_test_split(test_size=0.25, seed=0)
    assert len(set(random_split["train"]["prompt"]) & set(random_split["test"]["prompt"])) > 20


def test_val_size_that_leaves_no_training_row_is_refused(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [{"prompt": "same", "completion": f"a{j}"} for j in range(4)])
    with pytest.raises(DataError, match="val_size=0.5 leaves 0 training and 4 validation rows"):
        load_splits(DataSource(path=str(path), val_size=0.5), Shape.SFT, lambda row: row["prompt"])


@pytest.mark.parametrize("task", ["lit-align/arithmetic", "lit-align/word-problems"])
def test_an_embedded_task_refuses_a_split_it_does_not_have(task):
    from lit_align.errors import ConfigError

    with pytest.raises(ConfigError, match=r"^data.init_args.source.val_split: .* has the splits train, validation"):
        load_splits(DataSource(path=task, val_split="dev", num_rows=4), Shape.PROMPT)
