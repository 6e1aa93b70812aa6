"""``lit-align evaluate``: win rate, reward statistics, lengths, distinct-n, best-of-N and groups, on the tiny model."""

import json
import math

import pytest

from lit_align.commands.evaluate import evaluate
from lit_align.metrics import distinct_n
from lit_align.rewards import RewardModelScorer
from lit_align.roles.tokenizer import load_tokenizer
from tests.helpers import run_in_process, write_jsonl


def _source(rows=32, **extra):
    from lit_align.data import DataSource

    return DataSource(split="test", val_split=None, num_rows=rows, **extra)


def test_a_model_against_itself_ties_everywhere(capsys):
    greedy = evaluate(source=_source(), reference="lit-align/tiny-sft")
    assert (greedy["win_rate"], greedy["tie_rate"], greedy["compared"]) == (0.5, 1.0, 32)
    # Sampled with the same seed, the same model draws the same completions.
    sampled = evaluate(source=_source(16), reference="lit-align/tiny-sft", num_samples=2, temperature=1.0)
    assert (sampled["win_rate"], sampled["tie_rate"], sampled["compared"]) == (0.5, 1.0, 32)


def test_every_metric_is_the_hand_computation_from_the_written_rows(tmp_path, capsys):
    out = tmp_path / "rows.jsonl"
    result = evaluate(
        source=_source(24), scorer="tests.commands.scorers:digit_count", num_samples=3, temperature=1.0,
        group_field="answer", output=str(out), seed=3,
    )  # fmt: skip
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(lines) == 24 and all(len(line["completions"]) == 3 for line in lines)
    texts = [c for line in lines for c in line["completions"]]
    scores = [float(sum(ch.isdigit() for ch in t)) for t in texts]  # the reward, recomputed from the text
    assert [s for line in lines for s in line["scores"]] == scores
    mean = sum(scores) / len(scores)
    std = math.sqrt(sum((s - mean) ** 2 for s in scores) / (len(scores) - 1))
    assert result["reward_mean"] == pytest.approx(mean, abs=1e-4) and result["reward_std"] == pytest.approx(
        std, abs=1e-4
    )
    correct = [c.strip().startswith(line["answer"]) and not c.strip()[len(line["answer"]) :][:1].isdigit()
               for line in lines for c in line["completions"]]  # fmt: skip
    assert result["exact_match"] == pytest.approx(sum(correct) / len(correct), abs=1e-4)
    assert result["pass@3"] == pytest.approx(sum(any(line["correct"]) for line in lines) / 24, abs=1e-4)
    words = [t.split() for t in texts]
    assert result["length_words_mean"] == pytest.approx(sum(map(len, words)) / len(words), abs=1e-4)
    assert result["distinct_1_words"] == pytest.approx(distinct_n(words, 1), abs=1e-4)
    tokenizer = load_tokenizer("lit-align/tiny-sft")
    ids = [tokenizer(t, add_special_tokens=False).input_ids for t in texts]  # character tokens: decoding is lossless
    assert result["length_tokens_mean"] == pytest.approx(sum(map(len, ids)) / len(ids), abs=1e-4)
    assert result["distinct_2"] == pytest.approx(distinct_n(ids, 2), abs=1e-4)
    groups = result["groups"]
    assert sum(g["responses"] for g in groups.values()) == 72
    some = next(iter(groups))
    members = [line for line in lines if line["answer"] == some]
    group_scores = [s for line in members for s in line["scores"]]
    assert groups[some]["reward_mean"] == pytest.approx(sum(group_scores) / len(group_scores), abs=1e-4)


def test_best_of_n_with_the_verifier_is_pass_at_n_and_beats_greedy(capsys):
    result = evaluate(source=_source(64), num_samples=4, select="best")
    assert result["best_of_n"]["exact_match"] == result["pass@4"]  # a perfect selector finds any right answer
    assert result["greedy"]["exact_match"] < result["pass@4"]
    gain = result["best_of_n_gain"]["exact_match"]
    assert gain == pytest.approx(result["pass@4"] - result["greedy"]["exact_match"], abs=1e-4)


def test_a_reward_model_scores_and_selects(random_reward_model, tmp_path, capsys):
    out = tmp_path / "rows.jsonl"
    result = evaluate(
        source=_source(12), scorer=str(random_reward_model), num_samples=2, select="best", output=str(out)
    )
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    prompts = [line["prompt"] for line in lines for _ in range(2)]
    completions = [[{"role": "assistant", "content": c}] for line in lines for c in line["completions"]]
    expected = RewardModelScorer(str(random_reward_model))(prompts, completions)
    assert [s for line in lines for s in line["scores"]] == pytest.approx(expected, abs=1e-5)
    mean = sum(expected) / len(expected)
    assert result["reward_mean"] == pytest.approx(mean, abs=1e-4) and result["reward_std"] > 0
    assert [line["selected"] for line in lines] == [int(line["scores"][1] > line["scores"][0]) for line in lines]
    assert "exact_match" in result["best_of_n_gain"] and "reward_mean" in result["best_of_n_gain"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--select", "best"], "--select: best needs --num_samples > 1 and a --scorer to pick with"),
        (["--num_samples", "4", "--temperature", "0"], "--temperature: is 0: greedy decoding gives 4 identical"),
        (["--scorer", "tests.commands.scorers:never"], "--scorer: 'tests.commands.scorers:never' scored none of 8"),
        (["--answer_field", "nothing"], "--scorer: verifier needs answers, and lit-align/arithmetic[test] has no"),
    ],
)
def test_meaningless_settings_stop_with_one_line(args, message):
    result = run_in_process("evaluate", "--source.num_rows", "8", *args)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith(f"lit-align: error: {message}"), result.stderr[-500:]


def test_any_prompt_file_without_answers_with_a_reward_function(tmp_path, capsys):
    data = write_jsonl(
        tmp_path / "p.jsonl", [{"prompt": "12 + 3 = "}, {"prompt": [{"role": "user", "content": "5 * 5"}]}]
    )
    result = evaluate(source=_source(None, path=str(data)), scorer="tests.commands.scorers:digit_count")
    assert result["rows"] == 2 and "exact_match" not in result and result["reward_failures"] == 0
