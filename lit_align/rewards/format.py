"""Shape rewards: a regular-expression format check and a length penalty."""

from __future__ import annotations

import re
from typing import Any

from lit_align.rewards.text import completion_text


def regex_format(prompts: list[Any], completions: list[Any], *, pattern: str, **_: Any) -> list[float]:
    r"""1.0 when the whole completion matches ``pattern`` (``re.fullmatch``, DOTALL), else 0.0.

    Example: ``pattern: "<think>.*</think>\\s*<answer>.*</answer>"``.
    """
    compiled = re.compile(pattern, re.DOTALL)
    return [float(compiled.fullmatch(completion_text(c).strip()) is not None) for c in completions]


def length_penalty(
    prompts: list[Any], completions: list[Any], *, max_chars: int = 512, scale: float = 1.0, **_: Any
) -> list[float]:
    """``-scale * max(0, len - max_chars) / max_chars``: 0 up to ``max_chars`` characters, then linear."""
    return [-scale * max(0, len(completion_text(c)) - max_chars) / max_chars for c in completions]
