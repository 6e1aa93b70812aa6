"""Audits of a data set as pure functions over its rows' texts (``lit-align check-data``).

Duplicates, contradictions, leaks, length bias, low margins, label agreement and a mislabel estimate. Texts are
compared as canonical JSON (messages and plain text alike); overlap compares lowercased word sequences (runs of
letters and digits), so punctuation and spacing do not hide a leak.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Sequence
from typing import Any, Literal

from lit_align.metrics import wilson_interval

WORD = re.compile(r"\w+")


def canonical(value: Any) -> str:
    """A text, messages or any JSON value as one string that is equal exactly when the values are."""
    return json.dumps(value, sort_keys=True, ensure_ascii=False, default=str)


def words(value: Any) -> list[str]:
    """Lowercased words of a text or of the contents of messages."""
    if isinstance(value, list):
        value = " ".join(str(m.get("content", "")) if isinstance(m, dict) else str(m) for m in value)
    return WORD.findall(str(value).lower())


def repeated(keys: Sequence[str]) -> list[int]:
    """Indices of the items equal to an earlier item (the first of each kind is not counted)."""
    seen: set[str] = set()
    out = []
    for i, key in enumerate(keys):
        if key in seen:
            out.append(i)
        seen.add(key)
    return out


def contradictions(pairs: Sequence[tuple[str, str, str]]) -> list[int]:
    """Rows that state the reverse of an earlier row: (prompt, B over A) after (prompt, A over B).

    Args:
        pairs: ``(prompt, chosen, rejected)`` keys of each row.

    Returns:
        The later row of each contradicting couple (a couple counted once however often it repeats).

    """
    seen: set[tuple[str, str, str]] = set()
    counted: set[tuple[str, frozenset]] = set()
    out = []
    for i, (prompt, chosen, rejected) in enumerate(pairs):
        couple = (prompt, frozenset((chosen, rejected)))
        if (prompt, rejected, chosen) in seen and couple not in counted:
            counted.add(couple)
            out.append(i)
        seen.add((prompt, chosen, rejected))
    return out


def conflicting_labels(items: Sequence[tuple[str, str, bool]]) -> list[int]:
    """Binary feedback rows whose (prompt, completion) got the other label in an earlier row (counted once each)."""
    labels: dict[tuple[str, str], bool] = {}
    counted: set[tuple[str, str]] = set()
    out = []
    for i, (prompt, completion, label) in enumerate(items):
        key = (prompt, completion)
        if key in labels and labels[key] != label and key not in counted:
            counted.add(key)
            out.append(i)
        labels.setdefault(key, label)
    return out


def leaked(prompts: Sequence[str], earlier: Sequence[str]) -> list[int]:
    """Indices of ``prompts`` that also appear in ``earlier`` (e.g. validation prompts seen in training)."""
    known = set(earlier)
    return [i for i, p in enumerate(prompts) if p in known]


def ngrams(tokens: Sequence[str], n: int) -> set[tuple[str, ...]]:
    """The n-grams of a word sequence."""
    return {tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)}


def overlap(texts: Sequence[list[str]], against: Sequence[list[str]], n: int) -> tuple[list[int], list[int]]:
    """Rows that repeat an evaluation text exactly, and rows sharing at least one word n-gram with one.

    Args:
        texts: Words of each row (e.g. its prompt).
        against: Words of each evaluation item.
        n: N-gram size; texts shorter than n words can only match exactly.

    Returns:
        ``(exact, ngram)`` row indices; ``ngram`` includes the exact matches that have n words.

    """
    whole = {tuple(t) for t in against}
    grams: set[tuple[str, ...]] = set()
    for t in against:
        grams |= ngrams(t, n)
    exact = [i for i, t in enumerate(texts) if tuple(t) in whole]
    shared = [i for i, t in enumerate(texts) if ngrams(t, n) & grams]
    return exact, shared


def length_bias(chosen_lengths: Sequence[int], rejected_lengths: Sequence[int]) -> dict[str, float]:
    """How often the chosen completion is the longer one, and by how much on average.

    Returns:
        ``chosen_longer``, ``rejected_longer`` and ``same_length`` (shares of the pairs) and ``mean_difference``
        (chosen minus rejected length).

    """
    assert len(chosen_lengths) == len(rejected_lengths) and chosen_lengths, "one length pair per row"
    n = len(chosen_lengths)
    diffs = [c - r for c, r in zip(chosen_lengths, rejected_lengths, strict=True)]
    return {
        "chosen_longer": sum(d > 0 for d in diffs) / n,
        "rejected_longer": sum(d < 0 for d in diffs) / n,
        "same_length": sum(d == 0 for d in diffs) / n,
        "mean_difference": sum(diffs) / n,
    }


def disagreement(labels: Sequence[bool | None], predictions: Sequence[bool | None], z: float = 1.96) -> dict[str, Any]:
    """Share of rows whose label a scorer contradicts, with a Wilson interval: an estimate of the mislabel rate.

    With a perfect scorer (a verifier) it is the mislabel rate itself; with a scorer of accuracy q on correct
    labels it overstates it by about (1 - q) (1 - 2 m) for a true rate m.

    Args:
        labels: The data's label of each row (for pairs: True, "chosen is better").
        predictions: The scorer's verdict on the same question; None where it abstains (a tie, no score).
        z: Normal quantile of the interval (1.96: 95%).

    Returns:
        ``rate``, ``interval`` (low, high), ``disagree``, ``compared`` and ``abstained`` (rows without a verdict).

    """
    assert len(labels) == len(predictions), "one prediction per label"
    compared = [(a, b) for a, b in zip(labels, predictions, strict=True) if a is not None and b is not None]
    disagree = sum(a != b for a, b in compared)
    low, high = wilson_interval(disagree, len(compared), z)
    return {
        "rate": disagree / len(compared) if compared else math.nan,
        "interval": [low, high],
        "disagree": disagree,
        "compared": len(compared),
        "abstained": len(labels) - len(compared),
    }


# Checks inside a data module (``checks:``): a row a check finds becomes a bad row, so ``on_bad_row`` decides.

DataCheck = Literal["duplicates", "contradictions", "leaks"]
CHECK_REASONS = {
    "duplicates": "repeats an earlier row exactly (the duplicates check)",
    "contradictions": "states the reverse of an earlier row (the contradictions check)",
    "leaks": "its prompt is also in the training split (the leaks check)",
}


def mark_failed_checks(
    splits: dict[str, Any],
    checks: Sequence[str],
    prompt_of: Callable[[dict[str, Any]], Any],
    pair_of: Callable[[dict[str, Any]], tuple] | None = None,
    label_of: Callable[[dict[str, Any]], tuple] | None = None,
) -> None:
    """Mark the rows that fail ``checks`` as bad rows (the :data:`~lit_align.data.sources.BAD_ROW` column).

    ``duplicates`` and ``contradictions`` look within each split; ``leaks`` marks validation and test rows whose
    prompt is in the training split. A row already marked (unreadable) keeps its reason.

    Args:
        splits: ``{"train": Split, "val": Split | None, "test": Split | None}``; their rows are replaced.
        checks: Names of the checks to run.
        prompt_of: A raw row's prompt.
        pair_of: A preference row's ``(prompt, chosen, rejected)``: the reverse of an earlier pair contradicts it.
        label_of: A binary row's ``(prompt, completion, label)``: another label for an earlier completion contradicts
            it. Without either, ``contradictions`` finds nothing.

    """
    from lit_align.data.sources import BAD_ROW

    train_prompts = None
    if "leaks" in checks and splits.get("train") is not None:
        train_prompts = [canonical(prompt_of(_clean(r))) for r in splits["train"].rows]
    for name, split in splits.items():
        if split is None:
            continue
        rows = [_clean(r) for r in split.rows]
        reasons: list[str | None] = [None] * len(rows)
        found: list[tuple[str, list[int]]] = []
        if "duplicates" in checks:
            found.append(("duplicates", repeated([canonical(r) for r in rows])))
        if "contradictions" in checks and pair_of is not None:
            pairs = [tuple(canonical(v) for v in pair_of(r)) for r in rows]
            found.append(("contradictions", contradictions(pairs)))
        if "contradictions" in checks and label_of is not None:
            labelled = [(canonical(p), canonical(c), bool(label)) for p, c, label in map(label_of, rows)]
            found.append(("contradictions", conflicting_labels(labelled)))
        if "leaks" in checks and name != "train" and train_prompts is not None:
            found.append(("leaks", leaked([canonical(prompt_of(r)) for r in rows], train_prompts)))
        for check, indices in found:
            for i in indices:
                reasons[i] = reasons[i] or CHECK_REASONS[check]
        if not any(reasons):
            continue
        if BAD_ROW in split.rows.column_names:
            reasons = [old or new for old, new in zip(split.rows[BAD_ROW], reasons, strict=True)]
            split.rows = split.rows.remove_columns(BAD_ROW)
        split.rows = split.rows.add_column(BAD_ROW, reasons)


def _clean(row: dict[str, Any]) -> dict[str, Any]:
    from lit_align.data.sources import BAD_ROW

    return {k: v for k, v in row.items() if k != BAD_ROW}
