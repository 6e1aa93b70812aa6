"""``val/win_rate``: the policy's greedy completions against the starting policy's, at every validation."""

from __future__ import annotations

from typing import Any

import torch
from lightning import Callback, LightningModule, Trainer
from lightning.pytorch.utilities import rank_zero_warn

from lit_align.data.sources import BAD_ROW, DataSource, load_splits
from lit_align.data.validation import text_or_messages
from lit_align.errors import ConfigError, DataError
from lit_align.metrics import win_tie_rates
from lit_align.rewards.scorers import build_scorer
from lit_align.rewards.verifiable import Match
from lit_align.rollout.sampling import SamplingConfig
from lit_align.rollout.texts import as_reward_input, complete
from lit_align.types import Shape


class WinRate(Callback):
    """Log ``val/win_rate`` and ``val/tie_rate`` of the policy against the model it started from.

    At the start of fit the starting policy greedy-decodes ``num_prompts`` validation prompts once and its scores
    are kept (in checkpoints too, so a resumed run still compares with the true start): no second model is held.
    At each validation the current policy decodes the same prompts and each prompt is a win, a tie (half) or a loss.

    Args:
        scorer: ``verifier``, a reward model (path or name) or a reward function's import path (as in ``evaluate``).
        scorer_kwargs: Keyword arguments of a reward function or class.
        source: Where the prompts come from; default: the data module's source, its validation split read as
            prompt rows.
        prompt_field: Column of the prompt.
        num_prompts: Prompts decoded at each validation (at most; the first of the validation rows).
        max_new_tokens: Tokens per completion at most.
        batch_size: Prompts per generation batch.
        match: Which answer check ``verifier`` means (``leading`` or ``final``).

    """

    def __init__(
        self,
        scorer: str = "verifier",
        scorer_kwargs: dict[str, Any] | None = None,
        source: DataSource | None = None,
        prompt_field: str = "prompt",
        num_prompts: int = 64,
        max_new_tokens: int = 16,
        batch_size: int = 64,
        match: Match = "leading",
    ) -> None:
        """See the class docstring."""
        self.scorer_name, self.scorer_kwargs, self.source = scorer, scorer_kwargs, source
        self.prompt_field, self.num_prompts, self.match = prompt_field, num_prompts, match
        self.sampling = SamplingConfig(temperature=0.0, max_new_tokens=max_new_tokens)
        self.batch_size = batch_size
        self.prompts: list[Any] = []
        self.columns: dict[str, list[Any]] = {}
        self.start_scores: list[float | None] | None = None
        self.scorer = None

    def _load_prompts(self, trainer: Trainer) -> None:
        source = self.source or getattr(trainer.datamodule, "source", None)
        if source is None:
            raise ConfigError("WinRate.source", "the data module has no source; give the prompts' source")
        train, val = load_splits(source, Shape.PROMPT)
        rows = val or train
        prompts, columns, first_error = [], {}, None
        for i, row in enumerate(rows.rows):
            if len(prompts) == self.num_prompts:
                break
            try:  # the data module reports (or stops on) bad rows itself: here they are only left out
                if row.get(BAD_ROW) is not None:
                    raise DataError(rows.origin, row[BAD_ROW], row=i + 1)
                prompt = text_or_messages(row, self.prompt_field, rows.origin, i)
            except DataError as error:
                first_error = first_error or str(error)
                continue
            prompts.append(prompt)
            for key, value in row.items():
                if key != BAD_ROW:
                    columns.setdefault(key, []).append(value)
        self.prompts, self.columns = prompts, columns
        if not prompts:
            self._disable(f"no usable prompt in {rows.origin} (first problem: {first_error})")

    def _scores(self, trainer: Trainer, pl_module: LightningModule) -> list[float | None]:
        """Greedy completions of the prompts by the current policy, scored."""
        tokenizer = trainer.datamodule.tokenizer
        completions = complete(pl_module.policy, tokenizer, self.prompts, self.sampling, batch_size=self.batch_size)
        texts = [as_reward_input(p, row[0].text) for p, row in zip(self.prompts, completions, strict=True)]
        ids = [row[0].token_ids for row in completions]
        total = self.scorer(self.prompts, texts, self.columns, ids).total
        return [None if torch.isnan(v) else float(v) for v in total]

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Score the starting policy once (kept from the checkpoint on resume)."""
        self.scorer = build_scorer(self.scorer_name, match=self.match, kwargs=self.scorer_kwargs, key="WinRate.scorer")
        self._load_prompts(trainer)
        if self.prompts and self.start_scores is None:
            self.start_scores = self._scores(trainer, pl_module)
            if all(score is None for score in self.start_scores):
                self._disable(
                    f"the scorer '{self.scorer_name}' scored none of {len(self.prompts)} validation prompts (the "
                    "verifier needs an 'answer' column)"
                )

    def _disable(self, why: str) -> None:
        """Warn that no win rate will be logged, and why (training itself is not affected)."""
        self.start_scores = None
        rank_zero_warn(f"WinRate: {why}; val/win_rate is not logged (set the callback's init_args.scorer or source)")

    def on_validation_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Log the win and tie rates of the current policy against the start."""
        if trainer.sanity_checking or self.start_scores is None:
            return
        win, tie, _ = win_tie_rates(self._scores(trainer, pl_module), self.start_scores)
        pl_module.log("val/win_rate", win, sync_dist=True)  # the same on every process (each decodes every prompt)
        pl_module.log("val/tie_rate", tie, sync_dist=True)

    def state_dict(self) -> dict[str, Any]:
        """The starting policy's scores."""
        return {"start_scores": self.start_scores}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`."""
        self.start_scores = state_dict["start_scores"]
