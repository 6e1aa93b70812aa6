"""PairwiseDataModule: prompt, chosen and rejected completions -> :class:`PairwiseBatch` es."""

from __future__ import annotations

from collections import Counter
from typing import Any

from lightning import LightningDataModule
from torch.utils.data import DataLoader

from lit_align.data.checks import DataCheck
from lit_align.data.collate import collate_pairwise
from lit_align.data.rows import OnBadRow, SplitLoaders, load_rows, train_loader
from lit_align.data.sources import DataSource
from lit_align.data.templates import (
    fit_to_length,
    is_conversational,
    split_implicit_prompt,
    tokenize_prompt_completion,
)
from lit_align.data.validation import text_or_messages
from lit_align.domains import NonNegativeInt, PositiveInt, check_args
from lit_align.errors import ConfigError, DataError
from lit_align.types import Shape


def pair_texts(row: dict[str, Any], fields: tuple[str, str, str], origin: str, index: int) -> tuple:
    """Read a row's prompt, chosen and rejected (text or messages), ``fields`` naming their columns in that order.

    Without a prompt column, chosen and rejected are whole conversations and their shared beginning is the prompt.
    A plain-text prompt next to chosen and rejected conversations that open with it (the layout of binarized
    UltraFeedback copies) gives the shared opening turns as the prompt and the rest as the completions.

    Raises:
        DataError: A field is missing or malformed, the conversations share no beginning to take a prompt from,
            or nothing is left of a completion after the shared prompt.

    """
    prompt_field, chosen_field, rejected_field = fields
    chosen = text_or_messages(row, chosen_field, origin, index)
    rejected = text_or_messages(row, rejected_field, origin, index)
    if row.get(prompt_field) is not None:
        prompt = text_or_messages(row, prompt_field, origin, index)
        if is_conversational(prompt) or not is_conversational(chosen) or not is_conversational(rejected):
            return prompt, chosen, rejected
        shared, chosen_rest, rejected_rest = split_implicit_prompt(chosen, rejected)
        if not shared or shared[-1]["role"] != "user" or shared[-1]["content"].strip() != prompt.strip():
            raise DataError(
                origin,
                "is plain text but chosen and rejected are conversations that do not open with it; give the prompt "
                "as messages, or only the completions in chosen and rejected",
                row=index + 1,
                field=prompt_field,
            )
        prompt, chosen, rejected = shared, chosen_rest, rejected_rest
    else:
        prompt, chosen, rejected = split_implicit_prompt(chosen, rejected)
        if not prompt:
            raise DataError(
                origin,
                f"is missing, and {chosen_field} and {rejected_field} share no beginning to take it from",
                row=index + 1,
                field=prompt_field,
            )
    for field, rest in ((chosen_field, chosen), (rejected_field, rejected)):
        if not rest:
            raise DataError(
                origin, "nothing left after the prompt shared with the other completion", row=index + 1, field=field
            )
        if is_conversational(rest) and rest[0]["role"] != "assistant":
            raise DataError(
                origin,
                f"after the prompt shared with the other completion, the next message is from the {rest[0]['role']}, "
                "not the assistant",
                row=index + 1,
                field=field,
            )
    return prompt, chosen, rejected


