"""Tokenize a split with ``datasets.map``: batched, cached by content, optionally in worker processes.

Each data module supplies ``encode(row, index) -> dict`` (a picklable function of the row; it raises
:class:`DataError` for a bad row). :func:`tokenize_rows` maps it over the split in batches and stores, per row, the
encoded result (as JSON text, so any shape of result fits one Arrow column), the error message of a bad row, and
whether it was truncated. The result is cached next to the source's own ``datasets`` cache under a fingerprint of the
source rows, the encoding settings, the tokenizer and this package's data code, so a second run on the same file
(and every other process of a multi-process run) reads the tokens instead of recomputing them. Rows are decoded one
at a time when a loader asks for them (:class:`EncodedRows`), so a large data set is not held as Python lists.
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import datasets
from lightning.pytorch.utilities import rank_zero_warn
from torch.utils.data import Dataset

from lit_align.data.sources import BAD_ROW, Split
from lit_align.errors import DataError, LitAlignError

ENCODED, ERROR, FATAL, TRUNCATED, SOURCE_ROW = (
    "_lit_align_encoded",
    "_lit_align_error",
    "_lit_align_fatal",
    "_lit_align_truncated",
    "_lit_align_source_row",
)
SHOWN_ROWS = 5  # row numbers a skip warning names per reason
MAP_BATCH = 256  # rows per ``datasets.map`` batch
DATA_CODE = Path(__file__).parent  # the encoders live here: a change to them invalidates cached tokens


class EncodedRows(Dataset):
    """The usable encoded rows of one split, decoded on access; ``rows[i]`` has ``index`` = i.

    Args:
        table: Arrow rows with the :data:`ENCODED` and :data:`SOURCE_ROW` columns (bad rows already left out).
        source: The split's original rows, for ``extra``.
        extra: ``extra(original row) -> dict`` of fields added on access (e.g. a prompt's other columns, which
            keep their ``datasets`` types this way instead of passing through JSON).

    """

    def __init__(
        self,
        table: datasets.Dataset,
        source: datasets.Dataset | None = None,
        extra: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
    ) -> None:
        """See the class docstring."""
        self.table, self.source, self.extra = table.select_columns([ENCODED, SOURCE_ROW]), source, extra

    def __len__(self) -> int:
        return len(self.table)

    def __getitem__(self, i: int | slice) -> dict[str, Any] | list[dict[str, Any]]:
        if isinstance(i, slice):  # a list of rows, as a list's slice
            return [self[j] for j in range(*i.indices(len(self)))]
        if not -len(self) <= i < len(self):
            raise IndexError(i)
        i %= len(self)
        stored = self.table[i]
        row = json.loads(stored[ENCODED])
        if self.extra is not None:
            original = self.source[stored[SOURCE_ROW]]
            original.pop(BAD_ROW, None)
            row.update(self.extra(original))
        row["index"] = i
        return row

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return (self[i] for i in range(len(self)))


@contextmanager
def bars_on_terminals_only() -> Iterator[None]:
    """Turn off ``datasets``' progress bars while stderr is not a terminal (in a log file a bar is one long line)."""
    were_on = not datasets.utils.are_progress_bars_disabled()
    if were_on and not sys.stderr.isatty():
        datasets.disable_progress_bars()
    try:
        yield
    finally:
        if were_on:
            datasets.enable_progress_bars()


def _encode_batch(
    batch: dict[str, list[Any]],
    indices: list[int],
    *,
    encode: Callable,
    origin: str,
    row_numbers: list[int] | None = None,
) -> dict[str, list[Any]]:
    """``datasets.map`` function: encode each row of a batch, keeping a bad row's error instead of stopping.

    Errors name the row's place in the file (``row_numbers``, see :class:`~lit_align.data.sources.Split`).
    """
    out: dict[str, list[Any]] = {ENCODED: [], ERROR: [], FATAL: [], TRUNCATED: [], SOURCE_ROW: list(indices)}
    names = list(batch)
    for k, position in enumerate(indices):
        index = position if row_numbers is None else row_numbers[position]
        row = {name: batch[name][k] for name in names}
        encoded, error, fatal = None, None, False
        try:
            reason = row.pop(BAD_ROW, None)
            if reason is not None:
                raise DataError(origin, reason, row=index + 1)
            encoded = encode(row, index)
        except DataError as problem:
            error = str(problem)
        except LitAlignError as problem:  # template problems: name the row, and stop even when skipping
            error, fatal = str(DataError(origin, str(problem), row=index + 1)), True
        truncated = bool(encoded.pop("truncated", False)) if encoded is not None else False
        out[ENCODED].append(None if encoded is None else json.dumps(encoded, separators=(",", ":")))
        out[ERROR].append(error)
        out[FATAL].append(fatal)
        out[TRUNCATED].append(truncated)
    return out


