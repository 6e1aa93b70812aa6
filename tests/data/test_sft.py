import pytest

from lit_align.data.sft import SFTDataModule
from lit_align.data.sources import DataSource
from lit_align.errors import DataError
from lit_align.types import IGNORE_INDEX
from tests.helpers import write_jsonl


def _module(tmp_path, rows, **kwargs):
    path = write_jsonl(tmp_path / "sft.jsonl", rows)
    return SFTDataModule(tokenizer="lit-align/tiny-sft", source=DataSource(path=str(path)), **kwargs)


def test_chat_rows_use_template_and_train_on_completion_only(tmp_path, tiny_tokenizer):
    messages = [{"role": "user", "content": "What is 2 + 3?"}, {"role": "assistant", "content": "5"}]
    dm = _module(tmp_path, [{"messages": messages}])
    dm.setup("fit")
    row = dm.rows["train"][0]
    assert tiny_tokenizer.decode(row["input_ids"]) == "<|user|>What is 2 + 3?<|end|><|assistant|>5</s>"
    counted = [t for t in row["labels"] if t != IGNORE_INDEX]
    assert tiny_tokenizer.decode(counted) == "5</s>"
    assert row["labels"][: -len(counted)] == [IGNORE_INDEX] * (len(row["labels"]) - len(counted))


def test_plain_rows_get_eos_and_all_token_option(tmp_path, tiny_tokenizer):
    dm = _module(tmp_path, [{"prompt": "2+3=", "completion": "5"}], completion_only_loss=False)
    dm.setup("fit")
    row = dm.rows["train"][0]
    assert row["input_ids"][-1] == tiny_tokenizer.eos_token_id
    assert row["labels"] == row["input_ids"]


def test_truncation_cuts_end_and_a_prompt_without_room_is_an_error_or_a_counted_skip(tmp_path):
    rows = [{"prompt": "short", "completion": "x" * 50}, {"prompt": "y" * 40, "completion": "z"}]
    with pytest.raises(DataError, match=r"row 2: field 'prompt': the prompt \(\d+ tokens\) leaves no room"):
        _module(tmp_path, rows, max_length=20).setup("fit")
    dm = _module(tmp_path, rows, max_length=20, on_bad_row="skip")
    with pytest.warns(
        UserWarning, match=r"2 rows: 1 truncated, 1 skipped \(1 the prompt .* leaves no room .*: row 2\)"
    ):
        dm.setup("fit")
    assert len(dm.rows["train"]) == 1 and len(dm.rows["train"][0]["input_ids"]) == 20
    assert dm.stats["train"]["truncated"] == 1 and dm.stats["train"]["skipped"] == 1


def test_batches_are_dynamically_padded(tmp_path, tiny_tokenizer):
    rows = [{"prompt": "a", "completion": "b"}, {"prompt": "a longer prompt", "completion": "b"}]
    dm = _module(tmp_path, rows, batch_size=2)
    dm.setup("fit")
    dm.rows["train"] = sorted(dm.rows["train"], key=lambda r: len(r["input_ids"]))
    batch = next(iter(dm.splits.loader("train", shuffle=False)))
    assert batch["input_ids"].shape == (2, 17)  # 15 prompt chars + "b" + EOS
    assert batch["attention_mask"][0].tolist() == [1] * 3 + [0] * 14
    assert batch["input_ids"][0, 3:].eq(tiny_tokenizer.pad_token_id).all()
    assert batch["labels"][0, 3:].eq(IGNORE_INDEX).all()


@pytest.mark.parametrize(
    ("row", "field", "message"),
    [
        ({"prompt": "a"}, "completion", "is missing"),
        ({"prompt": "a", "completion": "   "}, "completion", "is empty"),
        ({"prompt": 3, "completion": "b"}, "prompt", "must be a string, got int"),
        (
            {"messages": [{"role": "user", "content": "hi"}]},
            "messages",
            "the last message must come from the assistant",
        ),
        ({"messages": []}, "messages", "must be a non-empty list of messages"),
    ],
)
def test_bad_rows_name_file_row_and_field(tmp_path, row, field, message):
    good = {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}
    rows = [good, row] if "messages" in row else [{"prompt": "q", "completion": "a"}, row]
    dm = _module(tmp_path, rows)
    with pytest.raises(DataError) as info:
        dm.setup("fit")
    assert str(info.value) == f"{tmp_path / 'sft.jsonl'}: row 2: field '{field}': {message}"


