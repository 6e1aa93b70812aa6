"""What a real BPE tokenizer and chat template break, checked on SmolLM2-135M-Instruct's.

SmolLM2's ChatML template injects a default system prompt when a conversation has none, ends every turn with
``<|im_end|>`` (its EOS, id 2, also its pad token) followed by a newline, and its BPE merges across a space.
"""

import torch

from lit_align.data.binary import BinaryDataModule
from lit_align.data.pairwise import PairwiseDataModule
from lit_align.data.prompt import PromptDataModule
from lit_align.data.sft import SFTDataModule
from lit_align.data.sources import DataSource
from lit_align.embedded import SMOLLM2
from lit_align.roles.models import ModelSpec, load_frozen
from lit_align.rollout import SamplingConfig, generate, stop_token_ids
from lit_align.types import IGNORE_INDEX
from tests.helpers import write_jsonl

SYSTEM = "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"


def _user(text):
    return [{"role": "user", "content": text}]


def _assistant(text):
    return [{"role": "assistant", "content": text}]


def _setup(cls, tmp_path, rows, **kwargs):
    dm = cls(tokenizer=SMOLLM2, source=DataSource(path=str(write_jsonl(tmp_path / "rows.jsonl", rows))), **kwargs)
    dm.setup("fit")
    return dm


def test_prompt_ids_are_the_generation_prompt_and_a_prefix_of_each_pair(tmp_path, smollm2_tokenizer):
    tok = smollm2_tokenizer
    rows = [{"prompt": _user("What is 12 + 7?"), "chosen": _assistant("19"), "rejected": _assistant("12 + 7 = 9")}]
    row = _setup(PairwiseDataModule, tmp_path, rows).rows["train"][0]
    prompt_text = tok.apply_chat_template(rows[0]["prompt"], tokenize=False, add_generation_prompt=True)
    assert row["prompt_ids"] == tok(prompt_text, add_special_tokens=False).input_ids  # what generation is given
    turn = "<|im_start|>user\nWhat is 12 + 7?<|im_end|>\n<|im_start|>assistant\n"
    assert tok.decode(row["prompt_ids"]) == SYSTEM + turn
    for key, answer in (("chosen_ids", "19"), ("rejected_ids", "12 + 7 = 9")):
        whole = tok.apply_chat_template(rows[0]["prompt"] + _assistant(answer), tokenize=False)
        assert tok.decode(row["prompt_ids"] + row[key]) == whole
        assert row[key][-2:] == tok("<|im_end|>\n", add_special_tokens=False).input_ids


def test_a_plain_text_boundary_is_tokenized_as_generation_sees_it(tmp_path, smollm2_tokenizer):
    """BPE merges "Answer: " + "yes" into "Answer:" + " yes"; lit-align tokenizes the prompt alone (as generation
    is given it) and the completion after it, so the prompt ids are exactly a prefix and the text is unchanged."""
    tok = smollm2_tokenizer
    rows = [{"prompt": "Is 12 + 7 = 19? Answer: ", "completion": "yes", "label": True}]
    joint = tok(rows[0]["prompt"] + rows[0]["completion"]).input_ids
    assert joint[: len(tok(rows[0]["prompt"]).input_ids)] != tok(rows[0]["prompt"]).input_ids  # the merge is real
    rows.append({"prompt": "Question: 1 + 1. Answer:", "completion": " 2", "label": False})
    items = _setup(BinaryDataModule, tmp_path, rows).rows["train"]
    by_prompt = {tok.decode(item["prompt_ids"]): item for item in items}
    for row in rows:
        item = by_prompt[row["prompt"]]
        assert item["prompt_ids"] == tok(row["prompt"]).input_ids
        text = row["prompt"] + row["completion"] + "<|im_end|>"
        assert tok.decode(item["prompt_ids"] + item["completion_ids"]) == text
        assert item["completion_ids"][-1] == tok.eos_token_id


