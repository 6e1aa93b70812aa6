"""Built-in rewards, YAML-style reward specs, weighting, None handling and failing rewards."""

import math

import pytest

from lit_align.errors import LitAlignError
from lit_align.rewards import RewardSet, RewardSpec, arithmetic_answer, final_number, length_penalty, regex_format

CHAT = [{"role": "assistant", "content": "42"}]


def test_builtin_rewards():
    assert arithmetic_answer(["p"] * 3, ["42", CHAT, "41"], answer=["42", "42", "42"]) == [1.0, 1.0, 0.0]
    got = final_number(["p"] * 4, ["so 1,234 total", "answer: 7.0", "none", "5"], answer=["#### 1234", "7", "3", "x"])
    assert got == [1.0, 1.0, 0.0, None]
    assert regex_format(["p"] * 2, ["<a>1</a>", "1"], pattern=r"<a>\d+</a>") == [1.0, 0.0]
    assert length_penalty(["p"] * 2, ["abcd", "abcdef"], max_chars=4, scale=2.0) == [0.0, -1.0]


def _bad_on_second(prompts, completions, **_):
    if "boom" in completions:
        raise RuntimeError("reward backend down")
    return [1.0] * len(completions)


def _none_first(prompts, completions, **_):
    return [None] + [0.5] * (len(completions) - 1)


def test_weighted_total_leaves_none_out():
    rewards = RewardSet(
        [
            RewardSpec("lit_align.rewards.arithmetic_answer", weight=2.0),
            {"function": "tests.rewards.test_rewards:_none_first", "weight": 1.0, "name": "partial"},
        ]
    )
    scores = rewards(["p", "p"], ["42", "1"], {"answer": ["42", "42"]})
    assert scores.total.tolist() == [2.0, 0.5]  # 2 * 1 + (None left out); 2 * 0 + 0.5
    assert math.isnan(scores.per_reward["partial"][0].item())


def test_raising_reward_names_reward_and_sample():
    rewards = RewardSet([RewardSpec("tests.rewards.test_rewards._bad_on_second")], on_error="raise")
    with pytest.raises(LitAlignError, match=r"reward '_bad_on_second' failed on sample 1 .*'boom'.*backend down"):
        rewards(["p", "q"], ["ok", "boom"], {})


def test_raising_reward_scored_none_and_counted():
    rewards = RewardSet([RewardSpec("tests.rewards.test_rewards._bad_on_second")], on_error="none")
    with pytest.warns(UserWarning, match="failed on sample 1"):
        scores = rewards(["p", "q", "r"], ["ok", "boom", "ok"], {})
    assert (
        scores.total[0].item() == 1.0 and math.isnan(scores.total[1].item()) and scores.failures["_bad_on_second"] == 1
    )


def test_bad_specs_are_clear_errors():
    with pytest.raises(LitAlignError, match=r"rewards\[0\].function: cannot import 'no.such.module'"):
        RewardSet([RewardSpec("no.such.module")])
    with pytest.raises(LitAlignError, match="share a name"):
        RewardSet([RewardSpec("lit_align.rewards.arithmetic_answer")] * 2)
    with pytest.raises(LitAlignError, match="at least one"):
        RewardSet([])


def test_rewards_are_called_by_keyword_like_trl():
    rewards = RewardSet(
        [
            RewardSpec("tests.rewards.trl_style.brevity"),
            RewardSpec("tests.rewards.trl_style.token_count"),
            RewardSpec("tests.rewards.trl_style.named_only"),
        ]
    )
    scores = rewards(["p", "q"], ["42", "7"], {"answer": ["42", "8"], "source": ["x", "y"]}, [[5, 6, 2], [9]])
    assert scores.per_reward["brevity"].tolist() == [-2.0, -1.0]
    assert scores.per_reward["token_count"].tolist() == [3.0, 1.0]
    assert scores.per_reward["named_only"].tolist() == [1.0, 0.0]  # 'source' not given to it: no TypeError
    assert scores.total.tolist() == [-2.0 + 3.0 + 1.0, -1.0 + 1.0 + 0.0]


def test_a_weight_of_zero_logs_a_reward_without_optimising_it():
    import math

    import pytest

    from lit_align.errors import LitAlignError
    from lit_align.rewards import RewardSet, RewardSpec

    rewards = RewardSet(
        [RewardSpec("lit_align.rewards.length_penalty", kwargs={"max_chars": 1}), RewardSpec(
            "lit_align.rewards.arithmetic_answer", weight=0.0)]
    )  # fmt: skip
    scores = rewards(["p", "p"], ["12", "3"], {"answer": ["12", "12"]})
    assert scores.per_reward["arithmetic_answer"].tolist() == [1.0, 0.0]  # logged
    assert scores.total.tolist() == scores.per_reward["length_penalty"].tolist()  # not in the total
    with pytest.raises(LitAlignError, match="every weight is 0"):
        RewardSet([RewardSpec("lit_align.rewards.arithmetic_answer", weight=0.0)])
    with pytest.raises(LitAlignError, match=r"rewards\[0\].weight: must be a finite number, got nan"):
        RewardSet([RewardSpec("lit_align.rewards.arithmetic_answer", weight=math.nan)])