TWO_TURNS = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "a"},
    {"role": "assistant", "content": "bc"},
    {"role": "user", "content": "d"},
    {"role": "assistant", "content": "efg"},
]


def _labelled_turns(tokenizer, row) -> list[str]:
    """The labelled tokens of a row, decoded, one string per run of consecutive labelled tokens (one per turn)."""
    runs, current = [], []
    for label in row["labels"]:
        if label != IGNORE_INDEX:
            current.append(label)
        elif current:
            runs, current = [*runs, current], []
    runs += [current] if current else []
    return [tokenizer.decode(r) for r in runs]


@pytest.mark.parametrize(("turns", "expected", "count"), [("all", ["bc</s>", "efg</s>"], 7), ("last", ["efg</s>"], 4)])
def test_multi_turn_conversations_train_every_assistant_turn(tmp_path, tiny_tokenizer, turns, expected, count):
    dm = _module(tmp_path, [{"messages": TWO_TURNS}], assistant_turns=turns)
    dm.setup("fit")
    row = dm.rows["train"][0]
    assert tiny_tokenizer.decode(row["input_ids"]) == tiny_tokenizer.apply_chat_template(TWO_TURNS, tokenize=False)
    assert _labelled_turns(tiny_tokenizer, row) == expected
    assert sum(label != IGNORE_INDEX for label in row["labels"]) == count  # characters + EOS of the trained turns


def test_a_one_turn_conversation_tokenizes_as_prompt_and_completion(tmp_path, tiny_tokenizer):
    from lit_align.data.templates import tokenize_conversation, tokenize_prompt_completion

    messages = TWO_TURNS[:3]
    prompt_ids, completion_ids = tokenize_prompt_completion(tiny_tokenizer, messages[:-1], messages[-1:])
    ids, trained = tokenize_conversation(tiny_tokenizer, messages)
    assert ids == prompt_ids + completion_ids and trained == [False] * len(prompt_ids) + [True] * len(completion_ids)


def test_text_rows_train_on_every_token(tmp_path, tiny_tokenizer):
    dm = _module(tmp_path, [{"text": "12 + 7 = 19"}])
    dm.setup("fit")
    row = dm.rows["train"][0]
    assert row["labels"] == row["input_ids"] and tiny_tokenizer.decode(row["input_ids"]) == "12 + 7 = 19</s>"


def test_content_parts_are_flattened_to_their_text(tmp_path):
    parts = [{"role": "user", "content": [{"type": "text", "text": "What is "}, {"type": "text", "text": "2 + 3?"}]}]
    answer = [{"role": "assistant", "content": [{"type": "text", "text": "5"}]}]
    plain = [{"role": "user", "content": "What is 2 + 3?"}, {"role": "assistant", "content": "5"}]
    ids = []
    for name, messages in (("parts", parts + answer), ("plain", plain)):  # one file each: one format per column
        (tmp_path / name).mkdir()
        dm = _module(tmp_path / name, [{"messages": messages}])
        dm.setup("fit")
        ids.append(dm.rows["train"][0]["input_ids"])
    assert ids[0] == ids[1]


def test_an_image_part_is_refused_with_row_and_field(tmp_path):
    image = [{"role": "user", "content": [{"type": "image", "url": "x.png"}]}, {"role": "assistant", "content": "a"}]
    with pytest.raises(DataError) as info:
        _module(tmp_path, [{"messages": image}]).setup("fit")
    assert str(info.value).endswith(
        "row 1: field 'messages': message 0 has a content part of type 'image'; only text parts are supported"
    )


def test_the_chat_template_can_be_overridden_by_name_file_or_text(tmp_path, tiny_tokenizer):
    messages = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]
    (tmp_path / "t.jinja").write_text("{% for m in messages %}[{{ m['role'] }}]{{ m['content'] }}{% endfor %}")
    for value, expected in [
        ("chatml", "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\nyo<|im_end|>\n"),
        (str(tmp_path / "t.jinja"), "[user]hi[assistant]yo"),
        ("{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}", "user: hi\nassistant: yo\n"),
    ]:
        dm = _module(tmp_path, [{"messages": messages}], chat_template=value)
        dm.setup("fit")
        assert tiny_tokenizer.decode(dm.rows["train"][0]["input_ids"]) == expected, value
