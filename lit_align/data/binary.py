"""BinaryDataModule: prompt, completion and a true/false label -> :class:`BinaryBatch` es (KTO)."""

from __future__ import annotations

import random
from collections import Counter
from typing import Any

from lightning import LightningDataModule
from lightning.pytorch.utilities import rank_zero_warn
from torch.utils.data import DataLoader

from lit_align.data.checks import DataCheck
from lit_align.data.collate import collate_binary
from lit_align.data.pairwise import pair_texts
from lit_align.data.rows import OnBadRow, SplitLoaders, load_rows, train_loader
from lit_align.data.sources import DataSource
from lit_align.data.templates import fit_to_length, tokenize_prompt_completion
from lit_align.data.validation import bool_field, text_or_messages
from lit_align.domains import NonNegativeInt, PositiveInt, check_args
from lit_align.errors import ConfigError, DataError
from lit_align.types import Shape


class BinaryDataModule(LightningDataModule):
    """Unpaired feedback: each row is a prompt, a completion and a boolean label (True = desirable).

    With ``unpair: true`` the rows are pairwise (prompt, chosen, rejected) and each pair becomes a desirable and
    an undesirable row. Every row also carries the completion of a row with another prompt (a fixed random pairing,
    :func:`mismatched_partners`) so KTO can estimate its KL reference point on mismatched (prompt, completion)
    pairs, and so reference log-probs of those pairs can be precomputed. Labels must be real booleans: 1, "true" or
    "yes" are refused.
    """

    def __init__(
        self,
        tokenizer: str = "lit-align/tiny-sft",
        source: DataSource = DataSource(),  # noqa: B008 (frozen dataclass)
        max_length: PositiveInt = 512,
        max_prompt_length: PositiveInt | None = None,
        batch_size: PositiveInt = 8,
        eval_batch_size: PositiveInt | None = None,
        prompt_field: str = "prompt",
        completion_field: str = "completion",
        label_field: str = "label",
        unpair: bool = False,
        on_bad_row: OnBadRow = "error",
        checks: list[DataCheck] | None = None,
        num_workers: NonNegativeInt = 0,
        group_by_length: bool = False,
        num_proc: PositiveInt | None = None,
        trust_remote_code: bool = False,
        chat_template: str | None = None,
        seed: int = 0,
    ) -> None:
        """Configure the data.

        Args:
            tokenizer: Tokenizer name or path; the CLI links it to the policy's ``name_or_path``.
            source: Where the rows come from (see :class:`DataSource`).
            max_length: Maximum tokens of prompt + completion.
            max_prompt_length: Keep at most this many prompt tokens (its end) when a row is too long.
            batch_size: Rows per training batch (per device).
            eval_batch_size: Rows per validation batch; defaults to ``batch_size``.
            prompt_field: Column of the prompt (text or messages).
            completion_field: Column of the completion (text or messages).
            label_field: Column of the boolean label.
            unpair: Read pairwise rows (``prompt``/``chosen``/``rejected``) and split each into two labelled rows.
            on_bad_row: ``error`` stops at the first bad row; ``skip`` drops bad rows and counts them.
            checks: Data checks run on the raw rows before tokenizing: ``duplicates`` (a row repeating an earlier one),
                ``contradictions`` (an earlier completion of the same prompt with the other label), ``leaks`` (a
                validation or test row whose prompt is in training). Rows they find are bad rows: ``on_bad_row: error``
                stops at the first (naming it), ``skip`` drops and counts them (``data/<split>/skipped/...`` in the CSV
                log). ``lit-align check-data`` reports more.
            num_workers: DataLoader worker processes.
            group_by_length: Batch training rows of similar length together (less padding; shuffled between
                batches, resumable mid-epoch; :mod:`lit_align.data.sampling`).
            num_proc: Processes that tokenize the rows (``datasets.map``); None tokenizes in this process. The
                tokens are cached by content either way, so a second run on the same data reads them.
            trust_remote_code: Allow tokenizer code from the hub; the CLI links it to the policy's setting.
            chat_template: Override the tokenizer's chat template: a name (``chatml``), a Jinja file or Jinja text.
            seed: Seed of the pairing of rows with the mismatched completions used for the KL estimate.

        """
        check_args(BinaryDataModule.__init__, locals(), "BinaryDataModule")
        if max_prompt_length is not None and max_prompt_length >= max_length:
            raise ConfigError(
                "BinaryDataModule.max_prompt_length",
                f"must be below max_length ({max_length}), got {max_prompt_length}",
            )
        super().__init__()
        self.save_hyperparameters()
        self.source = source
        self.tokenizer = None
        self.splits: SplitLoaders | None = None
        self.rows: dict[str, list[dict[str, Any]]] = {}
        self.stats: dict[str, Counter] = {}

    def setup(self, stage: str) -> None:
        """Load, validate and tokenize the rows, then pair each with another row's completion."""
        if self.tokenizer is not None:
            return
        hp = self.hparams
        shape = Shape.PAIRWISE if hp.unpair else Shape.BINARY
        encode = encode_unpaired if hp.unpair else encode_binary
        prompt_of = lambda row: row.get(hp.prompt_field, row)  # noqa: E731
        claims = (
            None
            if hp.unpair
            else {
                "label_of": lambda row: (
                    row.get(hp.prompt_field),
                    row.get(hp.completion_field),
                    row.get(hp.label_field),
                )
            }
        )
        for name, (rows, stats) in load_rows(self, collate_binary, shape, encode, prompt_of, claims=claims).items():
            self.stats[name] = stats
            self.rows[name] = _with_mismatched_completions(_flatten(rows), random.Random(hp.seed))
        labels = {item["label"] for item in self.rows["train"]}
        if len(labels) == 1:
            kind = "desirable (true)" if labels == {True} else "undesirable (false)"
            raise DataError(
                self.source.describe(self.source.split),
                f"every training row is {kind}; KTO needs both desirable and undesirable rows",
                field=hp.label_field,
            )

    def train_dataloader(self) -> DataLoader:
        """Shuffled training rows."""
        return train_loader(self)

    def val_dataloader(self) -> DataLoader | list:
        """Validation rows (none when the source has no validation rows)."""
        return self.splits.optional("val")

    def test_dataloader(self) -> DataLoader | list:
        """Test rows (none when the source has no test split)."""
        return self.splits.optional("test")

    def ordered_dataloaders(self) -> dict[str, DataLoader]:
        """Unshuffled loaders over every split, for precomputing reference log-probs once."""
        return self.splits.ordered()