def fingerprint(rows: datasets.Dataset, settings: dict[str, Any], tokenizer: Any, origin: str) -> str:
    """Cache key of one split's encoding: its rows, the encoding settings, the tokenizer and the data code."""
    digest = hashlib.sha256()
    digest.update(rows._fingerprint.encode())
    digest.update(json.dumps(settings, sort_keys=True, default=str).encode())
    digest.update(origin.encode())  # error messages name it
    backend = getattr(tokenizer, "backend_tokenizer", None)
    digest.update(backend.to_str().encode() if backend is not None else repr(tokenizer.get_vocab()).encode())
    digest.update(json.dumps([tokenizer.chat_template, tokenizer.special_tokens_map], default=str).encode())
    for code in sorted(DATA_CODE.glob("*.py")):
        digest.update(code.read_bytes())
    return digest.hexdigest()[:16]


def tokenize_rows(
    split: Split,
    encode: Callable[[dict[str, Any], int], dict[str, Any]],
    on_bad_row: str,
    *,
    settings: dict[str, Any],
    tokenizer: Any,
    num_proc: int | None = None,
    extra: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
) -> tuple[EncodedRows, Counter]:
    """Encode every row of a split with ``encode(row, index)`` through ``datasets.map``.

    ``encode`` raises :class:`DataError` for a bad row (and may add ``"truncated": True`` to its result); a line
    of the file that could not be read at all arrives marked with :data:`BAD_ROW`. With ``on_bad_row="skip"`` such
    rows are dropped and counted by reason, and the warning names the first few row numbers; otherwise the first
    one (by row number) stops the run.

    Args:
        split: The rows and their name in messages.
        encode: Picklable (``num_proc`` sends it to worker processes): a module-level function or a ``partial``.
        on_bad_row: ``error`` or ``skip``.
        settings: What ``encode`` depends on besides the tokenizer (``json.dumps``-ed with ``default=str`` into
            the cache fingerprint).
        tokenizer: The tokenizer ``encode`` uses (its vocabulary and chat template go into the fingerprint).
        num_proc: Worker processes for ``datasets.map`` (None: this process).
        extra: See :class:`EncodedRows`.

    Returns:
        The encoded rows, and counts: ``rows``, ``truncated``, ``skipped`` and ``skipped: <reason>``.

    """
    mapped = split.rows.map(
        _encode_batch,
        batched=True,
        batch_size=MAP_BATCH,
        with_indices=True,
        fn_kwargs={"encode": encode, "origin": split.origin, "row_numbers": split.row_numbers},
        remove_columns=split.rows.column_names,
        # Typed up front: a column that is None for a whole first write batch (no bad row among the first
        # thousand) would otherwise be typed null, and the first error after it fails the map.
        features=datasets.Features(
            {
                ENCODED: datasets.Value("string"),
                ERROR: datasets.Value("string"),
                FATAL: datasets.Value("bool"),
                TRUNCATED: datasets.Value("bool"),
                SOURCE_ROW: datasets.Value("int64"),
            }
        ),  # fmt: skip
        num_proc=num_proc if num_proc and num_proc > 1 and len(split.rows) >= 2 * MAP_BATCH else None,
        new_fingerprint=fingerprint(split.rows, settings, tokenizer, split.origin),
        desc=f"Tokenizing {split.origin}",
    )
    return _usable(mapped, split, on_bad_row, extra)


def _usable(
    mapped: datasets.Dataset, split: Split, on_bad_row: str, extra: Callable | None
) -> tuple[EncodedRows, Counter]:
    """Keep the rows that encoded; stop on the first bad one or count the skipped ones by reason."""
    stats: Counter = Counter(rows=len(mapped), truncated=sum(mapped[TRUNCATED]))
    errors = mapped[ERROR]
    bad = [i for i, error in enumerate(errors) if error is not None]
    fatal = [i for i in bad if mapped[i][FATAL]]
    if fatal or (bad and on_bad_row == "error"):
        message = errors[(fatal or bad)[0]]  # "<origin>: row N: ...", as encode raised it
        raise DataError(split.origin, message.removeprefix(f"{split.origin}: "))
    skipped_rows: dict[str, list[int]] = {}
    for i in bad:
        skipped_rows.setdefault(errors[i].rsplit(": ", 1)[-1], []).append(split.file_row(i) + 1)
    if bad:
        stats["skipped"] = len(bad)
        for reason, numbers in skipped_rows.items():
            stats[f"skipped: {reason}"] = len(numbers)
    if stats["truncated"] or bad:
        parts = [f"{stats['truncated']} truncated"] if stats["truncated"] else []
        if bad:
            reasons = []
            for reason, numbers in sorted(skipped_rows.items()):
                shown = ", ".join(map(str, numbers[:SHOWN_ROWS])) + (", ..." if len(numbers) > SHOWN_ROWS else "")
                reasons.append(f"{len(numbers)} {reason}: row{'s' if len(numbers) > 1 else ''} {shown}")
            parts.append(f"{len(bad)} skipped ({'; '.join(reasons)})")
        rank_zero_warn(f"{split.origin}: {stats['rows']} rows: {', '.join(parts)}")
    if len(bad) == len(mapped):
        raise DataError(split.origin, "no usable row left")
    kept = mapped.select([i for i, error in enumerate(errors) if error is None]) if bad else mapped
    return EncodedRows(kept, split.rows, extra), stats
