"""Tokenization through ``datasets.map``: cached by content, the same with worker processes, errors kept per row."""

import pytest

from lit_align.data import encoding
from lit_align.data.pairwise import PairwiseDataModule
from lit_align.data.prompt import PromptDataModule
from lit_align.data.sft import SFTDataModule
from lit_align.data.sources import DataSource
from lit_align.errors import DataError
from tests.helpers import write_jsonl


@pytest.fixture
def count_encoded_batches(monkeypatch):
    """Count the batches ``datasets.map`` really encodes (a cache hit encodes none)."""
    calls = []
    original = encoding._encode_batch

    def counting(batch, indices, **kwargs):
        calls.append(len(indices))
        return original(batch, indices, **kwargs)

    def start():
        monkeypatch.setattr(encoding, "_encode_batch", counting)
        return calls

    return start


def _sft(path, **kwargs):
    return SFTDataModule(source=DataSource(path=str(path)), **kwargs)


def test_a_second_setup_reads_the_cached_tokens_and_a_change_reencodes(tmp_path, count_encoded_batches):
    rows = [{"prompt": f"{i} + 1 =", "completion": str(i + 1)} for i in range(300)]
    path = write_jsonl(tmp_path / "sft.jsonl", rows)
    first = _sft(path)
    first.setup("fit")
    calls = count_encoded_batches()
    again = _sft(path, batch_size=3, num_workers=0)  # loader settings do not change the tokens
    again.setup("fit")
    assert calls == []
    assert list(again.rows["train"]) == list(first.rows["train"])
    _sft(path, max_length=12).setup("fit")  # another encoding setting
    assert sum(calls) == 300
    calls.clear()
    write_jsonl(path, rows[:-1] + [{"prompt": "changed", "completion": "row"}])  # same file, new content
    changed = _sft(path)
    changed.setup("fit")
    assert sum(calls) == 300
    assert changed.tokenizer.decode(changed.rows["train"][299]["input_ids"]) == "changedrow</s>"


def _pairs(n, bad):
    rows = [{"prompt": f"q{i}", "chosen": f"good {i}", "rejected": f"bad {i}"} for i in range(n)]
    for i in bad:
        rows[i]["rejected"] = rows[i]["chosen"]
    return rows


def test_worker_processes_give_the_same_rows_and_name_the_same_bad_rows(tmp_path):
    rows = _pairs(600, bad=[4, 399])  # rows 5 and 400 of the file; 600 rows: three batches per worker
    serial_path = write_jsonl(tmp_path / "serial.jsonl", rows)
    workers_path = write_jsonl(tmp_path / "workers.jsonl", rows)  # another file: no shared cache
    serial = PairwiseDataModule(source=DataSource(path=str(serial_path)), on_bad_row="skip")
    workers = PairwiseDataModule(source=DataSource(path=str(workers_path)), on_bad_row="skip", num_proc=2)
    with pytest.warns(UserWarning, match=r"600 rows: 2 skipped \(2 chosen and rejected are identical: rows 5, 400\)"):
        serial.setup("fit")
    with pytest.warns(UserWarning, match=r"600 rows: 2 skipped \(2 chosen and rejected are identical: rows 5, 400\)"):
        workers.setup("fit")
    assert len(workers.rows["train"]) == 598
    assert list(workers.rows["train"]) == list(serial.rows["train"])
    assert workers.rows["train"][4]["index"] == 4  # indices count the kept rows
    with pytest.raises(DataError, match=r"workers\.jsonl: row 5: field 'rejected': chosen and rejected are identical"):
        PairwiseDataModule(source=DataSource(path=str(workers_path)), num_proc=2).setup("fit")


def test_prompt_columns_keep_their_types(tmp_path):
    rows = [{"prompt": "2 + 3 =", "answer": 5, "meta": {"tags": ["a", "b"], "weight": 0.5}}]
    dm = PromptDataModule(source=DataSource(path=str(write_jsonl(tmp_path / "p.jsonl", rows))), as_chat=True)
    dm.setup("fit")
    row = dm.rows["train"][0]
    assert row["columns"] == {"answer": 5, "meta": {"tags": ["a", "b"], "weight": 0.5}}
    assert row["prompt"] == [{"role": "user", "content": "2 + 3 ="}]
    assert dm.tokenizer.decode(row["prompt_ids"]).endswith("2 + 3 =<|end|><|assistant|>")


def test_prompt_columns_that_json_cannot_hold_reach_reward_functions_unchanged(tmp_path):
    import datetime

    import datasets

    when = datetime.datetime(2026, 12, 1, 15, 30)
    path = tmp_path / "p.parquet"
    datasets.Dataset.from_dict({"prompt": ["2 + 3 ="], "when": [when]}).to_parquet(str(path))
    dm = PromptDataModule(source=DataSource(path=str(path)))
    dm.setup("fit")
    assert dm.rows["train"][0]["columns"] == {"when": when}


def test_encoded_rows_index_count_from_the_end_and_slice_like_a_list(tmp_path):
    rows = [{"prompt": f"{i} + 1 =", "answer": i + 1} for i in range(5)]
    dm = PromptDataModule(source=DataSource(path=str(write_jsonl(tmp_path / "p.jsonl", rows))))
    dm.setup("fit")
    encoded = dm.rows["train"]
    answers = [r["columns"]["answer"] for r in encoded]
    assert [r["columns"]["answer"] for r in encoded[1:4]] == answers[1:4]
    assert [r["columns"]["answer"] for r in encoded[::-2]] == answers[::-2]
    assert encoded[-1]["columns"]["answer"] == answers[-1] and encoded[-1]["index"] == len(encoded) - 1
    with pytest.raises(IndexError):
        encoded[len(encoded)]
