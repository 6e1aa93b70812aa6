"""Field checks for raw rows; every failure names the file, the row (1-based, a JSONL line) and the field."""

from __future__ import annotations

from typing import Any

from lit_align.errors import DataError

Messages = list[dict[str, str]]
ROLES = ("system", "user", "assistant", "tool", "developer", "function", "ipython")
"""Message roles chat templates know (``developer``: OpenAI's system role; ``ipython``: Llama 3.1's tool role)."""


def text_field(row: dict[str, Any], field: str, origin: str, index: int) -> str:
    """Return ``row[field]`` if it is a non-empty string."""
    value = required_field(row, field, origin, index)
    if not isinstance(value, str):
        raise DataError(origin, f"must be a string, got {type(value).__name__}", row=index + 1, field=field)
    if not value.strip():
        raise DataError(origin, "is empty", row=index + 1, field=field)
    return value


def messages_field(row: dict[str, Any], field: str, origin: str, index: int) -> Messages:
    """Return ``row[field]`` if it is a non-empty list of ``{"role": str, "content": str}`` messages."""
    value = required_field(row, field, origin, index)
    return _check_messages(value, field, origin, index)


def text_or_messages(row: dict[str, Any], field: str, origin: str, index: int) -> str | Messages:
    """Return ``row[field]`` as plain text or as a message list, whichever it is."""
    value = required_field(row, field, origin, index)
    if isinstance(value, list):
        return _check_messages(value, field, origin, index)
    return text_field(row, field, origin, index)


def bool_field(row: dict[str, Any], field: str, origin: str, index: int) -> bool:
    """Return ``row[field]`` if it is a boolean (not 0/1, not "true")."""
    value = required_field(row, field, origin, index)
    if not isinstance(value, bool):
        raise DataError(origin, f"must be true or false, got {value!r}", row=index + 1, field=field)
    return value


def required_field(row: dict[str, Any], field: str, origin: str, index: int) -> Any:
    """Return ``row[field]``; a missing or null value raises a :class:`DataError` naming the row and field."""
    if row.get(field) is None:
        raise DataError(origin, "is missing", row=index + 1, field=field)
    return row[field]


def _flatten_parts(message: Any, position: int, field: str, origin: str, index: int) -> Any:
    """A message whose ``content`` is a list of parts (OpenAI / multimodal style) with its text parts joined.

    Raises:
        DataError: A part that is not text (an image, audio): only text models are trained here.

    """
    if not isinstance(message, dict) or not isinstance(message.get("content"), list):
        return message
    texts = []
    for part in message["content"]:
        kind = part.get("type") if isinstance(part, dict) else None
        if kind != "text" or not isinstance(part.get("text"), str):
            raise DataError(
                origin,
                f"message {position} has a content part of type {kind!r}; only text parts are supported",
                row=index + 1,
                field=field,
            )
        texts.append(part["text"])
    return {**message, "content": "".join(texts)}


def _check_messages(value: Any, field: str, origin: str, index: int) -> Messages:
    if not isinstance(value, list) or not value:
        raise DataError(origin, "must be a non-empty list of messages", row=index + 1, field=field)
    value = [_flatten_parts(m, position, field, origin, index) for position, m in enumerate(value)]
    for position, message in enumerate(value):
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            raise DataError(origin, f"message {position} has no 'role'", row=index + 1, field=field)
        if message["role"] not in ROLES:
            raise DataError(
                origin,
                f"message {position} has role {message['role']!r}; expected one of {', '.join(ROLES)}",
                row=index + 1,
                field=field,
            )
        content = message.get("content")
        if not isinstance(content, str) or not content.strip():
            raise DataError(
                origin, f"message {position} has an empty or non-string 'content'", row=index + 1, field=field
            )
    return value
