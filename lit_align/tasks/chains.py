"""Embedded multi-step task: chains of additions and subtractions solved one step per line.

A chain is ``n0 op1 n1 op2 n2 [op3 n3]`` with two-digit numbers and ``+`` / ``-``, evaluated left to right. Its
solution writes one step per line, each the running value combined with the next number::

    23+45=68
    68-17=51

The final answer is the last step's result. A fixed hash of each chain puts 5% of chains in ``test``, 5% in
``validation`` and the rest in ``train``. Rows come in four shapes:

- ``sft``:      ``messages`` (user question, assistant solution) and ``answer``, to teach the steps;
- ``stepwise``: ``prompt`` (messages), ``completions`` (the step strings), ``labels`` (one bool per step) and
  ``answer``; half of the solutions are right, half have an error injected at a step k (its result off by a
  units-digit or tens-digit slip, later steps computed correctly from the wrong value, as a model's solution
  continues), labelled True before k and False from k on, as process-reward data labels them;
- ``prompt``:   ``prompt`` (messages) and ``answer``;
- ``pairwise``: ``prompt``, a right ``chosen`` and a wrong ``rejected`` solution (assistant messages), ``answer``.

Generation is a pure function of ``(shape, split, num_rows, seed)``.
"""

from __future__ import annotations

import random
import re
from typing import Any

from lit_align.types import Shape

OPERATORS = ("+", "-")
QUESTION_TEMPLATES = ("Compute {chain} step by step.", "What is {chain}?", "{chain} = ?")
SLIPS = (1, -1, 2, -2, 10, -10)
"""How far an injected error is off: units-digit slips and tens-digit errors."""
SPLITS = ("train", "validation", "test")
STEP = re.compile(r"^\s*(-?\d+)\s*([+-])\s*(\d+)\s*=\s*(-?\d+)\s*$")


def split_of(numbers: tuple[int, ...], ops: tuple[str, ...]) -> str:
    """The split a chain belongs to (a fixed arithmetic hash, identical on every machine)."""
    code = 0
    for n in numbers:
        code = (code * 131 + n) % 1_000_003
    for op in ops:
        code = (code * 7 + OPERATORS.index(op) + 1) % 1_000_003
    bucket = (code * 7919) % 100
    return "test" if bucket < 5 else "validation" if bucket < 10 else "train"


def apply(value: int, op: str, number: int) -> int:
    """``value op number``."""
    return value + number if op == "+" else value - number


def solve(numbers: tuple[int, ...], ops: tuple[str, ...]) -> int:
    """The chain's value, left to right."""
    value = numbers[0]
    for op, n in zip(ops, numbers[1:], strict=True):
        value = apply(value, op, n)
    return value


def steps(numbers: tuple[int, ...], ops: tuple[str, ...], error_at: int | None = None, slip: int = 0) -> list[str]:
    """The solution's step lines; with ``error_at`` = k, step k's result is off by ``slip``.

    Later steps go on from the wrong value, as a model's solution does.
    """
    lines, value = [], numbers[0]
    for k, (op, n) in enumerate(zip(ops, numbers[1:], strict=True)):
        result = apply(value, op, n) + (slip if k == error_at else 0)
        lines.append(f"{value}{op}{n}={result}")
        value = result
    return lines


def question(numbers: tuple[int, ...], ops: tuple[str, ...], rng: random.Random) -> str:
    """A wording of the chain's question."""
    chain = " ".join([str(numbers[0]), *(f"{op} {n}" for op, n in zip(ops, numbers[1:], strict=True))])
    return rng.choice(QUESTION_TEMPLATES).format(chain=chain)


def final_answer(text: str) -> str:
    """The number after the last ``=`` of a solution (what exact match compares); empty if there is none."""
    found = re.findall(r"=\s*(-?\d+)", text)
    return found[-1] if found else ""


def is_correct(completion: str, answer: str) -> bool:
    """Exact match of the solution's final result with the reference answer."""
    return final_answer(completion) == answer.strip()


def step_labels(question_text: str, lines: list[str]) -> list[bool]:
    """Exact labels of a solution's steps: True until the first wrong step, False from there on.

    A step is wrong when it is malformed, does not continue from the previous result (or the chain's first number)
    with the chain's next operation and number, or computes wrongly. The chain is read from the question (its
    numbers and operators in order), so any solution can be checked.
    """
    terms = re.findall(r"(?:^|(?<=\s))([+-])?\s*(\d+)", question_text)
    numbers = [int(n) for _, n in terms]
    ops = [op for op, _ in terms[1:]]
    labels, value = [], numbers[0] if numbers else None
    for k, line in enumerate(lines):
        found = STEP.match(line)
        good = (
            found is not None
            and k < len(ops)
            and int(found.group(1)) == value
            and found.group(2) == ops[k]
            and int(found.group(3)) == numbers[k + 1]
            and int(found.group(4)) == apply(value, ops[k], numbers[k + 1])
        )
        if not good:
            return labels + [False] * (len(lines) - k)
        labels.append(True)
        value = int(found.group(4))
    return labels


def _chain(split: str, rng: random.Random) -> tuple[tuple[int, ...], tuple[str, ...]]:
    """A random chain of 2 or 3 steps from ``split`` (drawn until the hash puts one there)."""
    while True:
        size = rng.choice((2, 3))
        numbers = tuple(rng.randint(10, 99) for _ in range(size + 1))
        ops = tuple(rng.choice(OPERATORS) for _ in range(size))
        if split_of(numbers, ops) == split:
            return numbers, ops


def make_rows(shape: Shape | str, split: str = "train", num_rows: int = 1000, seed: int = 0) -> list[dict[str, Any]]:
    """Generate ``num_rows`` rows of one shape from one split (see the module docstring).

    Args:
        shape: Which data shape to emit.
        split: ``"train"``, ``"validation"`` or ``"test"``; no two share a chain.
        num_rows: Number of rows.
        seed: Seed of the chains, wordings and injected errors.

    Returns:
        A list of JSON-serialisable dicts.

    """
    shape = Shape(shape)
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    rng = random.Random(f"chains-{shape}-{split}-{seed}")
    rows = []
    for _ in range(num_rows):
        numbers, ops = _chain(split, rng)
        text = question(numbers, ops, rng)
        answer = str(solve(numbers, ops))
        prompt = [{"role": "user", "content": text}]
        right = steps(numbers, ops)
        if shape is Shape.SFT:
            rows.append({"messages": [*prompt, {"role": "assistant", "content": "\n".join(right)}], "answer": answer})
        elif shape is Shape.PROMPT:
            rows.append({"prompt": prompt, "answer": answer})
        elif shape is Shape.STEPWISE:
            error_at = rng.randrange(len(ops)) if rng.random() < 0.5 else None
            lines = steps(numbers, ops, error_at, rng.choice(SLIPS))
            labels = [error_at is None or k < error_at for k in range(len(lines))]
            rows.append({"prompt": prompt, "completions": lines, "labels": labels, "answer": answer})
        elif shape is Shape.PAIRWISE:
            wrong = steps(numbers, ops, rng.randrange(len(ops)), rng.choice(SLIPS))
            chosen, rejected = ([{"role": "assistant", "content": "\n".join(s)}] for s in (right, wrong))
            rows.append({"prompt": prompt, "chosen": chosen, "rejected": rejected, "answer": answer})
        else:
            raise ValueError(f"lit-align/chains has no {shape} rows")
    return rows
