"""Embedded task for real models: one-step arithmetic word problems, checked by their final number.

Each problem is a short story with two numbers (``a`` in 2..60, ``b`` in 2..40 for sums and differences, ``a`` in
2..12 and ``b`` in 2..10 for products) and one operation; the answer is the number the story asks for. A fixed hash
of each (template, a, b) puts 5% of the problems in ``test``, 5% in ``validation`` and the rest in ``train``. Rows
come in the shapes of :mod:`lit_align.tasks.arithmetic`, with a worked answer that ends in the number:

- ``sft``:      ``messages`` (question, worked answer) and ``answer``
- ``pairwise``: ``prompt``, ``chosen`` (worked answer) / ``rejected`` (the same reasoning with an arithmetic slip),
  ``answer``
- ``binary``:   ``prompt``, ``completion``, ``label`` and ``answer``
- ``prompt``:   ``prompt`` and ``answer`` (score with :func:`lit_align.rewards.final_number`)

Generation is a pure function of ``(shape, split, num_rows, seed)``.
"""

from __future__ import annotations

import random
from typing import Any

from lit_align.types import Shape

INSTRUCTION = " Give the final answer as a number at the end."
# (story, operator): {a} and {b} are the numbers; the worked answer restates the operation.
TEMPLATES = (
    ("{name} has {a} apples and buys {b} more. How many apples does {name} have now?", "+"),
    ("A shelf holds {a} books. {name} adds {b} books. How many books are on the shelf?", "+"),
    ("{name} walked {a} km on Monday and {b} km on Tuesday. How many km did {name} walk in total?", "+"),
    ("A class has {a} girls and {b} boys. How many children are in the class?", "+"),
    ("{name} had {a} stickers and gave away {b}. How many stickers are left?", "-"),
    ("A bus carries {a} people. At a stop, {b} people get off. How many people are still on the bus?", "-"),
    ("{name} needs {a} points to win and has {b}. How many more points does {name} need?", "-"),
    ("There are {a} boxes with {b} pencils in each. How many pencils are there?", "*"),
    ("{name} reads {b} pages every day for {a} days. How many pages does {name} read?", "*"),
)
NAMES = ("Ana", "Ben", "Chloe", "Dev", "Emma", "Finn", "Grace", "Hugo", "Iris", "Jack")
SPLITS = ("train", "validation", "test")


def _problems() -> list[tuple[int, int, int]]:
    problems = []
    for t, (_, op) in enumerate(TEMPLATES):
        if op == "*":
            problems += [(t, a, b) for a in range(2, 13) for b in range(2, 11)]
        elif op == "-":
            problems += [(t, a, b) for a in range(3, 61) for b in range(2, min(a, 41))]
        else:
            problems += [(t, a, b) for a in range(2, 61) for b in range(2, 41)]
    return problems


def split_of(template: int, a: int, b: int) -> str:
    """The split a problem belongs to (a fixed arithmetic hash, the same on every machine)."""
    bucket = (template * 1299709 + a * 7919 + b * 104729) % 100
    return "test" if bucket < 5 else "validation" if bucket < 10 else "train"


def solve(template: int, a: int, b: int) -> int:
    """The answer of a problem."""
    op = TEMPLATES[template][1]
    return a + b if op == "+" else a - b if op == "-" else a * b


def worked_answer(template: int, a: int, b: int, result: int) -> str:
    """A one-sentence solution that ends in the result (``result`` may be wrong, for rejected answers)."""
    op = TEMPLATES[template][1]
    return f"{a} {'x' if op == '*' else op} {b} = {result}. The answer is {result}."


def make_rows(shape: Shape | str, split: str = "train", num_rows: int = 1000, seed: int = 0) -> list[dict[str, Any]]:
    """Generate ``num_rows`` rows of one shape from one split (see the module docstring)."""
    shape = Shape(shape)
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    pool = [p for p in _problems() if split_of(*p) == split]
    rng = random.Random(f"word-{shape}-{split}-{seed}")
    rows = []
    for i in range(num_rows):
        if i % len(pool) == 0:
            rng.shuffle(pool)
        t, a, b = pool[i % len(pool)]
        question = TEMPLATES[t][0].format(name=rng.choice(NAMES), a=a, b=b) + INSTRUCTION
        right = solve(t, a, b)
        wrong = right + rng.choice((-10, -2, -1, 1, 2, 10))
        prompt = [{"role": "user", "content": question}]
        answer = str(right)
        good = [{"role": "assistant", "content": worked_answer(t, a, b, right)}]
        bad = [{"role": "assistant", "content": worked_answer(t, a, b, wrong)}]
        if shape is Shape.SFT:
            rows.append({"messages": prompt + good, "answer": answer})
        elif shape is Shape.PROMPT:
            rows.append({"prompt": prompt, "answer": answer})
        elif shape is Shape.PAIRWISE:
            rows.append({"prompt": prompt, "chosen": good, "rejected": bad, "answer": answer})
        else:
            label = rng.random() < 0.5
            rows.append({"prompt": prompt, "completion": good if label else bad, "label": label, "answer": answer})
    return rows
