"""SFTDataModule: chat ``messages``, prompt/completion pairs or plain ``text`` -> right-padded :class:`SFTBatch` es."""

from __future__ import annotations

from collections import Counter
from typing import Any, Literal

from lightning import LightningDataModule
from torch.utils.data import DataLoader

from lit_align.data.checks import DataCheck
from lit_align.data.collate import collate_sft
from lit_align.data.rows import OnBadRow, SplitLoaders, load_rows, train_loader
from lit_align.data.sources import DataSource
from lit_align.data.templates import tokenize_conversation, tokenize_prompt_completion
from lit_align.data.validation import messages_field, text_field, text_or_messages
from lit_align.domains import NonNegativeInt, PositiveInt, check_args
from lit_align.errors import DataError
from lit_align.types import IGNORE_INDEX, Shape


class SFTDataModule(LightningDataModule):
    """Supervised fine-tuning data: a ``messages`` conversation, a ``prompt`` and a ``completion``, or a ``text``.

    A ``text`` row is language modelling: every token is trained on. A conversation trains on every assistant turn
    (``assistant_turns: last`` keeps only the final one); it must end with an assistant message. Plain-text and
    message-list prompts/completions are both accepted; message lists go through the tokenizer's chat template.
    Rows longer than ``max_length`` are cut at the end and counted; a row with no trained token left within
    ``max_length`` stops the run, or is skipped and counted with ``on_bad_row: skip``. A row's format is chosen by
    the columns it has, in the order messages, prompt, text.
    """

    def __init__(
        self,
        tokenizer: str = "lit-align/tiny-sft",
        source: DataSource = DataSource(),  # noqa: B008 (frozen dataclass)
        max_length: PositiveInt = 512,
        batch_size: PositiveInt = 8,
        eval_batch_size: PositiveInt | None = None,
        completion_only_loss: bool = True,
        assistant_turns: Literal["all", "last"] = "all",
        messages_field: str = "messages",
        prompt_field: str = "prompt",
        completion_field: str = "completion",
        text_field: str = "text",
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
            max_length: Maximum tokens per row (prompt + completion).
            batch_size: Rows per training batch (per device).
            eval_batch_size: Rows per validation batch; defaults to ``batch_size``.
            completion_only_loss: Train on completion (assistant) tokens only; False trains on every token.
            assistant_turns: For conversations: train on ``all`` assistant turns (as axolotl, and TRL's
                ``assistant_only_loss``) or only the ``last``.
            messages_field: Column holding a conversation (used when the row has it).
            prompt_field: Column holding the prompt (text or messages).
            completion_field: Column holding the completion (text or messages).
            text_field: Column holding plain text to train on whole (used when the row has no conversation and no
                prompt).
            on_bad_row: ``error`` stops at the first bad row; ``skip`` drops bad rows and counts them.
            checks: Data checks run on the raw rows before tokenizing: ``duplicates`` (a row repeating an earlier one),
                ``leaks`` (a validation or test row whose prompt is in training). Rows they find are bad rows:
                ``on_bad_row: error`` stops at the first (naming it), ``skip`` drops and counts them
                (``data/<split>/skipped/...`` in the CSV log). ``lit-align check-data`` reports more.
            num_workers: DataLoader worker processes.
            group_by_length: Batch training rows of similar length together (less padding; shuffled between
                batches, resumable mid-epoch; :mod:`lit_align.data.sampling`).
            num_proc: Processes that tokenize the rows (``datasets.map``); None tokenizes in this process. The
                tokens are cached by content either way, so a second run on the same data reads them.
            trust_remote_code: Allow tokenizer code from the hub; the CLI links it to the policy's setting.
            chat_template: Override the tokenizer's chat template: a name (``chatml``), a Jinja file or Jinja text.

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
        for name, (rows, stats) in load_rows(self, collate_sft, Shape.SFT, encode_sft, self._prompt_of).items():
            self.rows[name], self.stats[name] = rows, stats

    def _prompt_of(self, row: dict[str, Any]) -> Any:
        """The conversation's opening (or the prompt): rows of one prompt stay on one side of a ``val_size`` split."""
        messages = row.get(self.hparams.messages_field)
        if isinstance(messages, list):
            roles = [m.get("role") if isinstance(m, dict) else None for m in messages]
            return messages[: roles.index("assistant")] if "assistant" in roles else messages
        return row.get(self.hparams.prompt_field, row)

    def train_dataloader(self) -> DataLoader:
        """Shuffled training batches."""
        return train_loader(self)

    def val_dataloader(self) -> DataLoader | list:
        """Return validation batches (none when the source has no validation rows)."""
        return self.splits.optional("val")

    def test_dataloader(self) -> DataLoader | list:
        """Return test batches (none when the source has no test split)."""
        return self.splits.optional("test")


def encode_sft(hp: Any, tokenizer: Any, origin: str, row: dict[str, Any], index: int) -> dict[str, Any]:
    """One SFT row -> ``input_ids`` and ``labels`` (:data:`IGNORE_INDEX` on untrained tokens), cut at ``max_length``.

    An encoder as :func:`~lit_align.data.rows.load_rows` takes it: ``(hparams, tokenizer, origin, row, index)``.
    """
    if row.get(hp.messages_field) is not None:
        ids, trained = _conversation(hp, tokenizer, origin, row, index)
        field = hp.messages_field
    elif row.get(hp.prompt_field) is not None or row.get(hp.text_field) is None:
        prompt = text_or_messages(row, hp.prompt_field, origin, index)
        completion = text_or_messages(row, hp.completion_field, origin, index)
        prompt_ids, completion_ids = tokenize_prompt_completion(tokenizer, prompt, completion)
        ids, trained, field = (
            prompt_ids + completion_ids,
            [False] * len(prompt_ids) + [True] * len(completion_ids),
            hp.prompt_field,
        )
    else:
        text = text_field(row, hp.text_field, origin, index)
        ids = tokenizer(text).input_ids + [tokenizer.eos_token_id]
        trained, field = [True] * len(ids), hp.text_field
    if not any(trained[: hp.max_length]):
        raise DataError(
            origin,
            f"the prompt ({trained.index(True) if True in trained else len(ids)} tokens) leaves no room for the "
            f"completion at max_length={hp.max_length}",
            row=index + 1,
            field=field,
        )
    keep = ids[: hp.max_length]
    labels = [i if t or not hp.completion_only_loss else IGNORE_INDEX for i, t in zip(keep, trained, strict=False)]
    return {"input_ids": keep, "labels": labels, "truncated": len(ids) > hp.max_length}


def _conversation(
    hp: Any, tokenizer: Any, origin: str, row: dict[str, Any], index: int
) -> tuple[list[int], list[bool]]:
    messages = messages_field(row, hp.messages_field, origin, index)
    if messages[-1]["role"] != "assistant":
        raise DataError(origin, "the last message must come from the assistant", row=index + 1, field=hp.messages_field)
    return tokenize_conversation(tokenizer, messages, hp.assistant_turns)
