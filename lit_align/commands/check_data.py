"""Audit a preference, binary-feedback or SFT data set before training on it (``lit-align check-data``).

One JSON report on stdout, one warning line per finding on stderr. The checks are the pure functions of
:mod:`lit_align.data.checks`; this module reads the rows, runs them per split and words the warnings.
"""

from __future__ import annotations

import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Literal

from jsonargparse import auto_cli

from lit_align.commands.output import rounded
from lit_align.data import checks
from lit_align.data.pairwise import encode_pair, pair_texts
from lit_align.data.sources import DataSource, Split, load_splits, load_test_split
from lit_align.data.validation import bool_field, messages_field, text_or_messages
from lit_align.domains import NonNegativeFloat, PositiveInt, check_args
from lit_align.errors import ConfigError, DataError
from lit_align.metrics import cohen_kappa
from lit_align.rewards.scorers import build_scorer
from lit_align.rewards.verifiable import Match
from lit_align.types import Shape

DataShape = Literal["auto", "pairwise", "binary", "sft"]
SHOWN = 10  # row numbers listed per finding
SCORE_FIELDS = (("score_chosen", "score_rejected"), ("chosen_score", "rejected_score"))  # common names, found alone


@dataclass
class Item:
    """One readable row: its number (1-based), prompt, completions and label as the data modules read them."""

    row: int
    raw: dict[str, Any]
    prompt: Any
    chosen: Any  # the completion of binary and SFT rows
    rejected: Any = None
    label: bool | None = None


def detect_shape(columns: set[str]) -> str:
    """The data shape whose columns a split has."""
    if {"chosen", "rejected"} <= columns:
        return "pairwise"
    if {"completion", "label"} <= columns:
        return "binary"
    if "messages" in columns or {"prompt", "completion"} <= columns:
        return "sft"
    raise ConfigError("--shape", f"cannot tell the data shape from the columns {sorted(columns)}; give --shape")


def read_items(split: Split, shape: str, fields: SimpleNamespace) -> tuple[list[Item], list[str]]:
    """The split's readable rows, and one message for each row that is not (its file, row and field)."""
    items, bad = [], []
    for i, raw in enumerate(split.rows):
        try:
            if raw.get("_lit_align_bad_row") is not None:
                raise DataError(split.origin, raw["_lit_align_bad_row"], row=i + 1)
            if shape == "pairwise":
                prompt, chosen, rejected = pair_texts(
                    raw, (fields.prompt, fields.chosen, fields.rejected), split.origin, i
                )
                items.append(Item(i + 1, raw, prompt, chosen, rejected))
            elif shape == "binary":
                prompt = text_or_messages(raw, fields.prompt, split.origin, i)
                completion = text_or_messages(raw, fields.completion, split.origin, i)
                items.append(Item(i + 1, raw, prompt, completion, label=bool_field(raw, fields.label, split.origin, i)))
            elif raw.get(fields.messages) is not None:
                messages = messages_field(raw, fields.messages, split.origin, i)
                items.append(Item(i + 1, raw, messages[:-1], messages[-1:]))
            else:
                prompt = text_or_messages(raw, fields.prompt, split.origin, i)
                items.append(Item(i + 1, raw, prompt, text_or_messages(raw, fields.completion, split.origin, i)))
        except DataError as error:
            bad.append(str(error))
    return items, bad


def _finding(items: list[Item], indices: list[int]) -> dict[str, Any]:
    return {"count": len(indices), "rows": [items[i].row for i in indices[:SHOWN]]}


