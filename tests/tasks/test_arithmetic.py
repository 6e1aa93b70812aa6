from lit_align.tasks import arithmetic
from lit_align.tasks.arithmetic import SPLITS, Shape, is_correct, make_rows, normalize_answer, solve, split_of


def _problem(row):
    return row["messages"][0]["content"] if "messages" in row else row["prompt"][0]["content"]


def test_splits_are_disjoint_and_cover_every_problem():
    problems = arithmetic._all_problems()
    by_split = {s: {p for p in problems if split_of(*p) == s} for s in SPLITS}
    assert sum(len(v) for v in by_split.values()) == len(problems)
    assert not by_split["train"] & by_split["test"]
    assert 0.03 < len(by_split["test"]) / len(problems) < 0.07


def test_rows_are_deterministic_and_seed_dependent():
    assert make_rows("sft", "train", 50, seed=1) == make_rows("sft", "train", 50, seed=1)
    assert make_rows("sft", "train", 50, seed=1) != make_rows("sft", "train", 50, seed=2)


def test_answers_are_correct_and_rejected_are_wrong():
    for row in make_rows(Shape.PAIRWISE, "test", 200):
        a, op, b = row["prompt"][0]["content"].replace("?", "").replace(".", "").replace("=", "").split()[-3:]
        assert row["answer"] == str(solve(int(a), op, int(b)))
        assert row["chosen"][0]["content"] == row["answer"]
        assert row["rejected"][0]["content"] != row["answer"]
        assert int(row["rejected"][0]["content"]) - int(row["answer"]) == row["wrong_by"]


def test_binary_labels_match_correctness_and_are_balanced():
    rows = make_rows(Shape.BINARY, "train", 400)
    assert all(r["label"] == is_correct(r["completion"][0]["content"], r["answer"]) for r in rows)
    assert 150 < sum(r["label"] for r in rows) < 250


def test_shapes_have_their_fields():
    assert set(make_rows("sft", "validation", 1)[0]) == {"messages", "answer"}
    assert set(make_rows("prompt", "validation", 1)[0]) == {"prompt", "answer"}
    assert set(make_rows("binary", "validation", 1)[0]) == {"prompt", "completion", "label", "answer"}


def test_normalize_answer_reads_leading_integer():
    assert normalize_answer(" -12 apples") == "-12"
    assert normalize_answer("85") == "85"
    assert normalize_answer("abc") == ""
    assert normalize_answer("-") == ""
    assert is_correct("157</s>", "157") and not is_correct("15", "157")


def test_judge_rows_work_out_the_units_digit_and_say_yes_exactly_when_the_shown_answer_is_right():
    rows = arithmetic.make_judge_rows("sft", "train", 600)
    judged = [r for r in rows if len(r["messages"]) == 4]
    assert 240 < len(judged) < 360  # half the rows
    for row in judged:
        question, shown = row["messages"][0]["content"], row["messages"][1]["content"]
        assert row["messages"][:3] == arithmetic.judge_conversation(question, shown)
        a, op, b = question.replace("?", "").replace(".", "").replace("=", "").split()[-3:]
        right = solve(int(a), op, int(b))
        verdict = row["messages"][3]["content"]
        # "<x><op><y>=<units digit of the result> vs <last digit shown>: yes|no", the digit worked out by hand
        x, y, digit = verdict.split(" vs ")[0].replace(op, " ", 1).replace("=", " ").split()
        assert int(digit) == abs(right) % 10 and {int(x), int(y)} <= {int(a) % 10, int(b) % 10, int(b)}
        assert verdict.endswith(f" vs {shown[-1]}: {'yes' if shown == str(right) else 'no'}")
        assert row["answer"] == verdict.split()[-1]
    assert 0.35 < sum(r["answer"] == "yes" for r in judged) / len(judged) < 0.65
    plain = [r for r in rows if r not in judged]
    assert all(is_correct(r["messages"][1]["content"], r["answer"]) for r in plain)
    # Without judge rows the task's rows are unchanged (every figure measured on them stays valid).
    assert make_rows("sft", "train", 200) == make_rows("sft", "train", 200, judge_share=0.0)
