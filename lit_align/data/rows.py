"""What every data module does with its rows: load and tokenize them (``encoding.py``), count them, serve batches."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from functools import partial
from typing import Any, Literal

import torch.distributed as dist
from lightning.fabric.utilities.data import AttributeDict
from lightning.pytorch.utilities import rank_zero_warn
from torch.utils.data import DataLoader
from torchdata.stateful_dataloader import StatefulDataLoader
from torchdata.stateful_dataloader.sampler import StatefulDistributedSampler

from lit_align.data.checks import mark_failed_checks
from lit_align.data.encoding import EncodedRows, bars_on_terminals_only, tokenize_rows
from lit_align.data.sampling import LengthGroupedSampler, padded_length
from lit_align.data.sources import DataSource, load_splits, load_test_split
from lit_align.data.templates import with_chat_template
from lit_align.roles.tokenizer import load_tokenizer
from lit_align.types import Shape

OnBadRow = Literal["error", "skip"]


def tokenize_splits(
    source: DataSource,
    shape: Shape,
    encode: Callable[[str, dict[str, Any], int], dict[str, Any]],
    on_bad_row: OnBadRow,
    prompt_of: Callable[[dict[str, Any]], Any] | None = None,
    checks: Sequence[str] = (),
    claims: dict[str, Callable] | None = None,
    **mapping: Any,
) -> dict[str, tuple[EncodedRows, Counter]]:
    """Load a source's train, val and test splits (those it has) and tokenize each with ``encode(origin, row, index)``.

    ``prompt_of(raw row)`` keeps the rows of one prompt on one side of a ``val_size`` split (see
    :func:`~lit_align.data.sources.grouped_split`); ``checks`` (``duplicates``, ``contradictions``, ``leaks``) mark
    the rows they find as bad rows before tokenizing, so ``on_bad_row`` stops on or skips and counts them
    (:func:`~lit_align.data.checks.mark_failed_checks`, given ``claims``: its ``pair_of`` or ``label_of``);
    ``mapping`` goes to :func:`~lit_align.data.encoding.tokenize_rows` (``settings``, ``tokenizer``, ``num_proc``,
    ``extra``).

    Returns:
        ``{split name: (encoded rows, counts)}`` for ``train`` and, when present, ``val`` and ``test``.

    """
    train, val = load_splits(source, shape, prompt_of)
    test = load_test_split(source, shape)
    splits = {"train": train, "val": val, "test": test}
    if checks:
        mark_failed_checks(splits, checks, prompt_of or (lambda row: row), **(claims or {}))
    return {
        name: tokenize_rows(split, partial(encode, split.origin), on_bad_row, **mapping)
        for name, split in splits.items()
        if split is not None
    }


LOADER_SETTINGS = {"batch_size", "eval_batch_size", "num_workers", "num_proc", "on_bad_row", "group_by_length"}
"""Data module hparams that do not change the tokens (left out of the tokenization cache key)."""


@contextmanager
def local_zero_first(trainer: Any) -> Iterator[None]:
    """In a multi-process run, let local rank 0 load and tokenize first; the others then read its cache."""
    if trainer is None or trainer.world_size == 1:
        yield
        return
    if trainer.local_rank != 0:
        trainer.strategy.barrier("lit_align_tokenize")
    try:
        yield
    finally:  # also when rank 0 fails: the others then stop on the same error instead of waiting
        if trainer.local_rank == 0:
            trainer.strategy.barrier("lit_align_tokenize")


def load_rows(
    datamodule: Any,
    collate: Callable[..., Any],
    shape: Shape,
    encode: Callable[..., dict[str, Any]],
    prompt_of: Callable[[dict[str, Any]], Any] | None = None,
    extra: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
    claims: dict[str, Callable] | None = None,
) -> dict[str, tuple[EncodedRows, Counter]]:
    """What every data module's ``setup`` does: tokenizer (with ``chat_template``), loaders, tokenized splits.

    Sets ``datamodule.tokenizer``, ``.splits`` and ``.rows`` (the splits' row lists, filled by the caller) from its
    hparams, then returns :func:`tokenize_splits` of its source.

    Args:
        datamodule: A data module with the shared hparams (``tokenizer``, ``trust_remote_code``, ``chat_template``,
            ``batch_size``, ``eval_batch_size``, ``num_workers``, ``num_proc``, ``on_bad_row``) and a ``source``.
        collate: Batch builder; called with ``pad_token_id`` bound.
        shape: Which rows the embedded task emits.
        encode: A module-level function ``encode(hparams, tokenizer, origin, row, index)``: the data module's
            hparams, its tokenizer (chat template applied), the split's name in messages, the raw row and its
            position (row ``index + 1`` in messages). It is sent to ``datasets.map`` workers, so it must not hold
            the data module; it raises :class:`DataError` for a bad row.
        prompt_of: The prompt of a raw row, for grouped ``val_size`` splits.
        extra: See :class:`~lit_align.data.encoding.EncodedRows`.
        claims: ``pair_of`` / ``label_of`` for the ``contradictions`` check (see :func:`tokenize_splits`).

    """
    hp = datamodule.hparams
    tokenizer = load_tokenizer(hp.tokenizer, trust_remote_code=hp.trust_remote_code, key="data.init_args.tokenizer")
    datamodule.tokenizer = with_chat_template(tokenizer, hp.chat_template)
    bound = partial(collate, pad_token_id=datamodule.tokenizer.pad_token_id)
    datamodule.splits = SplitLoaders(
        bound, hp.batch_size, hp.eval_batch_size, hp.num_workers, group_by_length=hp.get("group_by_length", False)
    )
    datamodule.rows = datamodule.splits.rows
    options = AttributeDict(hp)
    settings = {"encoder": f"{encode.__module__}.{encode.__qualname__}"} | {
        k: v for k, v in options.items() if k not in LOADER_SETTINGS
    }
    with local_zero_first(datamodule.trainer), bars_on_terminals_only():
        return tokenize_splits(
            datamodule.source,
            shape,
            partial(encode, options, datamodule.tokenizer),
            hp.on_bad_row,
            prompt_of,
            checks=hp.get("checks") or (),
            claims=claims,
            settings=settings,
            tokenizer=datamodule.tokenizer,
            num_proc=hp.get("num_proc"),
            extra=extra,
        )


def make_loader(
    rows: list, batch_size: int, collate: Callable, *, shuffle: bool, num_workers: int, group_by_length: bool = False
) -> DataLoader:
    """DataLoader over tokenized rows that can save and restore its position mid-epoch.

    Lightning stores the loader's state (sampler order and batches already served) in every checkpoint, so a run
    resumed from a mid-epoch checkpoint sees exactly the batches the uninterrupted run would have seen.

    In several processes a shuffled loader gets torchdata's ``StatefulDistributedSampler`` (order from the seed and
    the epoch, position in the checkpoint). Otherwise Lightning wraps the loader's own random sampler in a
    ``DistributedSamplerWrapper``, which draws a new order from the global RNG each time it is iterated and keeps no
    position, so a resumed multi-process run would see other batches.

    With ``group_by_length`` a shuffled loader batches rows of similar length together
    (:class:`~lit_align.data.sampling.LengthGroupedSampler`, resumable the same way, on one process or several).
    """
    seed = int(os.environ.get("PL_GLOBAL_SEED", 0))
    if shuffle and group_by_length:
        sampler = LengthGroupedSampler([padded_length(row) for row in rows], batch_size, seed=seed)
        return StatefulDataLoader(rows, batch_size, sampler=sampler, collate_fn=collate, num_workers=num_workers)
    if shuffle and dist.is_available() and dist.is_initialized():
        sampler = StatefulDistributedSampler(rows, shuffle=True, seed=seed)
        return StatefulDataLoader(rows, batch_size, sampler=sampler, collate_fn=collate, num_workers=num_workers)
    return StatefulDataLoader(rows, batch_size=batch_size, shuffle=shuffle, collate_fn=collate, num_workers=num_workers)


class SplitLoaders:
    """Tokenized rows of the train, val and test splits and the DataLoaders over them.

    Args:
        collate: Turns a list of rows into a batch.
        batch_size: Rows per training batch.
        eval_batch_size: Rows per validation/test batch; defaults to ``batch_size``.
        num_workers: DataLoader worker processes.
        group_by_length: Length-grouped batches for the shuffled (training) loader.

    """

    def __init__(
        self,
        collate: Callable,
        batch_size: int,
        eval_batch_size: int | None,
        num_workers: int,
        *,
        group_by_length: bool = False,
    ) -> None:
        """See the class docstring."""
        self.group_by_length = group_by_length
        self.rows: dict[str, list[dict[str, Any]]] = {"train": [], "val": [], "test": []}
        self.collate, self.num_workers = collate, num_workers
        self.batch_sizes = {
            "train": batch_size,
            "val": eval_batch_size or batch_size,
            "test": eval_batch_size or batch_size,
        }

    def loader(self, split: str, *, shuffle: bool) -> DataLoader:
        """DataLoader over one split."""
        return make_loader(
            self.rows[split],
            self.batch_sizes[split],
            self.collate,
            shuffle=shuffle,
            num_workers=self.num_workers,
            group_by_length=self.group_by_length,
        )

    def optional(self, split: str) -> DataLoader | list:
        """Unshuffled loader over a split, or an empty list (Lightning skips it) when the split has no rows."""
        return self.loader(split, shuffle=False) if self.rows[split] else []

    def ordered(self) -> dict[str, DataLoader]:
        """Unshuffled loaders over every non-empty split, for precomputing reference log-probs once."""
        return {name: self.loader(name, shuffle=False) for name, rows in self.rows.items() if rows}


def train_loader(datamodule: Any) -> DataLoader:
    """The shuffled training loader of a data module, after logging its row counts and fitting the validation cadence.

    A step interval (``trainer.val_check_interval: 250``) longer than one epoch of this data would make Lightning
    refuse the run; the interval is then capped at the epoch (validate at each epoch end) with a one-line notice.
    """
    log_row_stats(datamodule)
    loader = datamodule.splits.loader("train", shuffle=True)
    fit_validation_interval(datamodule.trainer, loader)
    return loader


def fit_validation_interval(trainer: Any, loader: DataLoader) -> None:
    """Validate at epoch end when ``trainer.val_check_interval`` (steps) exceeds the batches of one epoch."""
    interval = getattr(trainer, "val_check_interval", None)
    if not isinstance(interval, int) or trainer.check_val_every_n_epoch is None or not trainer.limit_val_batches:
        return
    batches = len(loader)
    if not (dist.is_available() and dist.is_initialized()):  # Lightning adds a distributed sampler later
        rows = -(-len(loader.dataset) // max(trainer.world_size, 1))
        batches = -(-rows // loader.batch_size)
    if isinstance(trainer.limit_train_batches, int):
        batches = min(batches, trainer.limit_train_batches)
    elif trainer.limit_train_batches < 1:
        batches = int(batches * trainer.limit_train_batches)
    if 0 < batches < interval:
        rank_zero_warn(
            f"trainer.val_check_interval={interval} is more than the {batches} training batches of one epoch of "
            "this data; validating at the end of every epoch instead"
        )
        trainer.val_check_interval = 1.0


def log_row_stats(datamodule: Any) -> None:
    """Send each split's row counts (``rows``, ``truncated``, ``skipped``, per reason) to the trainer's loggers.

    Called when the trainer first asks for training data; the counts land in the CSV log at step 0 as
    ``data/<split>/<count>``, e.g. ``data/train/truncated``.
    """
    trainer = datamodule.trainer
    if trainer is None or not trainer.is_global_zero or getattr(datamodule, "_row_stats_logged", False):
        return
    datamodule._row_stats_logged = True
    metrics = {
        f"data/{split}/{key.replace(': ', '/').replace(' ', '_')}": float(value)
        for split, counts in datamodule.stats.items()
        for key, value in counts.items()
    }
    for logger in trainer.loggers:
        logger.log_metrics(metrics, step=0)
