"""The embedded constitution on hand-built cases: each principle flags exactly what it should."""

import pytest

from lit_align.rewards.constitution import ArithmeticConstitution
from lit_align.tasks import arithmetic

ADD, SUB, MUL = "What is 23 + 45?", "Compute 23 - 45.", "37 * 6 = ?"


@pytest.mark.parametrize(
    ("prompt", "answer", "broken"),
    [
        (ADD, "68", []),
        (ADD, "68 apples", ["format"]),
        (ADD, "-68", ["sign"]),
        (ADD, "67", ["units_digit"]),
        (ADD, "88", ["size"]),  # 88 > 20 + 40 + 18
        (ADD, "78", []),  # a tens-digit error within range: not caught
        (ADD, "-87", ["sign", "units_digit", "size"]),
        (SUB, "-22", []),
        (SUB, "22", ["sign"]),
        (SUB, "-23", ["units_digit"]),
        (SUB, "-42", ["size"]),  # |20 - 40| + 9 = 29 at most
        (MUL, "222", []),
        (MUL, "221", ["units_digit"]),
        (MUL, "282", ["size"]),  # (30 + 9) * 6 = 234 at most
    ],
)
def test_each_principle_flags_exactly_its_violations(prompt, answer, broken):
    assert ArithmeticConstitution().violations(prompt, answer) == broken


def test_scores_order_by_priority_and_revisions_fix_what_they_can():
    c = ArithmeticConstitution()
    # weights 8 (format), 4 (sign), 2 (units digit), 1 (size)
    assert [c.score(ADD, a) for a in ("68", "88", "67", "-68", "-87", "x")] == [0, -1, -2, -4, -7, -8]
    assert c.score(ADD, "67") < c.score(ADD, "88")  # a units slip is worse than a size error
    assert c.score(ADD, "-68") < c.score(ADD, "67")  # a wrong sign is worse than a units slip
    assert c.revise(ADD, "67") == "68" and c.revise(ADD, "68 apples") == "68" and c.revise(SUB, "22") == "-22"
    assert c.revise(SUB, "21") == "-22"  # sign, then units digit
    assert c.revise(ADD, "88") == "88"  # size has no revision


def test_every_right_answer_of_the_task_keeps_every_principle():
    c = ArithmeticConstitution()
    rows = arithmetic.make_rows("prompt", "train", 3000, seed=0)
    assert all(c.violations(r["prompt"][0]["content"], r["answer"]) == [] for r in rows)