def check_data(
    source: DataSource = DataSource(),  # noqa: B008
    shape: DataShape = "auto",
    prompt_field: str = "prompt",
    chosen_field: str = "chosen",
    rejected_field: str = "rejected",
    completion_field: str = "completion",
    label_field: str = "label",
    messages_field: str = "messages",
    against: DataSource | None = None,
    against_field: str = "prompt",
    ngram: PositiveInt = 8,
    tokenizer: str | None = None,
    max_length: PositiveInt | None = None,
    max_prompt_length: PositiveInt | None = None,
    score_fields: tuple[str, str] | None = None,
    min_margin: NonNegativeFloat = 0.5,
    label_fields: tuple[str, str] | None = None,
    scorer: str | None = None,
    scorer_kwargs: dict[str, Any] | None = None,
    binary_threshold: float = 0.5,
    match: Match = "leading",
    min_pairs: PositiveInt = 10_000,
    output: str | None = None,
    trust_remote_code: bool = False,
) -> dict:
    """Print one JSON report about a data set (and a warning line per finding on stderr); return it.

    Per split (train, validation, test where the source has them): unreadable rows, exact duplicate rows,
    contradicting pairs (A over B and B over A for one prompt; a completion labelled both ways for binary rows),
    pairs whose chosen and rejected are identical as text, as tokens or after truncation (with ``--tokenizer``),
    length bias (share of pairs whose chosen is longer, mean difference; tokens with a tokenizer, else words),
    low-margin pairs (``--score_fields``, found by name when the data use ``score_chosen`` / ``score_rejected``),
    agreement between two label columns (Cohen's kappa, ``--label_fields``) and the share of labels a
    ``--scorer`` contradicts with its 95% Wilson interval (an estimated mislabel rate). Across splits: prompts of
    validation or test that are in train (or test in validation); with ``--against``, rows whose prompt repeats an
    evaluation prompt exactly or shares a word ``--ngram`` with one. A warning below ``--min_pairs`` rows.

    Args:
        source: The data set (any source the data modules read); the embedded task by default.
        shape: ``pairwise``, ``binary`` or ``sft``; ``auto`` tells it from the columns.
        prompt_field: Column of the prompt.
        chosen_field: Column of the preferred completion (pairwise).
        rejected_field: Column of the dispreferred completion (pairwise).
        completion_field: Column of the completion (binary, SFT prompt/completion rows).
        label_field: Column of the boolean label (binary).
        messages_field: Column of a conversation (SFT).
        against: An evaluation set to look for leaked prompts of (its training split is read).
        against_field: Column of ``against`` that holds its prompts.
        ngram: Words per n-gram of the overlap check.
        tokenizer: Tokenizer for token lengths and the truncation check (e.g. the policy's name).
        max_length: With ``tokenizer``: the data module's ``max_length``, to find pairs that truncation makes equal.
        max_prompt_length: With ``max_length``: the data module's ``max_prompt_length``.
        score_fields: Columns of the chosen and rejected scores (a low margin is below ``min_margin``).
        min_margin: Score difference under which a pair counts as low-margin.
        label_fields: Two label columns of the same rows (e.g. two annotators) to measure agreement of.
        scorer: ``verifier``, a reward model or a reward function (as in ``evaluate``) to estimate the mislabel rate.
        scorer_kwargs: Keyword arguments of a reward function or class.
        binary_threshold: Binary rows: the scorer's verdict is "desirable" above this score.
        match: Which answer check ``--scorer verifier`` means (``leading`` or ``final``).
        min_pairs: Fewer training rows than this gets a warning.
        output: Also write the report to this JSON file.
        trust_remote_code: Allow tokenizer or reward-model code from the hub.

    """
    check_args(check_data, locals(), "--")
    if max_length is not None and tokenizer is None:
        raise ConfigError("--max_length", "needs --tokenizer (the truncation check tokenizes the rows)")
    if shape == "auto" and source.path.startswith("lit-align/"):
        shape = "pairwise"
    shape_enum = {"pairwise": Shape.PAIRWISE, "binary": Shape.BINARY, "sft": Shape.SFT}.get(shape, Shape.PAIRWISE)
    train, val = load_splits(source, shape_enum)
    splits = {"train": train, "validation": val, "test": load_test_split(source, shape_enum)}
    splits = {name: split for name, split in splits.items() if split is not None}
    if shape == "auto":
        shape = detect_shape(set(train.rows.column_names))
    fields = SimpleNamespace(
        prompt=prompt_field, chosen=chosen_field, rejected=rejected_field, completion=completion_field,
        label=label_field, messages=messages_field,
    )  # fmt: skip
    tok = None
    if tokenizer is not None:
        from lit_align.roles.tokenizer import load_tokenizer

        tok = load_tokenizer(tokenizer, trust_remote_code=trust_remote_code, key="--tokenizer")
    for key, names in (("--score_fields", score_fields), ("--label_fields", label_fields)):
        missing = [n for n in names or () if n not in train.rows.column_names]
        if missing:
            raise ConfigError(key, f"{missing} not among the columns of {train.origin}: {train.rows.column_names}")
    reward = build_scorer(scorer, match=match, kwargs=scorer_kwargs, trust_remote_code=trust_remote_code)
    report: dict[str, Any] = {"data": train.origin, "shape": shape, "splits": {}}
    warnings: list[str] = []
    items_of: dict[str, list[Item]] = {}
    for name, split in splits.items():
        items, bad = read_items(split, shape, fields)
        items_of[name] = items
        audit = _audit_split(items, bad, shape, tok, max_length, max_prompt_length, score_fields, min_margin,
                             label_fields, reward, binary_threshold, fields)  # fmt: skip
        report["splits"][name] = audit
        warnings += [f"{split.origin}: {w}" for w in _split_warnings(audit, shape)]
    prompts = {name: [checks.canonical(it.prompt) for it in items] for name, items in items_of.items()}
    overlap: dict[str, Any] = {}
    for later, earlier in (("validation", "train"), ("test", "train"), ("test", "validation")):
        if later in prompts and earlier in prompts:
            found = checks.leaked(prompts[later], prompts[earlier])
            overlap[f"{later}_in_{earlier}"] = _finding(items_of[later], found)
            if found:
                warnings.append(
                    f"{len(found)} {later} rows have a prompt that is also in {earlier} (rows "
                    f"{', '.join(map(str, overlap[f'{later}_in_{earlier}']['rows']))}): {later} metrics overstate "
                    "how the model does on new prompts; split by prompt"
                )
    report["split_overlap"] = overlap
    if against is not None:
        report["against"] = _against(against, against_field, items_of, ngram, warnings)
    pairs = len(items_of["train"])
    if pairs < min_pairs:
        warnings.append(
            f"{train.origin}: {pairs} rows is below about {min_pairs}: preference objectives over-fit small sets "
            "quickly; hold out validation rows, watch val/rewards/accuracies and keep runs short"
        )
    report["warnings"] = warnings
    for line in warnings:
        print(f"warning: {line}", file=sys.stderr)
    report = rounded(report)
    if output:
        Path(output).write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps(report))
    return report


