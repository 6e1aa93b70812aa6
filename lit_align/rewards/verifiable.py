"""Verifiable rewards: 1.0 when the completion's answer equals the reference answer, else 0.0."""

from __future__ import annotations

import re
from typing import Any, Literal

from lit_align.rewards.text import completion_text
from lit_align.tasks.arithmetic import is_correct

NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")
INTEGER = re.compile(r"-?\d+")


def arithmetic_answer(prompts: list[Any], completions: list[Any], answer: list[str], **_: Any) -> list[float | None]:
    """Exact match for the embedded arithmetic task: the completion's leading integer equals ``answer``.

    A reference that is not a plain integer (e.g. a GSM8K solution: use :func:`final_number`) gives None, so a
    reward that does not fit the data shows up as failures instead of training on a constant 0.
    """
    return [
        float(is_correct(completion_text(c), a)) if INTEGER.fullmatch(str(a).strip()) else None
        for c, a in zip(completions, answer, strict=True)
    ]


def _number(text: str) -> float | None:
    found = NUMBER.findall(text)
    if not found:
        return None
    try:
        return float(found[-1].replace(",", ""))
    except ValueError:
        return None


def final_number(prompts: list[Any], completions: list[Any], answer: list[str], **_: Any) -> list[float | None]:
    """GSM8K-style match: the last number of the completion equals the reference's final number.

    The reference may be a bare number or a GSM8K solution ending in ``#### 42``; commas are ignored. A reference
    without a number gives None (the row is not scored) rather than a false 0.
    """
    scores: list[float | None] = []
    for completion, reference in zip(completions, answer, strict=True):
        target = _number(reference.rsplit("####", 1)[-1])
        if target is None:
            scores.append(None)
            continue
        got = _number(completion_text(completion))
        scores.append(float(got is not None and abs(got - target) < 1e-6))
    return scores


Match = Literal["leading", "final"]


def answer_matches(completions: list[Any], answers: list[str | None], match: Match = "leading") -> list[bool | None]:
    """Exact match of each completion with its reference answer; None where the row has no answer.

    ``leading``: the completion's first integer equals the answer (the embedded arithmetic task);
    ``final``: its last number equals the reference's final number (GSM8K style, as :func:`final_number`).
    """
    out: list[bool | None] = []
    for completion, answer in zip(completions, answers, strict=True):
        if answer is None:
            out.append(None)
        elif match == "final":
            out.append(final_number([None], [completion], answer=[str(answer)])[0] == 1.0)
        else:
            out.append(is_correct(completion_text(completion), str(answer)))
    return out
