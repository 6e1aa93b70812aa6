"""PromptDataModule: prompt-only rows for the online objectives -> :class:`PromptBatch` es (left-padded)."""

from __future__ import annotations

from collections import Counter
from typing import Any

from lightning import LightningDataModule
from torch.utils.data import DataLoader

from lit_align.data.collate import collate_prompts
from lit_align.data.rows import OnBadRow, SplitLoaders, load_rows, train_loader
from lit_align.data.sources import DataSource
from lit_align.data.templates import is_conversational, render_prompt
from lit_align.data.validation import text_or_messages
from lit_align.domains import NonNegativeInt, PositiveInt, check_args
from lit_align.types import Shape


class PromptDataModule(LightningDataModule):
    """Prompts (plain text or chat messages) with every other column kept for the reward functions.

    Each batch holds ``batch_size`` distinct prompts; the online objectives sample G completions of each one on the
    process that holds it, so the G completions of a prompt always stay together, also under DDP (where Lightning's
    distributed sampler gives each process its own prompts). Prompts are left-padded for generation; a prompt longer
    than ``max_prompt_length`` keeps its end and is counted.
    """

    def __init__(
        self,
        tokenizer: str = "lit-align/tiny-sft",
        source: DataSource = DataSource(),  # noqa: B008 (frozen dataclass)
        max_prompt_length: PositiveInt = 256,
        batch_size: PositiveInt = 8,
        eval_batch_size: PositiveInt | None = None,
        prompt_field: str = "prompt",
        as_chat: bool = False,
        on_bad_row: OnBadRow = "error",
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
            max_prompt_length: Keep at most this many prompt tokens (the prompt's end).
            batch_size: Prompts per training batch (per device); each yields G completions.
            eval_batch_size: Prompts per validation batch; defaults to ``batch_size``.
            prompt_field: Column of the prompt; every other column is passed to the rewards by its name.
            as_chat: Wrap plain-text prompts in one user message so the tokenizer's chat template applies (for
                instruct models on datasets such as GSM8K whose questions are plain text).
            on_bad_row: ``error`` stops at the first bad row; ``skip`` drops bad rows and counts them.
            num_workers: DataLoader worker processes.
            group_by_length: Batch training rows of similar length together (less padding; shuffled between
                batches, resumable mid-epoch; :mod:`lit_align.data.sampling`).
            num_proc: Processes that tokenize the rows (``datasets.map``); None tokenizes in this process. The
                tokens are cached by content either way, so a second run on the same data reads them.
            trust_remote_code: Allow tokenizer code from the hub; the CLI links it to the policy's setting.
            chat_template: Override the tokenizer's chat template: a name (``chatml``), a Jinja file or Jinja text.

        """
        check_args(PromptDataModule.__init__, locals(), "PromptDataModule")
        super().__init__()
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
        for name, (rows, stats) in load_rows(
            self, collate_prompts, Shape.PROMPT, encode_prompt, lambda row: row.get(hp.prompt_field, row), self._extra
        ).items():
            self.rows[name], self.stats[name] = rows, stats

    def _extra(self, row: dict[str, Any]) -> dict[str, Any]:
        """Fields added when a row is read: the prompt and the row's other columns (for reward functions)."""
        hp = self.hparams
        return {"prompt": prompt_of_row(hp, row), "columns": {k: v for k, v in row.items() if k != hp.prompt_field}}

    def train_dataloader(self) -> DataLoader:
        """Shuffled training prompts."""
        return train_loader(self)

    def val_dataloader(self) -> DataLoader | list:
        """Validation prompts (none when the source has no validation rows)."""
        return self.splits.optional("val")

    def test_dataloader(self) -> DataLoader | list:
        """Test prompts (none when the source has no test split)."""
        return self.splits.optional("test")


def prompt_of_row(hp: Any, row: dict[str, Any], origin: str = "", index: int = 0) -> Any:
    """The row's prompt (text or messages); with ``as_chat`` a text prompt becomes one user message."""
    prompt = text_or_messages(row, hp.prompt_field, origin, index)
    return [{"role": "user", "content": prompt}] if hp.as_chat and not is_conversational(prompt) else prompt


def encode_prompt(hp: Any, tokenizer: Any, origin: str, row: dict[str, Any], index: int) -> dict[str, Any]:
    """One prompt row -> its ``prompt_ids`` (left-truncated to ``max_prompt_length``).

    The prompt text and the other columns are not stored with the tokens: :meth:`PromptDataModule._extra` adds
    them when the row is read, so they keep their ``datasets`` types.
    """
    prompt = prompt_of_row(hp, row, origin, index)
    # Chat templates hold their own special tokens; plain text gets the tokenizer's (a BOS for Llama-like).
    ids = tokenizer(render_prompt(tokenizer, prompt), add_special_tokens=not is_conversational(prompt))
    prompt_ids = ids.input_ids
    return {"prompt_ids": prompt_ids[-hp.max_prompt_length :], "truncated": len(prompt_ids) > hp.max_prompt_length}
