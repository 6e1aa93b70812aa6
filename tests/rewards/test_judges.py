"""Judges: log-probability, generative (template, regex, averaged samples) and pairwise (both orders)."""

import json
import math
import re

import pytest
import torch

from lit_align.errors import ConfigError
from lit_align.rewards.combine import RewardSet, RewardSpec
from lit_align.rewards.judges import (
    GenerativeJudge,
    LogProbJudge,
    PairwiseJudge,
    expected_label_value,
    fill,
    read_score,
)
from lit_align.roles.tokenizer import load_tokenizer
from lit_align.rollout.sampling import SamplingConfig
from lit_align.rollout.texts import complete

TINY = "lit-align/tiny-sft"
PROMPTS = [[{"role": "user", "content": "71 + 48 = ?"}], [{"role": "user", "content": "What is 73 - 36?"}]]


def test_templates_are_filled_by_replacement_and_scores_read_by_regex():
    assert fill("Q: {prompt} A: {response} {other}", prompt="1+1", response="{prompt}") == "Q: 1+1 A: {prompt} {other}"
    number, word = re.compile(r"Score: (\d)"), re.compile(r"\b(yes|no)\b")
    assert read_score(number, "fine. Score: 4", None) == 4.0
    assert read_score(number, "I cannot grade this", None) is None
    assert read_score(word, "Yes? no.", {"yes": 1.0, "no": 0.0}) == 0.0  # case-sensitive pattern: "no" matched
    assert read_score(word, "maybe", {"yes": 1.0, "no": 0.0}) is None


def test_log_prob_judge_is_the_mean_answer_token_log_prob_by_hand():
    judge = LogProbJudge(TINY)
    completions = [[{"role": "assistant", "content": "119"}], [{"role": "assistant", "content": "12"}]]
    scores = judge(PROMPTS, completions)
    summed = LogProbJudge(TINY, reduce="sum")(PROMPTS, completions)
    tokenizer, model = load_tokenizer(TINY), judge.judge.model
    for prompt, completion, score, total in zip(PROMPTS, completions, scores, summed, strict=True):

        def ids(text):
            return tokenizer(text, add_special_tokens=False).input_ids

        prompt_ids = ids(tokenizer.apply_chat_template(prompt, add_generation_prompt=True, tokenize=False))
        whole = ids(tokenizer.apply_chat_template(prompt + completion, tokenize=False))
        answer = whole[len(prompt_ids) :]
        with torch.no_grad():
            logp = torch.log_softmax(model(torch.tensor([whole])).logits[0].double(), -1)
        by_hand = [logp[len(prompt_ids) - 1 + t, token].item() for t, token in enumerate(answer)]
        assert total == pytest.approx(sum(by_hand), abs=1e-4)
        assert score == pytest.approx(sum(by_hand) / len(by_hand), abs=1e-5)
    assert scores[0] > scores[1]  # tiny-sft believes 71 + 48 = 119 more than 73 - 36 = 12


def test_generative_judge_reads_the_models_own_verdict_and_counts_unreadable_ones():
    # The template is the question itself, so tiny-sft's "verdict" is its answer and the pattern reads that number.
    judge = GenerativeJudge(TINY, template="{prompt}{response}", pattern=r"(-?\d+)", max_new_tokens=8)
    completions = ["", ""]
    expected = [int(row[0].text) for row in complete(judge.judge.model, judge.judge.tokenizer, PROMPTS,
                                                     SamplingConfig(temperature=0.0, max_new_tokens=8))]  # fmt: skip
    assert judge(PROMPTS, completions) == [float(e) for e in expected]
    kwargs = {"path": TINY, "template": "{prompt}{response}", "pattern": r"Score: (\d)", "max_new_tokens": 4}
    spec = RewardSpec("lit_align.rewards.judges:GenerativeJudge", name="judge", kwargs=kwargs)
    unreadable = RewardSet([spec], on_error="none")
    result = unreadable(PROMPTS, ["", ""], {}, [[], []])
    assert result.total.isnan().all() and sum(result.failures.values()) == 2


def test_generative_judge_averages_sampled_verdicts():
    judge = GenerativeJudge(TINY, template="{prompt}{response}", pattern=r"(-?\d+)", num_samples=4, max_new_tokens=8)
    verdicts = judge.verdicts(PROMPTS, ["", ""])
    scores = judge(PROMPTS, ["", ""])
    for row, score in zip(verdicts, scores, strict=True):
        numbers = [float(m.group(1)) for m in (re.search(r"(-?\d+)", v) for v in row) if m]
        assert len(row) == 4 and score == pytest.approx(sum(numbers) / len(numbers))


class _Scripted(PairwiseJudge):
    """Verdicts given by the test, so the order logic is checked exactly (the model path is GenerativeJudge's)."""

    def __init__(self, straight, swapped):
        self.pattern, self.labels = re.compile(r"([12])"), {"1": 1.0, "2": 0.0}
        self.script = (straight, swapped)

    def verdicts(self, prompts, firsts, seconds):
        return self.script


def test_pairwise_judge_cancels_position_bias():
    judge = _Scripted(["1", "1", "2", "?", "?"], ["2", "1", "1", "2", "?"])
    # consistent for A; always the first position (bias: a tie); consistent for B; only the swapped order readable
    assert judge.compare([""] * 5, [""] * 5, [""] * 5) == [1.0, 0.5, 0.0, 1.0, None]


class _ByLength(PairwiseJudge):
    """A judge that prefers the longer answer (0.5 for equal lengths, None when one of them is "?")."""

    def __init__(self):
        self.asked = []

    def compare(self, prompts, firsts, seconds):
        self.asked += list(zip(prompts, firsts, seconds, strict=True))
        return [None if "?" in (a, b) else 0.5 + 0.5 * ((len(a) > len(b)) - (len(a) < len(b)))
                for a, b in zip(firsts, seconds, strict=True)]  # fmt: skip


