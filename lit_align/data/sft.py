"""SFTDataModule: prompt/completion pairs or chat ``messages`` -> right-padded :class:`SFTBatch` es."""

from __future__ import annotations

from functools import partial
from typing import Any

from lightning import LightningDataModule
from lightning.pytorch.utilities import rank_zero_warn
from torch.utils.data import DataLoader

from lit_align.data.collate import collate_sft
from lit_align.data.rows import make_loader
from lit_align.data.sources import DataSource, Split, load_splits, load_test_split
from lit_align.data.templates import tokenize_prompt_completion
from lit_align.data.validation import messages_field, text_or_messages
from lit_align.errors import DataError, LitAlignError
from lit_align.roles.tokenizer import load_tokenizer
from lit_align.types import IGNORE_INDEX, Shape


class SFTDataModule(LightningDataModule):
    """Supervised fine-tuning data: each row is a ``messages`` conversation or a ``prompt`` and a ``completion``.

    A conversation trains on its last message, which must come from the assistant; everything before it is the
    prompt. Plain-text and message-list prompts/completions are both accepted; message lists go through the
    tokenizer's chat template. Rows longer than ``max_length`` are cut at the end; rows left with no completion
    token are dropped. Both are counted and reported.
    """

    def __init__(
        self,
        tokenizer: str = "lit-align/tiny-sft",
        source: DataSource = DataSource(),  # noqa: B008 (frozen dataclass)
        max_length: int = 512,
        batch_size: int = 8,
        eval_batch_size: int | None = None,
        completion_only_loss: bool = True,
        messages_field: str = "messages",
        prompt_field: str = "prompt",
        completion_field: str = "completion",
        num_workers: int = 0,
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
            num_workers: DataLoader worker processes.
            trust_remote_code: Allow tokenizer code from the hub; the CLI links it to the policy's setting.

        """
        super().__init__()
        self.save_hyperparameters()
        # Under LightningCLI, hparams hold the config as given (dicts); keep the parsed objects here.
        self.source = source
        self.tokenizer = None
        self.train_rows: list[dict[str, list[int]]] = []
        self.val_rows: list[dict[str, list[int]]] = []
        self.test_rows: list[dict[str, list[int]]] = []

    def setup(self, stage: str) -> None:
        """Load the tokenizer and the rows, validate and tokenize them (once per process)."""
        if self.tokenizer is not None:
            return
        hp = self.hparams
        self.tokenizer = load_tokenizer(
            hp.tokenizer, trust_remote_code=hp.trust_remote_code, key="data.init_args.tokenizer"
        )
        train, val = load_splits(self.source, Shape.SFT)
        self.train_rows = self._tokenize(train)
        self.val_rows = self._tokenize(val) if val is not None else []
        test = load_test_split(self.source, Shape.SFT)
        self.test_rows = self._tokenize(test) if test is not None else []

    def _tokenize(self, split: Split) -> list[dict[str, list[int]]]:
        hp = self.hparams
        use_messages = hp.messages_field in split.rows.column_names
        out, truncated = [], 0
        for index, row in enumerate(split.rows):
            prompt, completion = self._prompt_completion(row, use_messages, split.origin, index)
            try:
                prompt_ids, completion_ids = tokenize_prompt_completion(self.tokenizer, prompt, completion)
            except LitAlignError as error:
                raise DataError(split.origin, str(error), row=index + 1) from error
            input_ids = (prompt_ids + completion_ids)[: hp.max_length]
            prompt_labels = prompt_ids if not hp.completion_only_loss else [IGNORE_INDEX] * len(prompt_ids)
            labels = (prompt_labels + completion_ids)[: hp.max_length]
            truncated += len(prompt_ids) + len(completion_ids) > hp.max_length
            if len(prompt_ids) < hp.max_length:
                out.append({"input_ids": input_ids, "labels": labels})
        if truncated:
            dropped = len(split.rows) - len(out)
            rank_zero_warn(
                f"{split.origin}: {truncated} of {len(split.rows)} rows cut to max_length={hp.max_length}, "
                f"{dropped} dropped because no completion token was left"
            )
        if not out:
            raise DataError(split.origin, f"no row fits in max_length={hp.max_length}")
        return out

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
        return self._loader(self.train_rows, self.hparams.batch_size, shuffle=True)

    def val_dataloader(self) -> DataLoader | list:
        """Return validation batches (none when the source has no validation rows)."""
        if not self.val_rows:
            return []
        return self._loader(self.val_rows, self.hparams.eval_batch_size or self.hparams.batch_size, shuffle=False)

    def test_dataloader(self) -> DataLoader | list:
        """Return test batches (none when the source has no test split)."""
        if not self.test_rows:
            return []
        return self._loader(self.test_rows, self.hparams.eval_batch_size or self.hparams.batch_size, shuffle=False)

    def _loader(self, rows: list, batch_size: int, shuffle: bool) -> DataLoader:
        collate = partial(collate_sft, pad_token_id=self.tokenizer.pad_token_id)
        return make_loader(rows, batch_size, collate, shuffle=shuffle, num_workers=self.hparams.num_workers)
