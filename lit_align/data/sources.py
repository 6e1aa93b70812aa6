"""Where rows come from: an embedded task (generated) or any ``datasets.load_dataset`` specification.

Every data module takes a :class:`DataSource` and calls :func:`load_splits`; the rows it gets back are plain dicts
that the module validates field by field (see ``validation.py``).
"""

from __future__ import annotations

import codecs
import hashlib
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets
import torch

from lit_align.domains import NonNegativeFloat, PositiveInt, check_fields
from lit_align.errors import ConfigError, DataError
from lit_align.tasks import arithmetic, chains, word_problems

EMBEDDED_TASK = "lit-align/arithmetic"
EMBEDDED_TASKS = {
    EMBEDDED_TASK: arithmetic.make_rows,
    "lit-align/arithmetic-judge": arithmetic.make_judge_rows,
    "lit-align/word-problems": word_problems.make_rows,
    "lit-align/chains": chains.make_rows,
}
"""Generated tasks by name: ``make_rows(shape, split, num_rows, seed)`` (see :mod:`lit_align.tasks`)."""
FILE_BUILDERS = {".jsonl": "json", ".json": "json", ".parquet": "parquet", ".csv": "csv"}
BAD_ROW = "_lit_align_bad_row"
"""Column that marks a JSON line that could not be read (its reason); the data modules skip or report the row."""


@dataclass(frozen=True)
class DataSource:
    """A dataset and the splits to train and validate on.

    Args:
        path: ``lit-align/arithmetic`` (the embedded task), ``lit-align/arithmetic-judge`` (its SFT rows half
            replaced by judge rows: is this answer right?), ``lit-align/chains`` (multi-step chains solved one step
            per line, with step-labelled solutions: :mod:`lit_align.tasks.chains`), ``lit-align/word-problems`` (word
            problems for real models, checked by their final number), a local ``.jsonl``/``.json``/``.parquet``/
            ``.csv`` file or folder, a builder name (``json``, ``parquet``, ``csv``) used with ``data_files``, or a
            hub dataset id.
        name: Dataset configuration name (hub datasets with several configurations).
        data_files: Files for a builder name: one path, a list, or a ``{split: paths}`` mapping.
        split: Split to train on.
        val_split: Split to validate on, used when the dataset has it (a single file has only one split); set
            ``val_size`` to split validation rows off the training split instead.
        val_size: Fraction (< 1) or number of rows (>= 1) of the training split held out for validation; 0 keeps
            them all for training. All rows of one prompt go to the same side (grouped by a hash of the prompt).
        test_split: Split for ``lit-align test``, used when the dataset has it; None disables testing.
        num_rows: Use at most this many training rows (for the embedded task: how many to generate).
        num_val_rows: Use at most this many validation rows.
        revision: Hub revision of the dataset.
        seed: Seed for the train/validation split and for the embedded task.

    """

    path: str = EMBEDDED_TASK
    name: str | None = None
    data_files: str | list[str] | dict[str, str | list[str]] | None = None
    split: str = "train"
    val_split: str | None = "validation"
    val_size: NonNegativeFloat = 0.0
    test_split: str | None = "test"
    num_rows: PositiveInt | None = None
    num_val_rows: PositiveInt | None = None
    revision: str | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        """Refuse values outside their domain (see :mod:`lit_align.domains`)."""
        check_fields(self)

    def describe(self, split: str) -> str:
        """Name of the file or dataset split, as error messages show it."""
        if Path(self.path).suffix in FILE_BUILDERS:
            return self.path
        if self.data_files is not None:
            files = (
                self.data_files.get(split, self.data_files) if isinstance(self.data_files, dict) else self.data_files
            )
            return files if isinstance(files, str) else ",".join(files)
        return f"{self.path}[{split}]"


@dataclass
class Split:
    """Rows of one split and the name error messages use for them.

    Attributes:
        rows: The rows.
        origin: The file or dataset split, as messages name it.
        row_numbers: Where a split is a selection of its file's rows (``val_size``), the 0-based position in the
            file of each row, so messages name the file's row; None: rows are in file order.

    """

    rows: datasets.Dataset
    origin: str
    row_numbers: list[int] | None = None

    def __len__(self) -> int:
        return len(self.rows)

    def file_row(self, index: int) -> int:
        """The 0-based position in the file of row ``index`` of this split."""
        return index if self.row_numbers is None else self.row_numbers[index]


