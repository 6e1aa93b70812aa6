"""User-facing errors: each one is printed by the CLI as a single line and ends the run with exit code 2."""

from __future__ import annotations


class LitAlignError(Exception):
    """A mistake in the user's input (data, config or paths) rather than a bug in lit-align."""


class DataError(LitAlignError):
    """A data file or row that cannot be used; the message names the file, the row and the field."""

    def __init__(self, source: str, message: str, *, row: int | None = None, field: str | None = None) -> None:
        where = source
        if row is not None:
            where += f": row {row}"
        if field is not None:
            where += f": field '{field}'"
        super().__init__(f"{where}: {message}")
        self.source, self.row, self.field = source, row, field


class ModelLoadError(LitAlignError):
    """A model or tokenizer that cannot be loaded; the message names the config key that set its path."""


class ConfigError(LitAlignError):
    """A config value outside its domain or a meaningless combination; the message starts with the config key."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}")
        self.key = key


class CheckpointError(LitAlignError):
    """A checkpoint that is missing, truncated or damaged, or refused as unsafe; the message names the path."""


class SignalError(LitAlignError):
    """A training signal with nothing to learn from (e.g. no usable reward for many batches in a row)."""
