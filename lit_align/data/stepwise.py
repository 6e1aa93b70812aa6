"""StepwiseDataModule: solutions split into steps with a label per step -> :class:`StepwiseBatch` es (PRMs).

A row holds the common step-wise format (as TRL's ``PRMTrainer`` reads it): ``prompt`` (text or messages),
``completions`` (the solution's steps, strings) and ``labels`` (one per step: a bool, 0 / 1, or a soft value in
[0, 1] such as a Monte-Carlo success rate). Each step is followed by ``step_separator`` and its label sits on the
separator's last token, so a process reward model is read exactly where each step ends; every other token carries
``IGNORE_INDEX``. Hard labels stay integers and soft labels floats: a batch's labels are ``long`` unless a row in it
has a fractional label (then ``float``), never bool, so the ignore index can never turn into a label. The batch also
carries ``labels``: the token ids of the right steps that open the solution, for an optional language-modelling term.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Any, Literal

import torch
from lightning import LightningDataModule
from torch.utils.data import DataLoader

from lit_align.data.checks import DataCheck
from lit_align.data.collate import pad
from lit_align.data.rows import OnBadRow, SplitLoaders, load_rows, train_loader
from lit_align.data.sources import DataSource
from lit_align.data.templates import is_conversational, render_prompt
from lit_align.data.validation import required_field, text_or_messages
from lit_align.domains import NonNegativeInt, PositiveInt, check_args
from lit_align.errors import ConfigError, DataError
from lit_align.types import IGNORE_INDEX, Shape, StepwiseBatch


class StepwiseDataModule(LightningDataModule):
    """Step-labelled solutions for process reward models (:class:`~lit_align.objectives.ProcessRewardModel`).

    Rows longer than ``max_length`` are cut at the end (their later steps lose their labels) and counted; a row
    with no step end left within ``max_length`` is a bad row. A label that is not a bool, 0 / 1 or a number in
    [0, 1], a ``labels`` list whose length differs from ``completions``, or an empty step stop the run naming the
    file, row and field (or are skipped and counted with ``on_bad_row: skip``).
    """

    def __init__(
        self,
        tokenizer: str = "lit-align/tiny-sft",
        source: DataSource = DataSource(path="lit-align/chains"),  # noqa: B008 (frozen dataclass)
        max_length: PositiveInt = 512,
        batch_size: PositiveInt = 8,
        eval_batch_size: PositiveInt | None = None,
        prompt_field: str = "prompt",
        completions_field: str = "completions",
        labels_field: str = "labels",
        step_separator: str = "\n",
        supervise: Literal["steps", "outcome"] = "steps",
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
            source: Where the rows come from (see :class:`DataSource`); default: the embedded step-labelled chains.
            max_length: Maximum tokens per row (prompt + steps).
            batch_size: Rows per training batch (per device).
            eval_batch_size: Rows per validation batch; defaults to ``batch_size``.
            prompt_field: Column holding the prompt (text or messages).
            completions_field: Column holding the list of step strings.
            labels_field: Column holding one label per step.
            step_separator: Text appended to every step; the step's label sits on its last token. Scorers must
                split solutions on the same separator (:class:`~lit_align.rewards.prm.ProcessRewardScorer` does).
            supervise: ``steps`` labels every step end; ``outcome`` only the last one, with the solution's label
                (the lowest of its step labels: right only when every step is), which trains an outcome reward
                model (ORM) on the same rows, the comparison of Lightman et al. (2023).
            on_bad_row: ``error`` stops at the first bad row; ``skip`` drops bad rows and counts them.
            checks: Data checks on the raw rows (``duplicates``, ``leaks``), as in the other data modules.
            num_workers: DataLoader worker processes.
            group_by_length: Batch training rows of similar length together.
            num_proc: Processes that tokenize the rows.
            trust_remote_code: Allow tokenizer code from the hub; the CLI links it to the policy's setting.
            chat_template: Override the tokenizer's chat template: a name (``chatml``), a Jinja file or Jinja text.

        """
        check_args(StepwiseDataModule.__init__, locals(), "StepwiseDataModule")
        if not step_separator:
            raise ConfigError("data.init_args.step_separator", "is empty: the step ends could not be found")
        super().__init__()
        self.save_hyperparameters()
        self.source = source
        self.tokenizer = None
        self.splits: SplitLoaders | None = None
        self.rows: dict[str, list[dict[str, Any]]] = {}
        self.stats: dict[str, Counter] = {}

    def setup(self, stage: str) -> None:
        """Load the tokenizer and the rows, validate and tokenize them (once per process)."""
        if self.tokenizer is not None:
            return
        prompt_of = lambda row: row.get(self.hparams.prompt_field, row)  # noqa: E731
        loaded = load_rows(self, collate_stepwise, Shape.STEPWISE, encode_stepwise, prompt_of)
        for name, (rows, stats) in loaded.items():
            self.rows[name], self.stats[name] = rows, stats

    def train_dataloader(self) -> DataLoader:
        """Shuffled training batches."""
        return train_loader(self)

    def val_dataloader(self) -> DataLoader | list:
        """Return validation batches (none when the source has no validation rows)."""
        return self.splits.optional("val")

    def test_dataloader(self) -> DataLoader | list:
        """Return test batches (none when the source has no test split)."""
        return self.splits.optional("test")