def _load_split(source: DataSource, split: str) -> datasets.Dataset:
    origin = source.describe(split)
    local = Path(source.path)
    kwargs: dict[str, Any] = {"split": split}
    if local.suffix in FILE_BUILDERS:
        if not local.is_file():
            raise DataError(origin, "file does not exist")
        if local.stat().st_size == 0:
            raise DataError(origin, "file is empty")
        # A single file is one split, whatever it is called.
        builder, kwargs["data_files"] = FILE_BUILDERS[local.suffix], {split: str(local)}
    else:
        builder = source.path
        if source.name is not None:
            kwargs["name"] = source.name
        if source.data_files is not None:
            kwargs["data_files"] = source.data_files
        if source.revision is not None:
            kwargs["revision"] = source.revision
    if local.suffix in (".jsonl", ".json") and not _is_utf8(local):
        # datasets reads such a file but fails later, on the row, without naming it: read it line by line.
        return json_rows_marking_bad_lines(local, origin, DataError(origin, "is not valid UTF-8"))
    try:
        rows = datasets.load_dataset(builder, **kwargs)
    except FileNotFoundError as error:
        raise DataError(origin, f"not found: {str(error).splitlines()[0]}") from error
    except (datasets.exceptions.DatasetGenerationError, ValueError, OSError) as error:
        cause = error.__cause__ or error
        message = str(cause).strip().splitlines()[0] if str(cause).strip() else type(cause).__name__
        failure = DataError(origin, f"cannot be read: {message}")
        if local.suffix not in (".jsonl", ".json"):
            raise failure from error
        rows = json_rows_marking_bad_lines(local, origin, failure)
    if len(rows) == 0:
        raise DataError(origin, "no rows")
    return rows


def json_rows_marking_bad_lines(path: Path, origin: str, failure: DataError) -> datasets.Dataset:
    """Read a JSON Lines file line by line after ``datasets`` failed on it, keeping a placeholder for each bad line.

    A line that is not UTF-8, not JSON or not an object becomes a row holding only :data:`BAD_ROW` (its reason), so
    row numbers stay those of the file and ``on_bad_row`` decides whether it stops the run or is skipped. A
    ``.json`` file holding one JSON array is parsed whole; its error names the line.

    Raises:
        DataError: The array form does not parse, or no line is bad (``failure``: the file cannot be read for
            another reason, e.g. a field that changes type between rows).

    """
    raw = path.read_bytes()
    if raw.lstrip()[:1] == b"[":
        try:
            items = json.loads(raw.decode("utf-8"))
        except UnicodeDecodeError as error:
            line = raw[: error.start].count(b"\n") + 1
            raise DataError(origin, f"line {line} is not valid UTF-8 (byte {raw[error.start]:#04x})") from error
        except json.JSONDecodeError as error:
            raise DataError(origin, f"line {error.lineno} column {error.colno}: invalid JSON: {error.msg}") from error
        if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
            raise DataError(origin, "must hold a JSON array of objects, or one JSON object per line")
        return datasets.Dataset.from_list(_same_columns(items))
    items, bad = [], 0
    for line in raw.split(b"\n"):
        if not line.strip():
            continue  # blank lines are not rows, as for ``datasets``
        try:
            item = json.loads(line.decode("utf-8"))
            reason = None if isinstance(item, dict) else f"must be a JSON object, got {type(item).__name__}"
        except UnicodeDecodeError as error:
            reason = f"is not valid UTF-8 (byte {line[error.start]:#04x} at column {error.start + 1})"
        except json.JSONDecodeError as error:
            reason = f"is not valid JSON ({error.msg} at column {error.colno})"
        if reason is not None:
            item, bad = {BAD_ROW: reason}, bad + 1
        items.append(item)
    if not bad:
        raise failure
    return datasets.Dataset.from_list(_same_columns(items))


