"""Monte-Carlo step labels for ``lit-align generate --mode step-labels`` (Math-Shepherd; Wang et al., 2024).

Each sampled solution is split into steps; for every step k but the last, the model continues the solution from
its first k steps ``rollouts`` times, and step k's label is the share of those continuations whose final answer is
right (``soft``), or 1 if any of them is (``hard``, Math-Shepherd's hard estimate). The last step's label is whether
the solution itself is right. The rows are in the step-wise format :class:`~lit_align.data.StepwiseDataModule`
reads, so a process reward model trains on them as on hand-labelled steps.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

from lit_align.rewards.judges import text_of
from lit_align.rewards.verifiable import Match, answer_matches
from lit_align.rollout.sampling import SamplingConfig
from lit_align.rollout.texts import Completion, as_reward_input, complete

StepLabel = Literal["soft", "hard"]


def split_steps(text: str, separator: str) -> list[str]:
    """The non-empty steps of a solution's text."""
    return [step for step in text.split(separator) if step.strip()]


def step_label(reached: list[bool], how: StepLabel) -> float | int:
    """A step's label from whether each continuation after it reached the right answer: their share, or any."""
    if how == "hard":
        return int(any(reached))
    return sum(reached) / len(reached)


def monte_carlo_rows(
    model: Any,
    tokenizer: Any,
    prompts: list[Any],
    answers: list[str | None],
    completions: list[list[Completion]],
    *,
    rollouts: int,
    separator: str,
    how: StepLabel,
    sampling: SamplingConfig,
    batch_size: int,
    seed: int,
    match: Match,
    checker: Callable[[str, list[str]], list[bool]] | None = None,
) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """Step-labelled rows of every distinct solution of every prompt, and counts for the summary.

    Returns ``(rows, counts)``; a row is ``{"prompt_index", "completions", "labels"}`` (the caller adds provenance).
    With ``checker(question, steps) -> exact labels``, ``counts`` also has how many steps' labels agree with the exact
    ones when read as right for a label above 0 (``agree_any``) and at least 0.5 (``agree_half``).
    """
    solutions = []  # (prompt index, steps, right)
    for i, samples in enumerate(completions):
        if answers[i] is None:
            continue
        for text in dict.fromkeys(c.text for c in samples):
            steps = split_steps(text, separator)
            if steps:
                right = answer_matches([as_reward_input(prompts[i], text)], [answers[i]], match)[0]
                solutions.append((i, steps, bool(right)))
    tasks = [(s, k) for s, (_, steps, _) in enumerate(solutions) for k in range(1, len(steps))]
    starts = [separator.join(solutions[s][1][:k]) + separator for s, k in tasks]
    asked = [prompts[solutions[s][0]] for s, _ in tasks]
    continued = complete(model, tokenizer, asked, sampling, num_samples=rollouts, batch_size=batch_size, seed=seed,
                         prefixes=starts) if tasks else []  # fmt: skip
    labels: dict[tuple[int, int], float | int] = {}
    for (s, k), start, tries in zip(tasks, starts, continued, strict=True):
        i = solutions[s][0]
        texts = [as_reward_input(prompts[i], start + c.text) for c in tries]
        reached = answer_matches(texts, [answers[i]] * len(texts), match)
        labels[s, k] = step_label([bool(r) for r in reached], how)
    rows, counts = [], {"solutions": len(solutions), "steps": 0, "agree_any": 0, "agree_half": 0, "checked": 0}
    for s, (i, steps, right) in enumerate(solutions):
        values = [labels[s, k] for k in range(1, len(steps))] + [int(right) if how == "hard" else float(right)]
        rows.append({"prompt_index": i, "completions": steps, "labels": values})
        counts["steps"] += len(steps)
        if checker is not None:
            exact = checker(text_of(prompts[i]), steps)
            counts["checked"] += len(steps)
            counts["agree_any"] += sum((v > 0) == e for v, e in zip(values, exact, strict=True))
            counts["agree_half"] += sum((v >= 0.5) == e for v, e in zip(values, exact, strict=True))
    return rows, counts