def _audit_split(items, bad, shape, tok, max_length, max_prompt_length, score_fields, min_margin, label_fields,
                 reward, binary_threshold, fields) -> dict[str, Any]:  # noqa: ANN001  # fmt: skip
    """Every per-split check of :func:`check_data` on one split's readable rows."""
    out: dict[str, Any] = {"rows": len(items) + len(bad), "unreadable": {"count": len(bad), "first": bad[:3]}}
    keys = [checks.canonical({k: v for k, v in it.raw.items() if k != "_lit_align_bad_row"}) for it in items]
    out["duplicates"] = _finding(items, checks.repeated(keys))
    if not items:
        return out
    if shape == "pairwise":
        triples = [(checks.canonical(it.prompt), checks.canonical(it.chosen), checks.canonical(it.rejected))
                   for it in items]  # fmt: skip
        out["contradictions"] = _finding(items, checks.contradictions(triples))
        out["identical"] = _finding(items, [i for i, (_, c, r) in enumerate(triples) if c == r])
        if tok is not None:
            out.update(_token_checks(items, tok, max_length, max_prompt_length, fields))
        else:
            out["length_bias"] = checks.length_bias(
                [len(checks.words(it.chosen)) for it in items], [len(checks.words(it.rejected)) for it in items]
            ) | {"unit": "words"}
        found = score_fields or next((f for f in SCORE_FIELDS if all(n in items[0].raw for n in f)), None)
        if found:
            margins = [_margin(it.raw, found) for it in items]
            low = [i for i, m in enumerate(margins) if m is not None and abs(m) < min_margin]
            out["low_margin"] = _finding(items, low) | {"fields": list(found), "threshold": min_margin}
    elif shape == "binary":
        triples = [(checks.canonical(it.prompt), checks.canonical(it.chosen), it.label) for it in items]
        out["contradictions"] = _finding(items, checks.conflicting_labels(triples))
        out["desirable_share"] = sum(bool(it.label) for it in items) / len(items)
    if label_fields is not None:
        first, second = ([it.raw.get(f) for it in items] for f in label_fields)
        both = [(a, b) for a, b in zip(first, second, strict=True) if a is not None and b is not None]
        kappa = cohen_kappa([str(a) for a, _ in both], [str(b) for _, b in both]) if both else math.nan
        out["label_agreement"] = {"fields": list(label_fields), "rows": len(both), "kappa": kappa}
    if reward is not None and shape in ("pairwise", "binary"):
        out["mislabel"] = _mislabel(items, shape, reward, binary_threshold)
    return out


