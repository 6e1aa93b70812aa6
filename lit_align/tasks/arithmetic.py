"""Embedded synthetic task: two-number integer arithmetic; its rows and its answer checker live together here.

Every problem is ``a op b`` with ``a, b`` in ``[10, 99]`` and ``op`` in ``+ - *``, multiplication only with a
one-digit ``b`` (2..9). A fixed hash of each problem puts 5% of them in ``test``, 5% in ``validation`` and the rest
in ``train``, so no split shares a problem with another. Rows are emitted in the conversational format that Hugging
Face chat templates understand, in four shapes that later data modules read:

- ``sft``:      ``messages`` (user question, assistant answer) and ``answer``
- ``pairwise``: ``prompt`` (messages), ``chosen`` / ``rejected`` (assistant messages), ``answer`` and ``wrong_by``
  (rejected minus right answer: +-1, +-2 are units-digit slips, +-10, +-20 tens-digit errors)
- ``binary``:   ``prompt``, ``completion`` (assistant messages), ``label`` (bool) and ``answer``
- ``prompt``:   ``prompt`` (messages) and ``answer``

``lit-align/arithmetic-judge`` (:func:`make_judge_rows`) mixes judge rows into the SFT shape: the user shows a
problem, a proposed answer in the assistant's turn and a follow-up question (:data:`JUDGE_TEMPLATE`), and the
assistant works out the units digit and says ``yes`` or ``no``, so that one model answers and judges answers
(train on the last assistant turn only, or the shown wrong answers are learned too).

Generation is a pure function of ``(shape, split, num_rows, seed)``.
"""

from __future__ import annotations

import random
from functools import partial
from typing import Any

from lit_align.types import Shape

OPERATORS = ("+", "-", "*")
QUESTION_TEMPLATES = ("What is {a} {op} {b}?", "Compute {a} {op} {b}.", "{a} {op} {b} = ?")
JUDGE_TEMPLATE = [
    {"role": "user", "content": "{prompt}"},
    {"role": "assistant", "content": "{response}"},
    {"role": "user", "content": "Check the units digit. Is that right?"},
]
"""The judge conversation of :func:`make_judge_rows`: the problem, a proposed answer in the assistant's place, and a
follow-up question; the judge's next turn is its verdict (:func:`judge_verdict`), to be read by a
:class:`~lit_align.rewards.judges.GenerativeJudge` with this template, :data:`JUDGE_PATTERN` and :data:`JUDGE_LABELS`.

The tiny model learns it late (``recipes/self_rewarding_sft.yaml``, SFT from tiny-sft on a half-judge mix): on
held-out judge rows the worked units digit is right 0.33 / 0.86 / 0.98 and the verdict 0.52 / 0.56 / 0.93 at steps
1500 / 3000 / 4500. Simpler forms did not train in 1500 steps: a bare yes / no after this conversation, or after
one question quoting the answer, stayed at chance; a verdict naming the expected digit in one step copied the shown
one."""
JUDGE_PATTERN = r"(yes|no)\s*$"
JUDGE_LABELS = {"yes": 1.0, "no": 0.0}
JUDGE_SLIPS = (1, 1, 1, 1, 1, 2, 2, 3, 4, 5)
"""Sizes of the wrong answers that judge rows show (either sign): units-digit slips, as tiny-sft makes them (of its
wrong samples at temperature 1, about 80% are off by 1 and 12% by 2). The judge checks the units digit only, so an
answer wrong in its tens digit alone passes it, as it passes the embedded constitution's units-digit principle."""


def _all_problems() -> list[tuple[int, str, int]]:
    problems = []
    for a in range(10, 100):
        for op in OPERATORS:
            for b in range(2, 10) if op == "*" else range(10, 100):
                problems.append((a, op, b))
    return problems


SPLITS = ("train", "validation", "test")


def split_of(a: int, op: str, b: int) -> str:
    """Return the split a problem belongs to."""
    # Fixed arithmetic hash (not Python's salted hash) so the split is identical on every machine.
    bucket = (a * 7919 + b * 104729 + OPERATORS.index(op) * 1299709) % 100
    return "test" if bucket < 5 else "validation" if bucket < 10 else "train"


def solve(a: int, op: str, b: int) -> int:
    """Return the exact result of ``a op b``."""
    if op == "+":
        return a + b
    if op == "-":
        return a - b
    return a * b


def wrong_answer(a: int, op: str, b: int, rng: random.Random) -> int:
    """Return a plausible wrong result: a carry slip, an off-by-one, or a tens-digit error."""
    right = solve(a, op, b)
    while True:
        candidate = right + rng.choice((-10, -1, 1, 10, -2, 2, 20, -20))
        if candidate != right:
            return candidate


