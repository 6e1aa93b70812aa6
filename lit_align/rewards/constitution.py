"""A constitution: prioritised principles that check (critique) an answer and may revise it (Bai et al., 2022).

A :class:`Constitution` is a scorer (``--scorer lit_align.rewards.constitution:ArithmeticConstitution``): an
answer's score is minus the weighted count of the principles it breaks, the weights ``2**(n - 1 - i)`` for the
principle of priority ``i`` (0 first), so one answer beats another exactly when, at the first principle on which
they differ, it is the one that keeps it: conflicts are resolved by priority. ``lit-align generate --mode
cai-pairs`` turns those scores into pairs (the RL-from-AI-feedback stage); ``--mode cai-sft`` writes each sample
revised by the principles it breaks (the supervised stage).

:class:`ArithmeticConstitution` is the embedded task's: four principles checkable from the prompt alone (format,
sign, units digit, size of the result). Every right answer keeps them all; they catch some wrong answers (a
units-digit slip, a wrong sign, a result of the wrong size) and not others (a tens-digit error within range). On a
GPU the same roles are played by an instruct model's critique and revision from templates (see
:class:`~lit_align.rewards.judges.GenerativeJudge`).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from lit_align.data.validation import Messages
from lit_align.rewards.judges import text_of


@dataclass(frozen=True)
class Principle:
    """One principle: its name, its check and its optional revision.

    Attributes:
        name: Name in reports (``violations`` columns).
        check: ``(prompt text, answer text) -> bool | None``: True when the answer keeps the principle, None when
            the principle does not apply (counted as kept).
        revise: ``(prompt text, answer text) -> str``: the answer rewritten to keep the principle; None: none.

    """

    name: str
    check: Callable[[str, str], bool | None]
    revise: Callable[[str, str], str] | None = None


class Constitution:
    """Principles in priority order (the first matters most); a scorer, a critic and a reviser.

    Args:
        principles: The principles, most important first.

    """

    def __init__(self, principles: list[Principle]) -> None:
        """See the class docstring."""
        self.principles = list(principles)

    def violations(self, prompt: str, answer: str) -> list[str]:
        """Names of the principles ``answer`` breaks, in priority order (the critique)."""
        return [p.name for p in self.principles if p.check(prompt, answer) is False]

    def score(self, prompt: str, answer: str) -> float:
        """Minus the priority-weighted count of broken principles: comparing scores compares by priority."""
        n, broken = len(self.principles), set(self.violations(prompt, answer))
        return -float(sum(2 ** (n - 1 - i) for i, p in enumerate(self.principles) if p.name in broken))

    def revise(self, prompt: str, answer: str) -> str:
        """The answer after each broken principle's revision, in priority order, each checked again first."""
        for principle in self.principles:
            if principle.revise is not None and principle.check(prompt, answer) is False:
                answer = principle.revise(prompt, answer)
        return answer

    def __call__(self, prompts: list[str | Messages], completions: list[str | Messages], **_: object) -> list[float]:
        """:meth:`score` of every completion (a reward function's signature)."""
        return [self.score(text_of(p), text_of(c)) for p, c in zip(prompts, completions, strict=True)]


PROBLEM = re.compile(r"(\d+) ([+\-*]) (\d+)")
INTEGER = re.compile(r"^-?\d+$")
FIRST_INTEGER = re.compile(r"-?\d+")


def _problem(prompt: str) -> tuple[int, str, int] | None:
    found = PROBLEM.search(prompt)
    return None if found is None else (int(found.group(1)), found.group(2), int(found.group(3)))


def _value(answer: str) -> int | None:
    text = answer.strip()
    return int(text) if INTEGER.match(text) else None


def keeps_format(prompt: str, answer: str) -> bool:
    """The answer is one integer and nothing else."""
    return _value(answer) is not None


def to_format(prompt: str, answer: str) -> str:
    """The answer's first integer (unchanged when it has none)."""
    found = FIRST_INTEGER.search(answer)
    return found.group(0) if found else answer


def keeps_sign(prompt: str, answer: str) -> bool | None:
    """The result's sign follows from the operands: only ``a - b`` with ``a < b`` is negative (0 when equal)."""
    problem, value = _problem(prompt), _value(answer)
    if problem is None or value is None:
        return None
    a, op, b = problem
    expected = (a > b) - (a < b) if op == "-" else 1
    return (value > 0) - (value < 0) == expected


def to_sign(prompt: str, answer: str) -> str:
    """The answer with its sign flipped."""
    value = _value(answer)
    return answer if value is None else str(-value)


def _units(a: int, op: str, b: int) -> int:
    """Units digit of ``|a op b|`` from the operands' units digits."""
    ua, ub = a % 10, b % 10
    if op == "+":
        return (ua + ub) % 10
    if op == "*":
        return (ua * ub) % 10
    return (ua - ub) % 10 if a >= b else (ub - ua) % 10


def keeps_units_digit(prompt: str, answer: str) -> bool | None:
    """The result's units digit is the one the operands' units digits give."""
    problem, value = _problem(prompt), _value(answer)
    if problem is None or value is None:
        return None
    return abs(value) % 10 == _units(*problem)


def to_units_digit(prompt: str, answer: str) -> str:
    """The answer with its units digit replaced by the right one."""
    problem, value = _problem(prompt), _value(answer)
    if problem is None or value is None:
        return answer
    fixed = abs(value) - abs(value) % 10 + _units(*problem)
    return str(-fixed if value < 0 else fixed)


def _bounds(a: int, op: str, b: int) -> tuple[int, int]:
    """Bounds of ``|a op b|`` from the operands' tens digits alone (their units digits anywhere in 0..9)."""
    ta, tb = a // 10 * 10, b // 10 * 10
    if op == "+":
        return ta + tb, ta + tb + 18
    if op == "*":
        return ta * b, (ta + 9) * b
    gap = abs(ta - tb)
    return max(0, gap - 9), gap + 9


def keeps_size(prompt: str, answer: str) -> bool | None:
    """The result's size is within what the operands' tens digits allow."""
    problem, value = _problem(prompt), _value(answer)
    if problem is None or value is None:
        return None
    low, high = _bounds(*problem)
    return low <= abs(value) <= high


ARITHMETIC_PRINCIPLES = [
    Principle("format", keeps_format, to_format),
    Principle("sign", keeps_sign, to_sign),
    Principle("units_digit", keeps_units_digit, to_units_digit),
    Principle("size", keeps_size),
]


class ArithmeticConstitution(Constitution):
    """The embedded task's constitution: format, sign, units digit, size (in that priority)."""

    def __init__(self) -> None:
        """See the class docstring."""
        super().__init__(ARITHMETIC_PRINCIPLES)
