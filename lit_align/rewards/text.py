"""Completion text as reward functions read it, whether completions are plain strings or assistant messages."""

from __future__ import annotations

from typing import Any


def completion_text(completion: Any) -> str:
    """Return a completion's text: the string itself, or the content of its messages joined."""
    if isinstance(completion, str):
        return completion
    return "".join(message["content"] for message in completion)