def test_pairwise_judge_as_a_scorer_ranks_each_prompts_answers_by_a_round_robin():
    judge = _ByLength()
    prompts = ["p", "q", "p", "p", "q", "p", "r"]
    answers = ["aa", "x", "b", "ccc", "x", "b", "?"]
    scores = judge(prompts, answers)
    # p's distinct answers aa, b, ccc: aa beats b and loses to ccc (1/2), b loses both (0), ccc wins both (1);
    # the repeated "b" is judged once; q has one distinct answer (a tie, 0.5); r's only answer is alone too.
    assert scores == [0.5, 0.5, 0.0, 1.0, 0.5, 0.0, 0.5]
    assert len(judge.asked) == 3 and {p for p, _, _ in judge.asked} == {"p"}
    unreadable = judge(["p", "p"], ["?", "long"])
    assert unreadable == [None, None]


def test_bad_judge_settings_name_their_key():
    with pytest.raises(ConfigError, match=r"GenerativeJudge.template\[1\]"):
        GenerativeJudge(TINY, template=[{"role": "user", "content": "{prompt}"}, {"role": "assistant"}])
    with pytest.raises(ConfigError, match="GenerativeJudge.template"):
        GenerativeJudge(TINY, template="no answer here")
    with pytest.raises(ConfigError, match="GenerativeJudge.temperature"):
        GenerativeJudge(TINY, num_samples=3, temperature=0.0)
    with pytest.raises(ConfigError, match=r"LogProbJudge.path.*\$model"):
        LogProbJudge("$model")
    with pytest.raises(ConfigError, match="GenerativeJudge.labels"):
        GenerativeJudge(TINY, score_by="probabilities")


def test_expected_label_value_by_hand():
    # Two labels yes=1, no=0 with log-probs log 0.3 and log 0.1: P(yes | a label) = 0.3 / 0.4 = 0.75.
    logps = torch.tensor([[math.log(0.3), math.log(0.1)], [math.log(0.2), math.log(0.2)]])
    values = torch.tensor([1.0, 0.0])
    assert expected_label_value(logps, values).tolist() == pytest.approx([0.75, 0.5])
    # Three labels 0, 5, 10 with probabilities 0.1, 0.2, 0.2 (renormalised 0.2, 0.4, 0.4): 0 + 2 + 4 = 6.
    three = torch.tensor([[math.log(0.1), math.log(0.2), math.log(0.2)]])
    assert expected_label_value(three, torch.tensor([0.0, 5.0, 10.0])).item() == pytest.approx(6.0)


def test_judge_by_label_probabilities_equals_a_direct_forward():
    # A conversation template: the answer in the assistant's turn, then the follow-up question (the embedded task's).
    template = [
        {"role": "user", "content": "{prompt}"},
        {"role": "assistant", "content": "{response}"},
        {"role": "user", "content": "Is that right? yes or no"},
    ]
    judge = GenerativeJudge(TINY, template=template, labels={"Yes": 1.0, "no": 0.0}, score_by="probabilities")
    completions = ["119", "12", "119"]  # the third repeats the first: scored once, the same value
    prompts = [*PROMPTS, PROMPTS[0]]
    scores = judge(prompts, completions)
    tokenizer, model = load_tokenizer(TINY), judge.judge.model

    def ids(messages, **kwargs):
        return tokenizer(tokenizer.apply_chat_template(messages, tokenize=False, **kwargs),
                         add_special_tokens=False).input_ids  # fmt: skip

    def verdict_logp(conversation, label):
        prompt_ids = ids(conversation, add_generation_prompt=True)
        whole = ids([*conversation, {"role": "assistant", "content": label}])
        with torch.no_grad():
            logp = torch.log_softmax(model(torch.tensor([whole])).logits[0].double(), -1)
        return sum(logp[t - 1, whole[t]].item() for t in range(len(prompt_ids), len(whole)))

    for prompt, completion, score in zip(prompts, completions, scores, strict=True):
        conversation = [prompt[-1], {"role": "assistant", "content": completion}, template[2]]
        yes, no = verdict_logp(conversation, "yes"), verdict_logp(conversation, "no")  # labels match in lower case
        assert score == pytest.approx(math.exp(yes) / (math.exp(yes) + math.exp(no)), abs=1e-5)
    assert scores[0] == scores[2]


def test_greedy_verdicts_of_repeated_questions_are_computed_once_and_equal_one_by_one():
    judge = GenerativeJudge(TINY, template="{prompt}{response}", pattern=r"(-?\d+)", max_new_tokens=8)
    prompts = [PROMPTS[0], PROMPTS[1], PROMPTS[0]]
    together = judge.verdicts(prompts, ["", "", ""])
    assert together == [judge.verdicts([p], [""])[0] for p in prompts] and together[0] == together[2]


def test_a_judge_can_be_the_generating_model_in_generate(tmp_path, capsys):
    from lit_align.commands.generate import generate
    from lit_align.data import DataSource

    out = tmp_path / "pairs.jsonl"
    source = DataSource(split="train", val_split=None, test_split=None, num_rows=8)
    judge = "lit_align.rewards.judges:LogProbJudge"
    summary = generate(source=source, output=str(out), num_samples=3, scorer=judge, scorer_kwargs={"path": "$model"})
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert summary["rows"] == len(rows) > 0 and all(r["chosen_score"] > r["rejected_score"] for r in rows)
    assert all(r["chosen_score"] <= 0 for r in rows)  # mean log-probabilities
