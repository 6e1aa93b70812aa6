"""SFTDataModule: prompt/completion pairs or chat ``messages`` -> right-padded :class:`SFTBatch` es."""

from __future__ import annotations

from collections import Counter
from functools import partial
from typing import Any

from lightning import LightningDataModule
from torch.utils.data import DataLoader

from lit_align.data.collate import collate_sft
from lit_align.data.rows import OnBadRow, SplitLoaders, tokenize_splits, train_loader
from lit_align.data.sources import DataSource, Split
from lit_align.data.templates import tokenize_prompt_completion
from lit_align.data.validation import messages_field, text_or_messages
from lit_align.domains import NonNegativeInt, PositiveInt, check_args
from lit_align.errors import DataError
from lit_align.roles.tokenizer import load_tokenizer
from lit_align.types import IGNORE_INDEX, Shape


class SFTDataModule(LightningDataModule):
    """Supervised fine-tuning data: each row is a ``messages`` conversation or a ``prompt`` and a ``completion``.

    A conversation trains on its last message, which must come from the assistant; everything before it is the
    prompt. Plain-text and message-list prompts/completions are both accepted; message lists go through the
    tokenizer's chat template. Rows longer than ``max_length`` are cut at the end and counted; a row whose prompt
    leaves no completion token within ``max_length`` stops the run, or is skipped and counted with
    ``on_bad_row: skip``.
    """

    def __init__(
        self,
        tokenizer: str = "lit-align/tiny-sft",
        source: DataSource = DataSource(),  # noqa: B008 (frozen dataclass)
        max_length: PositiveInt = 512,
        batch_size: PositiveInt = 8,
        eval_batch_size: PositiveInt | None = None,
        completion_only_loss: bool = True,
        messages_field: str = "messages",
        prompt_field: str = "prompt",
        completion_field: str = "completion",
        on_bad_row: OnBadRow = "error",
        num_workers: NonNegativeInt = 0,
        trust_remote_code: bool = False,
    ) -> None:
        """Configure the data.

        Args:
            tokenizer: Tokenizer name or path; the CLI links it to the policy's ``name_or_path``.
            source: Where the rows come from (see :class:`DataSource`).
            max_length: Maximum tokens per row (prompt + completion).
            batch_size: Rows per training batch (per device).
            eval_batch_size: Rows per validation batch; defaults to ``batch_size``.
            completion_only_loss: Train on completion tokens only; False trains on every token.
            messages_field: Column holding a conversation (used when the dataset has it).
            prompt_field: Column holding the prompt (text or messages).
            completion_field: Column holding the completion (text or messages).
            on_bad_row: ``error`` stops at the first bad row; ``skip`` drops bad rows and counts them.
            num_workers: DataLoader worker processes.
            trust_remote_code: Allow tokenizer code from the hub; the CLI links it to the policy's setting.

        """
        check_args(SFTDataModule.__init__, locals(), "SFTDataModule")
        super().__init__()
        self.save_hyperparameters()
        # Under LightningCLI, hparams hold the config as given (dicts); keep the parsed objects here.
        self.source = source
        self.tokenizer = None
        self.splits: SplitLoaders | None = None
        self.rows: dict[str, list[dict[str, Any]]] = {}
        self.stats: dict[str, Counter] = {}

    def setup(self, stage: str) -> None:
        """Load the tokenizer and the rows, validate and tokenize them (once per process)."""
        if self.tokenizer is not None:
            return
        hp = self.hparams
        self.tokenizer = load_tokenizer(
            hp.tokenizer, trust_remote_code=hp.trust_remote_code, key="data.init_args.tokenizer"
        )
        collate = partial(collate_sft, pad_token_id=self.tokenizer.pad_token_id)
        self.splits = SplitLoaders(collate, hp.batch_size, hp.eval_batch_size, hp.num_workers)
        self.rows = self.splits.rows
        for name, (rows, stats) in tokenize_splits(
            self.source, Shape.SFT, self._encode, hp.on_bad_row, self._prompt_of
        ).items():
            self.rows[name], self.stats[name] = rows, stats

    def _prompt_of(self, row: dict[str, Any]) -> Any:
        """Everything before the trained answer, to keep rows of one prompt on one side of a ``val_size`` split."""
        messages = row.get(self.hparams.messages_field)
        if isinstance(messages, list):
            return messages[:-1]
        return row.get(self.hparams.prompt_field, row)

    def _encode(self, split: Split, row: dict[str, Any], index: int) -> dict[str, Any]:
        hp = self.hparams
        use_messages = hp.messages_field in row
        prompt, completion = self._prompt_completion(row, use_messages, split.origin, index)
        prompt_ids, completion_ids = tokenize_prompt_completion(self.tokenizer, prompt, completion)
        if len(prompt_ids) >= hp.max_length:
            field = hp.messages_field if use_messages else hp.prompt_field
            raise DataError(
                split.origin,
                f"the prompt ({len(prompt_ids)} tokens) leaves no room for the completion at max_length="
                f"{hp.max_length}",
                row=index + 1,
                field=field,
            )
        prompt_labels = prompt_ids if not hp.completion_only_loss else [IGNORE_INDEX] * len(prompt_ids)
        return {
            "input_ids": (prompt_ids + completion_ids)[: hp.max_length],
            "labels": (prompt_labels + completion_ids)[: hp.max_length],
            "truncated": len(prompt_ids) + len(completion_ids) > hp.max_length,
        }

    def _prompt_completion(self, row: dict[str, Any], use_messages: bool, origin: str, index: int) -> tuple:
        hp = self.hparams
        if use_messages:
            messages = messages_field(row, hp.messages_field, origin, index)
            if messages[-1]["role"] != "assistant":
                raise DataError(
                    origin, "the last message must come from the assistant", row=index + 1, field=hp.messages_field
                )
            return messages[:-1], messages[-1:]
        return (
            text_or_messages(row, hp.prompt_field, origin, index),
            text_or_messages(row, hp.completion_field, origin, index),
        )

    def train_dataloader(self) -> DataLoader:
        """Shuffled training batches."""
        return train_loader(self)

    def val_dataloader(self) -> DataLoader | list:
        """Return validation batches (none when the source has no validation rows)."""
        return self.splits.optional("val")

    def test_dataloader(self) -> DataLoader | list:
        """Return test batches (none when the source has no test split)."""
        return self.splits.optional("test")