def tokenize_steps(
    tokenizer: Any, prompt: str | list[dict[str, str]], steps: list[str], separator: str
) -> tuple[list[int], list[int]]:
    """Token ids of the prompt followed by every step and its separator, and the position of each step's end.

    The prompt goes through the chat template (with the generation prompt) when it is a message list; each step and
    each separator are tokenized on their own, so the step ends are the same tokens however the steps are joined.
    Returns ``(ids, ends)``: ``ends[k]`` is the index in ``ids`` of step k's last separator token.
    """
    ids = prompt_ids(tokenizer, prompt)
    separator_ids = tokenizer(separator, add_special_tokens=False).input_ids
    ends = []
    for step in steps:
        ids = ids + tokenizer(step, add_special_tokens=False).input_ids + separator_ids
        ends.append(len(ids) - 1)
    return ids, ends


def prompt_ids(tokenizer: Any, prompt: str | list[dict[str, str]]) -> list[int]:
    """The prompt's token ids: through the chat template (with the generation prompt) for messages, else as text."""
    if is_conversational(prompt):
        return tokenizer(render_prompt(tokenizer, prompt), add_special_tokens=False).input_ids
    return tokenizer(prompt).input_ids


def step_label(value: Any, origin: str, index: int, field: str, k: int) -> int | float:
    """A step's label as an int (bool, 0, 1) or a float in [0, 1]; anything else is a :class:`DataError`."""
    if isinstance(value, bool) or (isinstance(value, int) and value in (0, 1)):
        return int(value)
    if isinstance(value, float) and math.isfinite(value) and 0.0 <= value <= 1.0:
        return value
    raise DataError(origin, f"step {k + 1}: a label must be true/false, 0/1 or a number in [0, 1], got {value!r}",
                    row=index + 1, field=field)  # fmt: skip


def encode_stepwise(hp: Any, tokenizer: Any, origin: str, row: dict[str, Any], index: int) -> dict[str, Any]:
    """One step-wise row -> ``input_ids``, step ends (``positions``) and their ``step_labels``, cut at max_length."""
    prompt = text_or_messages(row, hp.prompt_field, origin, index)
    steps = required_field(row, hp.completions_field, origin, index)
    labels = required_field(row, hp.labels_field, origin, index)
    if not isinstance(steps, list) or not steps:
        raise DataError(origin, "must be a non-empty list of step strings", row=index + 1, field=hp.completions_field)
    for k, step in enumerate(steps):
        if not isinstance(step, str) or not step.strip():
            raise DataError(origin, f"step {k + 1} is empty or not a string: {step!r}", row=index + 1,
                            field=hp.completions_field)  # fmt: skip
    if not isinstance(labels, list) or len(labels) != len(steps):
        size = len(labels) if isinstance(labels, list) else type(labels).__name__
        raise DataError(origin, f"must hold one label per step: {len(steps)} steps, labels {size}", row=index + 1,
                        field=hp.labels_field)  # fmt: skip
    values = [step_label(v, origin, index, hp.labels_field, k) for k, v in enumerate(labels)]
    ids, ends = tokenize_steps(tokenizer, prompt, steps, hp.step_separator)
    every_end = [end for end in ends if end < hp.max_length]  # all steps', also under supervise: outcome
    start = len(prompt_ids(tokenizer, prompt))  # the first completion token
    right = next((k for k, v in enumerate(values) if v < 0.5), len(values))  # steps before the first wrong one
    stop = ends[right - 1] + 1 if right else start
    lm_labels = [IGNORE_INDEX] * start + ids[start:stop] + [IGNORE_INDEX] * (len(ids) - stop)
    if hp.supervise == "outcome":  # one label, at the end of the whole solution
        values, ends = [min(values)], ends[-1:]
    kept = [k for k, end in enumerate(ends) if end < hp.max_length]
    if not kept:
        raise DataError(origin, f"no step ends within max_length={hp.max_length} (the first ends at token "
                        f"{ends[0] + 1})", row=index + 1, field=hp.completions_field)  # fmt: skip
    return {
        "input_ids": ids[: hp.max_length],
        "positions": [ends[k] for k in kept],
        "step_labels": [values[k] for k in kept],
        "labels": lm_labels[: hp.max_length],
        "completion_start": min(start, hp.max_length),
        "step_ends": every_end,
        "truncated": len(ids) > hp.max_length,
    }


def step_token_flags(length: int, start: int, ends: list[int]) -> list[int]:
    """1 on a row's step tokens, 0 on its prompt (before ``start``) and on each step end.

    A step end is its separator's last token. The ``likelihood`` PRM reads the model's likelihood of the 1s, in
    training and in scoring alike.
    """
    flags = [0] * start + [1] * (length - start)
    for end in ends:
        flags[end] = 0
    return flags


def collate_stepwise(features: list[dict[str, Any]], pad_token_id: int) -> StepwiseBatch:
    """Right-pad rows into a :class:`StepwiseBatch`: labels at the step ends, ``IGNORE_INDEX`` elsewhere.

    The labels are ``long`` when every label of the batch is an integer, else ``float`` (soft labels).
    """
    input_ids = [f["input_ids"] for f in features]
    soft = any(isinstance(v, float) for f in features for v in f["step_labels"])
    ids = pad(input_ids, pad_token_id)
    labels = torch.full(ids.shape, IGNORE_INDEX, dtype=torch.float32 if soft else torch.long)
    for i, f in enumerate(features):
        labels[i, f["positions"]] = torch.tensor(f["step_labels"], dtype=labels.dtype)
    return StepwiseBatch(
        input_ids=ids,
        attention_mask=pad([[1] * len(x) for x in input_ids], 0),
        step_labels=labels,
        labels=pad([f["labels"] for f in features], IGNORE_INDEX),
        step_token_mask=pad(
            [step_token_flags(len(f["input_ids"]), f["completion_start"], f["step_ends"]) for f in features], 0
        ).bool(),  # fmt: skip
        index=torch.tensor([f["index"] for f in features]),
    )
