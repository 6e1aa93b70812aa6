"""The embedded multi-step task: hand-built chains, their step labels and the rows of each shape."""

import pytest

from lit_align.tasks import chains


def test_steps_and_injected_errors_by_hand():
    numbers, ops = (23, 45, 17), ("+", "-")
    assert chains.steps(numbers, ops) == ["23+45=68", "68-17=51"]
    assert chains.solve(numbers, ops) == 51
    # An error at step 0 carries on: the next step continues from the wrong value, computed correctly.
    assert chains.steps(numbers, ops, error_at=0, slip=1) == ["23+45=69", "69-17=52"]
    assert chains.steps((10, 30, 5, 2), ("-", "+", "-"), error_at=2, slip=-10) == ["10-30=-20", "-20+5=-15",
                                                                                  "-15-2=-27"]  # fmt: skip
    assert chains.final_answer("23+45=68\n68-17=51") == "51" and chains.final_answer("no steps") == ""


@pytest.mark.parametrize(
    ("lines", "labels"),
    [
        (["23+45=68", "68-17=51"], [True, True]),
        (["23+45=69", "69-17=52"], [False, False]),  # wrong at step 1: everything after is wrong too
        (["23+45=68", "68-17=52"], [True, False]),
        (["23+45=68", "68+17=85"], [True, False]),  # the wrong operation, computed right
        (["23+45=68", "67-17=50"], [True, False]),  # does not continue from the previous result
        (["23+45=68", "the answer is 51"], [True, False]),  # malformed
        (["23+45=68", "68-17=51", "51+1=52"], [True, True, False]),  # a step the chain does not have
        (["23+45=68"], [True]),  # unfinished: the steps written are right
    ],
)
def test_exact_step_labels_by_hand(lines, labels):
    assert chains.step_labels("Compute 23 + 45 - 17 step by step.", lines) == labels


def test_stepwise_rows_are_labelled_as_the_checker_labels_them_and_splits_are_disjoint():
    rows = chains.make_rows("stepwise", "train", 400)
    assert all(chains.step_labels(r["prompt"][0]["content"], r["completions"]) == r["labels"] for r in rows)
    wrong = sum(not all(r["labels"]) for r in rows)
    assert 150 < wrong < 250  # about half the solutions have an injected error
    assert {len(r["completions"]) for r in rows} == {2, 3}
    assert all(r["answer"] == str(eval_chain(r["prompt"][0]["content"])) for r in rows[:50])
    test = {r["prompt"][0]["content"].split("?")[0] for r in chains.make_rows("prompt", "test", 300)}
    assert all(chains.split_of(*parse(q)) == "test" for q in test)


def test_sft_rows_hold_the_right_solution():
    for row in chains.make_rows("sft", "validation", 50):
        question, solution = row["messages"][0]["content"], row["messages"][1]["content"]
        assert chains.step_labels(question, solution.split("\n")) == [True] * solution.count("\n") + [True]
        assert chains.is_correct(solution, row["answer"])


def parse(question):
    """The chain's numbers and operators, read from a question (independently of the module's own parser)."""
    words = question.replace("Compute ", "").replace("What is ", "").replace(" step by step.", "").replace(" = ", " ")
    tokens = words.replace("?", "").split()
    return tuple(int(t) for t in tokens[0::2]), tuple(tokens[1::2])


def eval_chain(question):
    numbers, ops = parse(question)
    value = numbers[0]
    for op, n in zip(ops, numbers[1:], strict=True):
        value = value + n if op == "+" else value - n
    return value