def _is_utf8(path: Path, chunk: int = 1 << 24) -> bool:
    """Whether a file decodes as UTF-8, read in 16 MB pieces (a large file is never held whole)."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    try:
        with path.open("rb") as f:
            while piece := f.read(chunk):
                decoder.decode(piece)
        decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        return False
    return True


def _same_columns(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    # Dataset.from_list takes its columns from the first row; give every row every column.
    names = list(dict.fromkeys(name for item in items for name in item))
    return [{name: item.get(name) for name in names} for item in items]


def readable_rows(split: Split) -> Iterator[tuple[int, dict[str, Any]]]:
    """``(index, row)`` of every row; a line that could not be read (:data:`BAD_ROW`) stops with its row number."""
    for index, row in enumerate(split.rows):
        reason = row.pop(BAD_ROW, None)
        if reason is not None:
            raise DataError(split.origin, reason, row=split.file_row(index) + 1)
        yield index, row


def _whole_row(row: dict[str, Any]) -> Any:
    return row


def grouped_split(
    rows: datasets.Dataset, size: float, seed: int, group_by: Callable[[dict[str, Any]], Any]
) -> tuple[list[int], list[int]]:
    """Split row indices into training and validation so that all rows of one group land on the same side.

    Groups (``group_by(row)``, e.g. the prompt) are ordered by a seeded hash of their JSON form and taken into
    validation until it holds ``size`` rows (a fraction < 1 of all rows, or a count); so a prompt with several
    pairs never has some in training and others in validation, and the split does not depend on row order.

    Returns:
        ``(train indices, validation indices)``, each in the rows' order.

    """
    keys = [json.dumps(group_by(row), sort_keys=True, default=str) for row in rows]
    target = round(size * len(keys)) if size < 1 else int(size)
    members: dict[str, list[int]] = {}
    for i, key in enumerate(keys):
        members.setdefault(key, []).append(i)
    order = sorted(members, key=lambda k: hashlib.sha256(f"{seed}\0{k}".encode()).hexdigest())
    val: list[int] = []
    for key in order:
        if len(val) >= target:
            break
        val += members[key]
    held = set(val)
    return [i for i in range(len(keys)) if i not in held], sorted(val)


def load_splits(
    source: DataSource, shape: arithmetic.Shape, group_by: Callable[[dict[str, Any]], Any] | None = None
) -> tuple[Split, Split | None]:
    """Load the training split and the validation split (or None) of a source.

    Args:
        source: Where the rows come from.
        shape: Which rows the embedded task should emit (ignored for other sources).
        group_by: With ``val_size``: the prompt of a raw row (any JSON-able value), so that rows sharing a prompt
            stay on one side of the split (default: the whole row).

    Raises:
        DataError: A missing, empty or unreadable file or dataset.

    """
    if source.path in EMBEDDED_TASKS:
        _check_embedded_splits(source)
        make_rows = EMBEDDED_TASKS[source.path]
        train_rows = make_rows(shape, source.split, source.num_rows or 20_000, seed=source.seed)
        train = Split(datasets.Dataset.from_list(train_rows), f"{source.path}[{source.split}]")
        if source.val_split is None:
            return train, None
        val_rows = make_rows(shape, source.val_split, source.num_val_rows or 500, seed=source.seed)
        return train, Split(datasets.Dataset.from_list(val_rows), f"{source.path}[{source.val_split}]")

    train = Split(_load_split(source, source.split), source.describe(source.split))
    val = None
    single_file = Path(source.path).suffix in FILE_BUILDERS
    if source.val_split is not None and source.val_size == 0 and not single_file:
        val = _optional_split(source, source.val_split)
    elif source.val_size > 0:
        train_ids, val_ids = grouped_split(train.rows, source.val_size, source.seed, group_by or _whole_row)
        if not train_ids or not val_ids:
            raise DataError(
                train.origin,
                f"val_size={source.val_size} leaves {len(train_ids)} training and {len(val_ids)} validation rows "
                f"({len(train.rows)} rows; rows of one prompt stay together)",
            )
        val = Split(train.rows.select(val_ids), f"{train.origin} (validation part)", list(val_ids))
        train = Split(train.rows.select(train_ids), train.origin, list(train_ids))
    if source.num_rows is not None:
        train.rows = train.rows.select(range(min(source.num_rows, len(train.rows))))
    if val is not None and source.num_val_rows is not None:
        val.rows = val.rows.select(range(min(source.num_val_rows, len(val.rows))))
    return train, val


EMBEDDED_SPLITS = ("train", "validation", "test")


def _check_embedded_splits(source: DataSource) -> None:
    """An embedded task has only its three splits: another name is a config mistake, named by its key."""
    for key in ("split", "val_split", "test_split"):
        name = getattr(source, key)
        if name is not None and name not in EMBEDDED_SPLITS:
            splits = ", ".join(EMBEDDED_SPLITS)
            raise ConfigError(f"data.init_args.source.{key}", f"{source.path} has the splits {splits}, not '{name}'")


def _optional_split(source: DataSource, split: str) -> Split | None:
    try:
        return Split(_load_split(source, split), source.describe(split))
    except DataError as error:
        # A dataset without this split is normal; anything else is the user's to fix.
        if "Unknown split" not in str(error) and "not found" not in str(error):
            raise
        return None


def load_test_split(source: DataSource, shape: arithmetic.Shape) -> Split | None:
    """Load the source's test split, or None when it has none (a single file has only its training rows)."""
    if source.test_split is None:
        return None
    if source.path in EMBEDDED_TASKS:
        _check_embedded_splits(source)
        rows = EMBEDDED_TASKS[source.path](shape, source.test_split, source.num_val_rows or 500, seed=source.seed)
        return Split(datasets.Dataset.from_list(rows), f"{source.path}[{source.test_split}]")
    if Path(source.path).suffix in FILE_BUILDERS:
        return None
    test = _optional_split(source, source.test_split)
    if test is not None and source.num_val_rows is not None:
        test.rows = test.rows.select(range(min(source.num_val_rows, len(test.rows))))
    return test


# Checkpoints keep the data module's hyperparameters; let them load with torch.load(weights_only=True).
torch.serialization.add_safe_globals([DataSource])
