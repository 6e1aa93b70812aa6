"""What ``evaluate`` and ``generate`` share: prompt rows read from a source, and completions with their scores."""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from lit_align.data.sources import Split, readable_rows
from lit_align.data.validation import messages_field, required_field, text_or_messages
from lit_align.errors import DataError
from lit_align.metrics import response_summary
from lit_align.rewards.combine import RewardSet
from lit_align.rewards.verifiable import Match, answer_matches
from lit_align.rollout.texts import Completion, as_reward_input


def read_prompts(
    rows: Split, prompt_field: str, answer_field: str | None, group_field: str | None = None
) -> tuple[list[Any], list[str | None], list[str], dict[str, list[Any]]]:
    """``(prompts, answers, groups, columns)`` of every row.

    The prompt (text or messages), its answer as text (None where the row has none or ``answer_field`` is None), its
    ``group_field`` value (when given) and every other column by name.
    """
    prompts, answers, groups, columns = [], [], [], defaultdict(list)
    for i, row in readable_rows(rows):
        prompts.append(text_or_messages(row, prompt_field, rows.origin, i))
        answer = row.get(answer_field) if answer_field else None
        answers.append(None if answer is None else str(answer))
        if group_field is not None:
            groups.append(str(required_field(row, group_field, rows.origin, i)))
        for key, value in row.items():
            if key != prompt_field:
                columns[key].append(value)
    return prompts, answers, groups, dict(columns)


def read_demonstrations(
    rows: Split, prompt_field: str, real_field: str, answer_field: str | None
) -> tuple[list[Any], list[str], list[str | None], dict[str, list[Any]]]:
    """``(prompts, real answers, answers, columns)`` of SFT rows, for SPIN's pairs.

    A row holds ``prompt_field`` and ``real_field`` (text, or messages whose last one is the answer), or a
    ``messages`` conversation whose last message (the assistant's) is the answer and the rest the prompt.
    """
    prompts, reals, answers, columns = [], [], [], defaultdict(list)
    for i, row in readable_rows(rows):
        if row.get(prompt_field) is None and row.get("messages") is not None:
            conversation = messages_field(row, "messages", rows.origin, i)
            if len(conversation) < 2 or conversation[-1]["role"] != "assistant":
                raise DataError(rows.origin, "must end with an assistant message (the real answer)", row=i + 1,
                                field="messages")  # fmt: skip
            prompt, real = conversation[:-1], conversation[-1]["content"]
        else:
            prompt = text_or_messages(row, prompt_field, rows.origin, i)
            real = text_or_messages(row, real_field, rows.origin, i)
            real = real[-1]["content"] if isinstance(real, list) else real
        prompts.append(prompt)
        reals.append(real)
        answer = row.get(answer_field) if answer_field else None
        answers.append(None if answer is None else str(answer))
        for key, value in row.items():
            if key not in (prompt_field, "messages"):
                columns[key].append(value)
    return prompts, reals, answers, dict(columns)


@dataclass
class Scored:
    """A model's completions of every prompt with their scores and exact match (B prompts x N samples).

    Attributes:
        completions: B lists of N completions.
        correct: Exact match of each completion (None where the prompt has no answer).
        scores: The scorer's value of each completion (None where it failed), or None without a scorer.
        failures: The scorer's failure counts by reason.

    """

    completions: list[list[Completion]]
    correct: list[list[bool | None]]
    scores: list[list[float | None]] | None = None
    failures: dict[str, int] = field(default_factory=dict)

    @classmethod
    def score(
        cls,
        completions: list[list[Completion]],
        prompts: list[Any],
        answers: list[str | None],
        columns: dict[str, list[Any]],
        scorer: RewardSet | None,
        match: Match,
    ) -> Scored:
        """Score every completion (rows repeated once per sample, as the online objectives call rewards)."""
        n = len(completions[0]) if completions else 1
        flat = [c for row in completions for c in row]
        inputs = [as_reward_input(prompts[i // n], c.text) for i, c in enumerate(flat)]
        correct = answer_matches(inputs, [a for a in answers for _ in range(n)], match)
        out = cls(completions, [correct[i * n : (i + 1) * n] for i in range(len(prompts))])
        if scorer is not None:
            repeated = [p for p in prompts for _ in range(n)]
            given = {k: [v for v in values for _ in range(n)] for k, values in columns.items()}
            result = scorer(repeated, inputs, given, [c.token_ids for c in flat])
            values = [None if math.isnan(v) else v for v in result.total.tolist()]
            out.scores = [values[i * n : (i + 1) * n] for i in range(len(prompts))]
            out.failures = dict(result.failures)
        return out

    def picked(self, picks: list[int | None] | None) -> Scored:
        """The same prompts with one completion each: ``picks[i]`` (the first where None), or all when None."""
        if picks is None:
            return self
        chosen = [p if p is not None else 0 for p in picks]

        def one(rows: list[list[Any]]) -> list[list[Any]]:
            return [[row[j]] for row, j in zip(rows, chosen, strict=True)]

        return Scored(one(self.completions), one(self.correct), None if self.scores is None else one(self.scores),
                      self.failures)  # fmt: skip

    def summary(self, rows: list[int]) -> dict[str, float]:
        """:func:`~lit_align.metrics.response_summary` of the completions of prompts ``rows``, and pass@N."""
        flat = [(i, j) for i in rows for j in range(len(self.completions[i]))]
        out = response_summary(
            [self.completions[i][j].text for i, j in flat],
            [self.completions[i][j].token_ids for i, j in flat],
            None if self.scores is None else [self.scores[i][j] for i, j in flat],
            [self.correct[i][j] for i, j in flat],
        )
        n = len(self.completions[rows[0]]) if rows else 1
        answered = [i for i in rows if self.correct[i][0] is not None]
        if n > 1 and answered:
            out[f"pass@{n}"] = sum(any(self.correct[i]) for i in answered) / len(answered)
        return out

    def flat_scores(self, rows: list[int]) -> list[float | None]:
        """Scores of the completions of prompts ``rows``, prompt by prompt."""
        assert self.scores is not None
        return [s for i in rows for s in self.scores[i]]
