"""A constitution an instruct model applies: critiques read as P(yes), revisions generated, priorities kept.

The tiny model's verdicts mean nothing; these tests check the mechanics against direct forwards and generation.
"""

import json
import math

import pytest
import torch

from lit_align.errors import ConfigError
from lit_align.rewards.model_constitution import ModelConstitution
from lit_align.rollout.sampling import SamplingConfig
from lit_align.rollout.texts import complete

TINY = "lit-align/tiny-sft"
PRINCIPLES = [{"name": "number", "principle": "One number"}, {"name": "short", "principle": "Short", "revise": False}]
SHORT = {"critique": "{principle}? {prompt} {response}", "revision": "{principle}: {prompt} {response}"}
CASES = [("What is 23 + 45?", "68"), ("What is 23 + 45?", "67 apples"), ("Compute 9 * 8.", "-72")]


@pytest.fixture(scope="module")
def constitution():
    return ModelConstitution(TINY, PRINCIPLES, max_new_tokens=6, **SHORT)


def _p_yes(constitution, text):
    """P(yes) / (P(yes) + P(no)) of the verdict after ``text`` as a user message, by a direct forward."""
    tokenizer, model = constitution.model.tokenizer, constitution.model.model
    user = [{"role": "user", "content": text}]

    def ids(messages, **kwargs):
        return tokenizer(tokenizer.apply_chat_template(messages, tokenize=False, **kwargs),
                         add_special_tokens=False).input_ids  # fmt: skip

    def logp(label):
        start, whole = len(ids(user, add_generation_prompt=True)), ids([*user, {"role": "assistant", "content": label}])
        with torch.no_grad():
            logps = torch.log_softmax(model(torch.tensor([whole])).logits[0].double(), -1)
        return sum(logps[t - 1, whole[t]].item() for t in range(start, len(whole)))

    yes, no = math.exp(logp("yes")), math.exp(logp("no"))
    return yes / (yes + no)


def test_critiques_are_the_models_yes_probability_and_scores_follow_priority(constitution):
    scores = constitution([[{"role": "user", "content": p}] for p, _ in CASES], [a for _, a in CASES])
    for (prompt, answer), score in zip(CASES, scores, strict=True):
        kept = [_p_yes(constitution, f"{text}? {prompt} {answer}") >= 0.5 for text in ("One number", "Short")]
        expected = [name for name, k in zip(("number", "short"), kept, strict=True) if not k]
        assert constitution.violations(prompt, answer) == expected
        assert score == -(2.0 * (not kept[0]) + 1.0 * (not kept[1]))  # weights 2 and 1: the first matters most
    assert len(constitution.verdicts) == 2 * len(CASES)  # batched once, remembered for the pairs' columns


def test_one_by_one_critiques_equal_the_batched_ones(constitution):
    alone = ModelConstitution(TINY, PRINCIPLES, **SHORT)
    assert [alone.violations(p, a) for p, a in CASES] == [constitution.violations(p, a) for p, a in CASES]


def test_revisions_are_the_models_greedy_reply_and_only_where_allowed(constitution):
    prompt, answer = CASES[1]
    asked = [[{"role": "user", "content": f"One number: {prompt} {answer}"}]]
    reply = complete(constitution.model.model, constitution.model.tokenizer, asked,
                     SamplingConfig(temperature=0.0, max_new_tokens=6))[0][0].text.strip()  # fmt: skip
    assert constitution.principles[0].revise(prompt, answer) == reply
    assert constitution.principles[1].revise is None  # "revise": false: only checked


def test_cai_pairs_with_the_generating_model_as_constitution(tmp_path, capsys):
    from lit_align.commands.generate import generate
    from lit_align.data import DataSource

    out = tmp_path / "pairs.jsonl"
    kwargs = {"path": "$model", "principles": PRINCIPLES, "max_new_tokens": 6, **SHORT}
    source = DataSource(split="train", val_split=None, test_split=None, num_rows=6)
    generate(source=source, output=str(out), mode="cai-pairs", num_samples=4, scorer_kwargs=kwargs,
             scorer="lit_align.rewards.model_constitution:ModelConstitution")  # fmt: skip
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    weights = {"number": 2.0, "short": 1.0}
    for row in rows:
        assert row["chosen_score"] == -sum(weights[v] for v in row["chosen_violations"])
        assert row["rejected_score"] == -sum(weights[v] for v in row["rejected_violations"])
        assert row["chosen_score"] > row["rejected_score"]


def test_bad_constitutions_name_their_key():
    with pytest.raises(ConfigError, match=r"principles\[0\]"):
        ModelConstitution(TINY, [{"name": "x"}])
    with pytest.raises(ConfigError, match="ModelConstitution.critique"):
        ModelConstitution(TINY, PRINCIPLES, critique="{response} only")
    with pytest.raises(ConfigError, match="ModelConstitution.principles"):
        ModelConstitution(TINY, [])
