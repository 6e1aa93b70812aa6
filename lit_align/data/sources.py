"""Where rows come from: the embedded arithmetic task or any ``datasets.load_dataset`` specification.

Every data module takes a :class:`DataSource` and calls :func:`load_splits`; the rows it gets back are plain dicts
that the module validates field by field (see ``validation.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets
import torch

from lit_align.errors import DataError
from lit_align.tasks import arithmetic

EMBEDDED_TASK = "lit-align/arithmetic"
FILE_BUILDERS = {".jsonl": "json", ".json": "json", ".parquet": "parquet", ".csv": "csv"}


@dataclass(frozen=True)
class DataSource:
    """A dataset and the splits to train and validate on.

    Args:
        path: ``lit-align/arithmetic`` (the embedded task), a local ``.jsonl``/``.json``/``.parquet``/``.csv`` file
            or folder, a builder name (``json``, ``parquet``, ``csv``) used with ``data_files``, or a hub dataset id.
        name: Dataset configuration name (hub datasets with several configurations).
        data_files: Files for a builder name: one path, a list, or a ``{split: paths}`` mapping.
        split: Split to train on.
        val_split: Split to validate on, used when the dataset has it (a single file has only one split); set
            ``val_size`` to split validation rows off the training split instead.
        val_size: Fraction (< 1) or number of rows (>= 1) of the training split held out for validation; 0 keeps
            them all for training.
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
    val_size: float = 0.0
    test_split: str | None = "test"
    num_rows: int | None = None
    num_val_rows: int | None = None
    revision: str | None = None
    seed: int = 0

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
    """Rows of one split and the name error messages use for them."""

    rows: datasets.Dataset
    origin: str

    def __len__(self) -> int:
        return len(self.rows)


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
    try:
        rows = datasets.load_dataset(builder, **kwargs)
    except FileNotFoundError as error:
        raise DataError(origin, f"not found: {str(error).splitlines()[0]}") from error
    except (datasets.exceptions.DatasetGenerationError, ValueError, OSError) as error:
        cause = error.__cause__ or error
        message = str(cause).strip().splitlines()[0] if str(cause).strip() else type(cause).__name__
        raise DataError(origin, f"cannot be read: {message}") from error
    if len(rows) == 0:
        raise DataError(origin, "no rows")
    return rows


def load_splits(source: DataSource, shape: arithmetic.Shape) -> tuple[Split, Split | None]:
    """Load the training split and the validation split (or None) of a source.

    Args:
        source: Where the rows come from.
        shape: Which rows the embedded task should emit (ignored for other sources).

    Raises:
        DataError: A missing, empty or unreadable file or dataset.

    """
    if source.path == EMBEDDED_TASK:
        train_rows = arithmetic.make_rows(shape, source.split, source.num_rows or 20_000, seed=source.seed)
        train = Split(datasets.Dataset.from_list(train_rows), f"{EMBEDDED_TASK}[{source.split}]")
        if source.val_split is None:
            return train, None
        val_rows = arithmetic.make_rows(shape, source.val_split, source.num_val_rows or 500, seed=source.seed)
        return train, Split(datasets.Dataset.from_list(val_rows), f"{EMBEDDED_TASK}[{source.val_split}]")

    train = Split(_load_split(source, source.split), source.describe(source.split))
    val = None
    single_file = Path(source.path).suffix in FILE_BUILDERS
    if source.val_split is not None and source.val_size == 0 and not single_file:
        val = _optional_split(source, source.val_split)
    elif source.val_size > 0:
        size = source.val_size if source.val_size < 1 else int(source.val_size)
        parts = train.rows.train_test_split(test_size=size, seed=source.seed)
        train = Split(parts["train"], train.origin)
        val = Split(parts["test"], f"{train.origin} (validation part)")
    if source.num_rows is not None:
        train.rows = train.rows.select(range(min(source.num_rows, len(train.rows))))
    if val is not None and source.num_val_rows is not None:
        val.rows = val.rows.select(range(min(source.num_val_rows, len(val.rows))))
    return train, val


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
    if source.path == EMBEDDED_TASK:
        rows = arithmetic.make_rows(shape, source.test_split, source.num_val_rows or 500, seed=source.seed)
        return Split(datasets.Dataset.from_list(rows), f"{EMBEDDED_TASK}[{source.test_split}]")
    if Path(source.path).suffix in FILE_BUILDERS:
        return None
    test = _optional_split(source, source.test_split)
    if test is not None and source.num_val_rows is not None:
        test.rows = test.rows.select(range(min(source.num_val_rows, len(test.rows))))
    return test


# Checkpoints keep the data module's hyperparameters; let them load with torch.load(weights_only=True).
torch.serialization.add_safe_globals([DataSource])