def normalize_answer(text: str) -> str:
    """Extract the first integer of a completion (what exact match compares); empty if there is none."""
    text = text.strip()
    digits = ""
    for i, ch in enumerate(text):
        if ch.isdigit() or (ch == "-" and i == 0):
            digits += ch
        else:
            break
    return digits if digits not in ("", "-") else ""


def is_correct(completion: str, answer: str) -> bool:
    """Exact match of the completion's leading integer with the reference answer."""
    return normalize_answer(completion) == answer.strip()


def make_rows(
    shape: Shape | str, split: str = "train", num_rows: int = 1000, seed: int = 0, judge_share: float = 0.0
) -> list[dict[str, Any]]:
    """Generate ``num_rows`` rows of one shape from one split.

    Args:
        shape: Which data shape to emit (see module docstring).
        split: ``"train"``, ``"validation"`` or ``"test"``; no two share a problem.
        num_rows: Number of rows; problems repeat (with other wordings) when more are asked than exist.
        seed: Seed of the row order, wordings and wrong answers.
        judge_share: SFT shape: the share of rows that are judge rows (a problem, a right or wrong answer, and
            ``yes`` or ``no``: see :data:`JUDGE_TEMPLATE`); 0 gives plain SFT rows.

    Returns:
        A list of JSON-serialisable dicts.

    """
    shape = Shape(shape)
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    pool = [p for p in _all_problems() if split_of(*p) == split]
    rng = random.Random(f"{shape}-{split}-{seed}")
    rows = []
    for i in range(num_rows):
        if i % len(pool) == 0:
            rng.shuffle(pool)
        a, op, b = pool[i % len(pool)]
        question = rng.choice(QUESTION_TEMPLATES).format(a=a, op=op, b=b)
        answer = str(solve(a, op, b))
        prompt = [{"role": "user", "content": question}]
        if shape is Shape.SFT and judge_share and rng.random() < judge_share:
            rows.append(_judge_row(a, op, b, question, rng))
        elif shape is Shape.SFT:
            rows.append({"messages": [*prompt, {"role": "assistant", "content": answer}], "answer": answer})
        elif shape is Shape.PROMPT:
            rows.append({"prompt": prompt, "answer": answer})
        elif shape is Shape.PAIRWISE:
            wrong = str(wrong_answer(a, op, b, rng))
            rows.append(
                {
                    "prompt": prompt,
                    "chosen": [{"role": "assistant", "content": answer}],
                    "rejected": [{"role": "assistant", "content": wrong}],
                    "answer": answer,
                    "wrong_by": int(wrong) - int(answer),
                }
            )
        else:
            label = rng.random() < 0.5
            shown = answer if label else str(wrong_answer(a, op, b, rng))
            rows.append(
                {
                    "prompt": prompt,
                    "completion": [{"role": "assistant", "content": shown}],
                    "label": label,
                    "answer": answer,
                }
            )
    return rows


make_judge_rows = partial(make_rows, judge_share=0.5)
"""``lit-align/arithmetic-judge``: :func:`make_rows` with half of the SFT rows judge rows (other shapes unchanged)."""


def judge_conversation(question: str, shown: str) -> list[dict[str, str]]:
    """The judge conversation of a problem's wording and a proposed answer (:data:`JUDGE_TEMPLATE` filled)."""
    return [{**m, "content": m["content"].replace("{prompt}", question).replace("{response}", shown)}
            for m in JUDGE_TEMPLATE]  # fmt: skip


def judge_verdict(a: int, op: str, b: int, shown: str) -> str:
    """The verdict a judge row teaches: the units-digit sum worked out, compared with the answer's last digit.

    ``"<x><op><y>=<d> vs <last digit shown>: yes|no"``, where ``d`` is the result's units digit from the operands'
    units digits ``x`` and ``y`` (for a negative difference the larger operand's first, as ``|a - b|`` needs). Each
    step reads or combines two neighbouring tokens, which the tiny model learns where one jump to the digit does not.
    """
    x, y = a % 10, b % 10 if op != "*" else b
    if op == "-" and a < b:
        x, y = y, x
    digit = (x + y if op == "+" else x - y if op == "-" else x * y) % 10
    given = shown.strip()[-1:] or "?"
    return f"{x}{op}{y}={digit} vs {given}: {'yes' if shown.strip() == str(solve(a, op, b)) else 'no'}"


def _judge_row(a: int, op: str, b: int, question: str, rng: random.Random) -> dict[str, Any]:
    """An SFT row asking whether a right (half the time) or wrong answer to ``a op b`` is right."""
    right = solve(a, op, b)
    shown = right if rng.random() < 0.5 else right + rng.choice(JUDGE_SLIPS) * rng.choice((-1, 1))
    verdict = judge_verdict(a, op, b, str(shown))
    messages = [*judge_conversation(question, str(shown)), {"role": "assistant", "content": verdict}]
    return {"messages": messages, "answer": verdict.rsplit(" ", 1)[-1]}