def _margin(raw: dict[str, Any], fields: tuple[str, str]) -> float | None:
    try:
        return float(raw[fields[0]]) - float(raw[fields[1]])
    except (KeyError, TypeError, ValueError):
        return None


def _token_checks(items, tok, max_length, max_prompt_length, fields) -> dict[str, Any]:  # noqa: ANN001
    """Length bias in tokens, and pairs that are identical as tokens or after truncation to ``max_length``."""
    from lit_align.data.templates import tokenize_prompt_completion

    hp = SimpleNamespace(prompt_field=fields.prompt, chosen_field=fields.chosen, rejected_field=fields.rejected,
                         max_length=max_length or 10**9, max_prompt_length=max_prompt_length)  # fmt: skip
    lengths, ties, truncation_ties = [], [], []
    for i, it in enumerate(items):
        _, chosen = tokenize_prompt_completion(tok, it.prompt, it.chosen)
        _, rejected = tokenize_prompt_completion(tok, it.prompt, it.rejected)
        lengths.append((len(chosen), len(rejected)))
        if it.chosen == it.rejected:
            continue
        try:
            encode_pair(hp, tok, "check", it.raw, it.row - 1)
        except DataError as error:
            if "after truncation" in str(error):
                truncation_ties.append(i)
            elif "identical as tokens" in str(error):
                ties.append(i)
    out = {"identical_tokens": _finding(items, ties)}
    if max_length is not None:
        out["truncation_ties"] = _finding(items, truncation_ties) | {"max_length": max_length}
    out["length_bias"] = checks.length_bias([c for c, _ in lengths], [r for _, r in lengths]) | {"unit": "tokens"}
    return out


def _mislabel(items: list[Item], shape: str, reward, binary_threshold: float) -> dict[str, Any]:  # noqa: ANN001
    columns = {k: [it.raw.get(k) for it in items] for k in items[0].raw}
    if shape == "pairwise":
        n = len(items)
        doubled = {k: v + v for k, v in columns.items()}
        scores = reward([it.prompt for it in items] * 2, [it.chosen for it in items] + [it.rejected for it in items],
                        doubled).total.tolist()  # fmt: skip
        verdicts = [
            None if math.isnan(c) or math.isnan(r) or c == r else c > r
            for c, r in zip(scores[:n], scores[n:], strict=True)
        ]
        labels: list[bool | None] = [True] * n
    else:
        scores = reward([it.prompt for it in items], [it.chosen for it in items], columns).total.tolist()
        verdicts = [None if math.isnan(s) else s > binary_threshold for s in scores]
        labels = [it.label for it in items]
    return checks.disagreement(labels, verdicts)