def test_the_system_prompt_is_in_the_prompt_and_never_in_the_loss(tmp_path, smollm2_tokenizer):
    tok = smollm2_tokenizer
    talk = _user("What is 2 + 2?") + _assistant("4") + _user("And 3 + 3?") + _assistant("6")
    own_system = [{"role": "system", "content": "Answer with a number."}] + talk
    dm = _setup(SFTDataModule, tmp_path, [{"messages": talk}, {"messages": own_system}])
    injected, given = dm.rows["train"][0], dm.rows["train"][1]
    assert tok.decode(injected["input_ids"]).startswith(SYSTEM)
    assert tok.decode(given["input_ids"]).startswith("<|im_start|>system\nAnswer with a number.<|im_end|>\n")
    assert "You are a helpful" not in tok.decode(given["input_ids"])
    for row in (injected, given):
        trained = [t for t in row["labels"] if t != IGNORE_INDEX]
        assert tok.decode(trained) == "4<|im_end|>\n6<|im_end|>\n"  # both turns, each with its end-of-turn token
        system_end = row["input_ids"].index(tok.convert_tokens_to_ids("<|im_end|>"))
        assert all(label == IGNORE_INDEX for label in row["labels"][: system_end + 1])


def test_the_end_of_turn_token_stops_generation_and_the_mask_ends_with_it(tmp_path, smollm2_tokenizer):
    tok = smollm2_tokenizer
    dm = _setup(PromptDataModule, tmp_path, [{"prompt": "What is 2 + 2? Reply with one word."}], as_chat=True)
    batch = next(iter(dm.splits.loader("train", shuffle=False)))
    model = load_frozen(ModelSpec(name_or_path=SMOLLM2))
    stop = stop_token_ids(model, tok)
    assert stop == [tok.convert_tokens_to_ids("<|im_end|>")]
    rollout = generate(
        model, batch, SamplingConfig(temperature=0.0, max_new_tokens=40), pad_token_id=tok.pad_token_id, stop_ids=stop
    )
    ids, mask = rollout.completion_ids[0], rollout.completion_mask[0]
    ends = (ids == stop[0]).nonzero()
    assert len(ends) >= 1, tok.decode(ids)  # the instruct model ends its turn within 40 tokens
    end = int(ends[0])
    assert mask[: end + 1].all() and not mask[end + 1 :].any()  # the end-of-turn token counts, padding does not
    assert torch.equal(ids[end + 1 :], torch.full_like(ids[end + 1 :], tok.pad_token_id))


def test_step_ends_land_on_the_separator_and_match_the_written_solution(smollm2_tokenizer):
    """Process reward labels sit on each step's last separator token; on SmolLM2's BPE that token is the newline
    itself, and the steps tokenized one by one (training, ProcessRewardScorer) give the same ids as the solution
    written out whole (what the policy generated), so the PRM reads the tokens the generator wrote."""
    from lit_align.data.stepwise import prompt_ids, tokenize_steps

    tok = smollm2_tokenizer
    prompt, steps = _user("Solve 23 + 45 - 17, one step per line."), ["23+45=68", "68-17=51"]
    ids, ends = tokenize_steps(tok, prompt, steps, "\n")
    assert [tok.decode(ids[e]) for e in ends] == ["\n", "\n"]
    start = len(prompt_ids(tok, prompt))
    assert ids[start:] == tok("23+45=68\n68-17=51\n", add_special_tokens=False).input_ids
    assert tok.decode(ids[start : ends[0] + 1]) == "23+45=68\n"
    # A separator BPE merges with its neighbours is where the two would part: " ки" after a word, Math-Shepherd's tag.
    ids, ends = tokenize_steps(tok, prompt, ["Step 1: add", "Step 2: subtract"], " ки")
    assert tok.decode(ids[start : ends[0] + 1]) == "Step 1: add ки"


def test_per_step_ppo_rewards_land_on_the_tokens_that_end_each_step(smollm2_tokenizer):
    """PPO's ``prm_rewards`` maps each step's end (a character offset) to a sampled token: on SmolLM2's BPE, whose
    tokens hold several characters, the token that completes the step and its newline."""
    from lit_align.rewards.prm import ProcessRewardScorer, step_end_tokens

    tok = smollm2_tokenizer
    scorer = ProcessRewardScorer.__new__(ProcessRewardScorer)
    scorer.separator = "\n"
    text = "First, 23 + 45 = 68.\nThen 68 - 17 = 51.\nSo the answer is 51."
    ids = tok(text, add_special_tokens=False).input_ids + [tok.eos_token_id]
    ends = step_end_tokens(tok, ids, scorer.step_end_chars(text))
    prefixes = [tok.decode(ids[: t + 1], skip_special_tokens=True) for t in ends]
    assert prefixes == ["First, 23 + 45 = 68.\n", "First, 23 + 45 = 68.\nThen 68 - 17 = 51.\n", text]