class PairwiseDataModule(LightningDataModule):
    """Preference pairs: a prompt, a chosen and a rejected completion (plain text or chat messages).

    When the data have no prompt column, chosen and rejected are whole conversations sharing a beginning
    (HH-RLHF style) and the shared part becomes the prompt. Rows longer than ``max_length`` keep the prompt's end
    and the completions' start; such rows are counted. Identical chosen and rejected, empty completions and
    prompts that leave no room for a completion stop the run, or are skipped and counted with
    ``on_bad_row: skip``.
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
        chosen_field: str = "chosen",
        rejected_field: str = "rejected",
        on_bad_row: OnBadRow = "error",
        checks: list[DataCheck] | None = None,
        num_workers: NonNegativeInt = 0,
        group_by_length: bool = False,
        num_proc: PositiveInt | None = None,
        trust_remote_code: bool = False,
        chat_template: str | None = None,
    ) -> None:
        """Configure the data.

        Args:
            tokenizer: Tokenizer name or path; the CLI links it to the policy's ``name_or_path``.
            source: Where the rows come from (see :class:`DataSource`).
            max_length: Maximum tokens of prompt + completion.
            max_prompt_length: Keep at most this many prompt tokens (its end) when a row is too long.
            batch_size: Pairs per training batch (per device).
            eval_batch_size: Pairs per validation batch; defaults to ``batch_size``.
            prompt_field: Column of the prompt; when the data lack it, the prompt is the shared beginning.
            chosen_field: Column of the preferred completion.
            rejected_field: Column of the dispreferred completion.
            on_bad_row: ``error`` stops at the first bad row; ``skip`` drops bad rows and counts them.
            checks: Data checks run on the raw rows before tokenizing: ``duplicates`` (a row repeating an earlier one),
                ``contradictions`` (the reverse of an earlier pair for the same prompt), ``leaks`` (a validation or test
                row whose prompt is in training). Rows they find are bad rows: ``on_bad_row: error`` stops at the first
                (naming it), ``skip`` drops and counts them (``data/<split>/skipped/...`` in the CSV log). ``lit-align
                check-data`` reports more.
            num_workers: DataLoader worker processes.
            group_by_length: Batch training rows of similar length together (less padding; shuffled between
                batches, resumable mid-epoch; :mod:`lit_align.data.sampling`).
            num_proc: Processes that tokenize the rows (``datasets.map``); None tokenizes in this process. The
                tokens are cached by content either way, so a second run on the same data reads them.
            trust_remote_code: Allow tokenizer code from the hub; the CLI links it to the policy's setting.
            chat_template: Override the tokenizer's chat template: a name (``chatml``), a Jinja file or Jinja text.

        """
        check_args(PairwiseDataModule.__init__, locals(), "PairwiseDataModule")
        super().__init__()
        if max_prompt_length is not None and max_prompt_length >= max_length:
            raise ConfigError(
                "PairwiseDataModule.max_prompt_length",
                f"must be below max_length ({max_length}), got {max_prompt_length}",
            )
        self.save_hyperparameters()
        self.source = source
        self.tokenizer = None
        self.splits: SplitLoaders | None = None
        self.rows: dict[str, list[dict[str, Any]]] = {}
        self.stats: dict[str, Counter] = {}

    def setup(self, stage: str) -> None:
        """Load, validate and tokenize the rows (once per process)."""
        if self.tokenizer is not None:
            return
        hp = self.hparams
        claims = {"pair_of": lambda row: (self._prompt_of(row), row.get(hp.chosen_field), row.get(hp.rejected_field))}
        for name, (rows, stats) in load_rows(
            self, collate_pairwise, Shape.PAIRWISE, encode_pair, self._prompt_of, claims=claims
        ).items():
            self.rows[name], self.stats[name] = rows, stats

    def _prompt_of(self, row: dict[str, Any]) -> Any:
        """The row's prompt (or the conversations' shared beginning), to keep a prompt's pairs on one split side."""
        hp = self.hparams
        if row.get(hp.prompt_field) is not None:
            return row[hp.prompt_field]
        try:
            return split_implicit_prompt(row[hp.chosen_field], row[hp.rejected_field])[0]
        except (KeyError, TypeError):  # a malformed row: reported when it is encoded
            return row

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


def encode_pair(hp: Any, tokenizer: Any, origin: str, row: dict[str, Any], index: int) -> dict[str, Any]:
    """One preference row -> ``prompt_ids``, ``chosen_ids``, ``rejected_ids`` fitted to the length limits.

    An encoder as :func:`~lit_align.data.rows.load_rows` takes it: ``(hparams, tokenizer, origin, row, index)``.
    """
    fields = (hp.prompt_field, hp.chosen_field, hp.rejected_field)
    prompt, chosen, rejected = pair_texts(row, fields, origin, index)
    if chosen == rejected:
        raise DataError(origin, "chosen and rejected are identical", row=index + 1, field=hp.rejected_field)
    prompt_ids, chosen_ids = tokenize_prompt_completion(tokenizer, prompt, chosen)
    _, rejected_ids = tokenize_prompt_completion(tokenizer, prompt, rejected)
    try:
        prompt_ids, (chosen_ids, rejected_ids), truncated = fit_to_length(
            prompt_ids, [chosen_ids, rejected_ids], hp.max_length, hp.max_prompt_length
        )
    except ValueError as error:
        raise DataError(origin, str(error), row=index + 1, field=hp.prompt_field) from error
    if chosen_ids == rejected_ids:
        why = f"after truncation to max_length={hp.max_length}" if truncated else "as tokens"
        raise DataError(origin, f"chosen and rejected are identical {why}", row=index + 1, field=hp.rejected_field)
    return {
        "prompt_ids": prompt_ids,
        "chosen_ids": chosen_ids,
        "rejected_ids": rejected_ids,
        "truncated": truncated,
    }