def _against(against: DataSource, field: str, items_of: dict, n: int, warnings: list[str]) -> dict[str, Any]:
    """Rows of every split whose prompt repeats a prompt of the evaluation set, exactly or by a word n-gram."""
    rows, _ = load_splits(against, Shape.PROMPT)
    texts = [checks.words(r.get(field, "")) for r in rows.rows]
    out: dict[str, Any] = {"data": rows.origin, "items": len(texts), "ngram": n}
    for name, items in items_of.items():
        exact, shared = checks.overlap([checks.words(it.prompt) for it in items], texts, n)
        out[name] = {"exact": _finding(items, exact), "ngram": _finding(items, shared)}
        if exact or shared:
            warnings.append(
                f"{name}: {len(exact)} prompts repeat a prompt of {rows.origin} and {len(shared)} share a {n}-word "
                "sequence with one: the evaluation overstates what was learned; drop them from the training data"
            )
    return out


def _split_warnings(audit: dict[str, Any], shape: str) -> list[str]:
    """One sentence per finding of a split's audit: what it is, why it matters, the usual fix."""
    out = []

    def rows(key: str) -> str:
        return ", ".join(map(str, audit[key]["rows"]))

    if audit["unreadable"]["count"]:
        out.append(f"{audit['unreadable']['count']} rows cannot be read, e.g. {audit['unreadable']['first'][0]}")
    if audit["duplicates"]["count"]:
        out.append(f"{audit['duplicates']['count']} exact duplicate rows (rows {rows('duplicates')}): they weigh "
                   "double in training; drop them")  # fmt: skip
    if audit.get("contradictions", {}).get("count"):
        what = "pairs state the reverse of an earlier pair" if shape == "pairwise" else "completions got both labels"
        out.append(f"{audit['contradictions']['count']} {what} (rows {rows('contradictions')}): their gradients "
                   "cancel; keep one label per pair")  # fmt: skip
    for key, what in (
        ("identical", "as text"),
        ("identical_tokens", "as tokens"),
        ("truncation_ties", "after truncation"),
    ):
        if audit.get(key, {}).get("count"):
            out.append(f"{audit[key]['count']} pairs have chosen and rejected identical {what} (rows {rows(key)}): "
                       "no signal; the data module stops on them (on_bad_row: skip drops them)")  # fmt: skip
    bias = audit.get("length_bias")
    if bias and bias["chosen_longer"] > 0.6:
        out.append(f"chosen is longer in {bias['chosen_longer']:.0%} of pairs ({bias['mean_difference']:+.1f} "
                   f"{bias['unit']} on average): a policy can learn length instead of quality; watch completion "
                   "length, or use a length-normalised loss (ipo, simpo) or length-controlled evaluation")  # fmt: skip
    if audit.get("low_margin", {}).get("count"):
        low = audit["low_margin"]
        out.append(f"{low['count']} pairs differ by less than {low['threshold']} in {low['fields']}: near-ties "
                   "are noisy labels; drop them or raise label_smoothing")  # fmt: skip
    agreement = audit.get("label_agreement")
    if agreement and not math.isnan(agreement["kappa"]) and agreement["kappa"] < 0.4:
        out.append(f"the label columns {agreement['fields']} agree little (Cohen's kappa {agreement['kappa']:.2f}): "
                   "expect noisy labels; consider loss_type: robust or label_smoothing")  # fmt: skip
    mislabel = audit.get("mislabel")
    if mislabel and mislabel["compared"] and mislabel["interval"][0] > 0.05:
        low, high = mislabel["interval"]
        out.append(f"the scorer contradicts {mislabel['rate']:.1%} of labels (95% interval {low:.1%}-{high:.1%}): "
                   "set label_smoothing near that rate or use loss_type: robust")  # fmt: skip
    return out


def check_data_cli(args: list[str] | None = None) -> None:
    """``lit-align check-data --help``."""
    auto_cli(check_data, args=sys.argv[2:] if args is None else args, prog="lit-align check-data", exit_on_error=False)
