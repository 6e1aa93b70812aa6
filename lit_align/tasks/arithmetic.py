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

Generation is a pure function of ``(shape, split, num_rows, seed)``.
"""

from __future__ import annotations

import random
from typing import Any

from lit_align.types import Shape

OPERATORS = ("+", "-", "*")
QUESTION_TEMPLATES = ("What is {a} {op} {b}?", "Compute {a} {op} {b}.", "{a} {op} {b} = ?")


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


def make_rows(shape: Shape | str, split: str = "train", num_rows: int = 1000, seed: int = 0) -> list[dict[str, Any]]:
    """Generate ``num_rows`` rows of one shape from one split.

    Args:
        shape: Which data shape to emit (see module docstring).
        split: ``"train"``, ``"validation"`` or ``"test"``; no two share a problem.
        num_rows: Number of rows; problems repeat (with other wordings) when more are asked than exist.
        seed: Seed of the row order, wordings and wrong answers.

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
        if shape is Shape.SFT:
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