def encode_binary(hp: Any, tokenizer: Any, origin: str, row: dict[str, Any], index: int) -> dict[str, Any]:
    """One binary-feedback row -> ``{"items": [prompt_ids, completion_ids, label]}`` fitted to the length limits.

    An encoder as :func:`~lit_align.data.rows.load_rows` takes it: ``(hparams, tokenizer, origin, row, index)``.
    """
    label = bool_field(row, hp.label_field, origin, index)
    prompt = text_or_messages(row, hp.prompt_field, origin, index)
    completion = text_or_messages(row, hp.completion_field, origin, index)
    return _items([_tokenize(hp, tokenizer, origin, index, prompt, completion, label)])


def encode_unpaired(hp: Any, tokenizer: Any, origin: str, row: dict[str, Any], index: int) -> dict[str, Any]:
    """One preference row -> two items: its chosen completion desirable, its rejected one undesirable."""
    prompt, chosen, rejected = pair_texts(row, (hp.prompt_field, "chosen", "rejected"), origin, index)
    if chosen == rejected:
        raise DataError(origin, "chosen and rejected are identical", row=index + 1, field="rejected")
    return _items(
        [
            _tokenize(hp, tokenizer, origin, index, prompt, chosen, True),
            _tokenize(hp, tokenizer, origin, index, prompt, rejected, False),
        ]
    )


def _tokenize(
    hp: Any, tokenizer: Any, origin: str, index: int, prompt: Any, completion: Any, label: bool
) -> dict[str, Any]:
    prompt_ids, completion_ids = tokenize_prompt_completion(tokenizer, prompt, completion)
    try:
        prompt_ids, (completion_ids,), truncated = fit_to_length(
            prompt_ids, [completion_ids], hp.max_length, hp.max_prompt_length
        )
    except ValueError as error:
        raise DataError(origin, str(error), row=index + 1, field=hp.prompt_field) from error
    return {"prompt_ids": prompt_ids, "completion_ids": completion_ids, "label": label, "truncated": truncated}


def _items(items: list[dict[str, Any]]) -> dict[str, Any]:
    # One source row yields one item (or two when unpairing); it counts as truncated once.
    return {"items": items, "truncated": any([item.pop("truncated") for item in items])}


def _flatten(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [item for row in rows for item in row["items"]]


def mismatched_partners(prompt_keys: list[Any], rng: random.Random) -> list[int]:
    """For every item, the index of another item whose prompt differs (a fixed random pairing).

    Items are grouped by prompt, the groups laid out in random order (items shuffled within), and each item is
    paired with the one ``m`` places further round the circle, ``m`` the largest group: a group's block is at most
    ``m`` long, so the partner lies outside it whenever ``2 m <= n``. When one prompt holds more than half the items,
    some partners must share it (:func:`_with_mismatched_completions` warns).

    Args:
        prompt_keys: A hashable key of each item's prompt (its token ids).
        rng: Random source of the layout.

    Returns:
        ``partner[i]`` for every item i.

    """
    groups: dict[Any, list[int]] = {}
    for i, key in enumerate(prompt_keys):
        groups.setdefault(key, []).append(i)
    blocks = list(groups.values())
    rng.shuffle(blocks)
    circle = []
    for block in blocks:
        rng.shuffle(block)
        circle += block
    n, shift = len(circle), max((len(b) for b in blocks), default=0)
    partner = [0] * n
    for position, item in enumerate(circle):
        partner[item] = circle[(position + shift) % n] if n > 1 else item
    return partner


def _with_mismatched_completions(items: list[dict[str, Any]], rng: random.Random) -> list[dict[str, Any]]:
    """Give every item an index and the (prompt-truncated) completion of an item with another prompt."""
    keys = [tuple(item["prompt_ids"]) for item in items]
    partner = mismatched_partners(keys, rng)
    shared = sum(keys[i] == keys[j] for i, j in enumerate(partner))
    if shared:
        rank_zero_warn(
            f"BinaryDataModule: {shared} of {len(items)} rows get a completion of their own prompt for KTO's KL "
            "estimate (one prompt holds more than half the rows)"
        )
    return [
        {**item, "index": i, "kl_completion_ids": items[partner[i]]["completion_ids"]} for i, item in enumerate(items)
    ]
