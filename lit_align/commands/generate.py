# Over 400 lines on purpose: one verb with six modes whose shard rows share the shard machinery and summary; the
# Monte-Carlo work lives in step_labels.py and the scored rows in scored.py.
"""Sample a model, score its completions and write training rows (``lit-align generate``).

``--mode pairs`` writes preference pairs that :class:`~lit_align.data.PairwiseDataModule` reads as they are;
``--mode sft`` writes the best-scored completions as SFT rows (rejection sampling, best-of-N fine-tuning) that
:class:`~lit_align.data.SFTDataModule` reads; ``--mode spin`` writes SPIN's pairs (Chen et al., 2024;
arXiv:2401.01335): the real answer of an SFT row over the model's own sample, a sample equal to the real answer
dropped and counted (``spin/identical_fraction``, SPIN's convergence signal); ``--mode cai-pairs`` and
``cai-sft`` use a constitution (:mod:`lit_align.rewards.constitution`) as the scorer: pairs ordered by the
principles (conflicts by priority), or each sample revised by the principles it breaks; ``--mode step-labels`` labels
each step of each sample by Monte-Carlo continuations (:mod:`lit_align.commands.step_labels`, Math-Shepherd) as
step-wise rows for a process reward model. Work is done in shards of
``shard_size`` prompts, each written whole (to a temporary name, then renamed) next to the output, so a restarted
command skips the finished ones and ends with the same file as an uninterrupted run.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from pathlib import Path
from typing import Any, Literal

import torch
from jsonargparse import auto_cli

from lit_align.commands.output import rounded
from lit_align.commands.scored import Scored, read_demonstrations, read_prompts
from lit_align.commands.step_labels import StepLabel, monte_carlo_rows
from lit_align.data.sources import DataSource, load_splits
from lit_align.domains import NonNegativeFloat, NonNegativeInt, PositiveFloat, PositiveInt, TopP, check_args
from lit_align.errors import ConfigError
from lit_align.ops.pairs import Pairing, select_pairs
from lit_align.rewards.combine import RewardSet, import_object
from lit_align.rewards.constitution import Constitution
from lit_align.rewards.judges import text_of
from lit_align.rewards.scorers import build_scorer
from lit_align.rewards.verifiable import Match
from lit_align.roles.models import ModelSpec, load_policy
from lit_align.roles.tokenizer import load_tokenizer
from lit_align.rollout.sampling import SamplingConfig
from lit_align.rollout.texts import as_reward_input, complete
from lit_align.types import Shape

Mode = Literal["pairs", "sft", "spin", "cai-pairs", "cai-sft", "step-labels"]
SETTINGS = "settings.json"


def pair_rows(scored: Scored, pairing: Pairing, min_margin: float) -> list[tuple[int, int, int]]:
    """``(prompt, chosen sample, rejected sample)`` of every pair :func:`~lit_align.ops.pairs.select_pairs` keeps."""
    n = len(scored.completions[0])
    flat = [float("nan") if s is None else s for row in scored.scores for s in row]
    chosen, rejected = select_pairs(torch.tensor(flat, dtype=torch.float64), n, pairing, min_margin)
    return [(c // n, c % n, r % n) for c, r in zip(chosen.tolist(), rejected.tolist(), strict=True)]


def best_rows(scored: Scored, min_score: float | None, per_prompt: int) -> list[tuple[int, int]]:
    """``(prompt, sample)`` of the best-scored distinct completions of each prompt, at most ``per_prompt`` each.

    A completion needs a known score, at least ``min_score`` when given; among equal texts the first counts once;
    among equal scores the earlier sample comes first.
    """
    out = []
    for i, (row, scores) in enumerate(zip(scored.completions, scored.scores, strict=True)):
        ranked = sorted((j for j, s in enumerate(scores) if s is not None), key=lambda j: -scores[j])
        seen: set[str] = set()
        for j in ranked:
            if (min_score is not None and scores[j] < min_score) or row[j].text in seen:
                continue
            seen.add(row[j].text)
            out.append((i, j))
            if len(seen) == per_prompt:
                break
    return out


def generate(
    model: str = "lit-align/tiny-sft",
    source: DataSource = DataSource(split="train", val_split=None, test_split=None, num_rows=2000),  # noqa: B008
    output: str = "generated/pairs.jsonl",
    mode: Mode = "pairs",
    prompt_field: str = "prompt",
    answer_field: str | None = "answer",
    real_field: str = "completion",
    scorer: str = "verifier",
    scorer_kwargs: dict[str, Any] | None = None,
    num_samples: PositiveInt = 8,
    pairing: Pairing = "best_worst",
    min_margin: NonNegativeFloat = 0.0,
    min_score: float | None = None,
    rows_per_prompt: PositiveInt = 1,
    temperature: PositiveFloat = 1.0,
    top_p: TopP = 1.0,
    max_new_tokens: PositiveInt = 8,
    batch_size: PositiveInt = 64,
    shard_size: PositiveInt = 500,
    seed: int = 0,
    round: NonNegativeInt = 0,  # noqa: A002 (the provenance column's name)
    match: Match = "leading",
    rollouts: PositiveInt = 8,
    step_separator: str = "\n",
    step_label: StepLabel = "soft",
    step_checker: str | None = None,
    trust_remote_code: bool = False,
) -> dict:
    """Sample ``num_samples`` completions of every prompt, score them and write JSONL rows; print a JSON summary.

    Rows carry provenance: ``prompt_id`` (the source row), ``generator``, ``scorer``, ``round`` and the scores
    (``chosen_score``, ``rejected_score``, ``margin``, or ``score``); the answer column is copied when rows have
    one. The summary has ``rows``, ``prompt_coverage`` (share of prompts that gave a row), the samples'
    ``exact_match`` and ``pass@N`` where answers exist, the mean scores and margin, and ``scorer_failures``.

    Args:
        model: Model name or path (a Hugging Face folder, e.g. a run's ``hf_model``, or a ``.gguf`` file).
        source: Prompt rows; defaults to 2000 problems of the embedded task's training split.
        output: JSONL file to write; its shards are kept in ``<output without suffix>.shards/`` for restarts.
        mode: ``pairs`` (preference pairs), ``sft`` (the best completions as SFT rows: rejection sampling),
            ``spin`` (the real answer over each distinct sample that differs from it; SFT rows as the source),
            ``cai-pairs`` (pairs as ``pairs``, ordered by a constitution, with each side's broken principles) or
            ``cai-sft`` (each distinct sample revised by the constitution; the revisions that keep every
            principle become SFT rows), or ``step-labels`` (each distinct sample split into steps, every step
            labelled by ``rollouts`` continuations from it: step-wise rows for a PRM; right answers by ``match``,
            so the rows need answers). The ``cai`` modes need ``--scorer`` to be a constitution.
        prompt_field: Column holding the prompt (text or messages).
        answer_field: Column of the reference answer (for the verifier and the summary); None: no answers.
        real_field: ``spin``: column of the real answer (text or messages) next to ``prompt_field``; rows holding a
            ``messages`` conversation instead take its last (assistant) message.
        scorer: ``verifier``, a reward model (path or name with ``/``) or a reward function's import path, as in
            ``lit-align evaluate``; ``none`` only for ``spin`` (which needs no scores; a scorer adds them).
        scorer_kwargs: Keyword arguments of a reward function or class; a value ``$model`` is the generating model
            (``path: $model`` makes a judge of :mod:`lit_align.rewards.judges` the policy itself: self-rewarding).
        num_samples: Completions per prompt (N; at least 2 for pairs).
        pairing: Pairs of each prompt's ranking to write: ``best_worst``, ``best_rest`` or ``all``
            (:func:`~lit_align.ops.pairs.select_pairs`); ties are dropped.
        min_margin: A pair needs the chosen score higher by more than this.
        min_score: ``sft``: a completion needs at least this score (e.g. 1 with the verifier: right answers only);
            None keeps each prompt's best.
        rows_per_prompt: ``sft``: at most this many distinct completions per prompt, best first.
        temperature: Sampling temperature.
        top_p: Nucleus sampling mass.
        max_new_tokens: Tokens generated per completion at most.
        batch_size: Rows (prompt x sample) per generation batch.
        shard_size: Prompts per shard (the unit of restart).
        seed: Seed of the sampling; shard k is sampled with ``seed + k``.
        round: Round number written to every row (``lit-align iterate`` sets it).
        match: Which answers the verifier accepts (``leading`` or ``final``, as in ``evaluate``).
        rollouts: ``step-labels``: continuations sampled from each step (K; Math-Shepherd uses 8).
        step_separator: ``step-labels``: what separates a solution's steps (and follows each in the rows' training).
        step_label: ``step-labels``: ``soft`` (the share of continuations that reach the right answer) or ``hard``
            (1 when any does).
        step_checker: ``step-labels``: import path of ``f(question, steps) -> exact labels`` (e.g.
            ``lit_align.tasks.chains:step_labels``); the summary then reports how often the labels agree with it
            (``step_label_agreement``: a label above 0 read as right; ``step_label_agreement_half``: at least 0.5).
        trust_remote_code: Allow model code from the hub.

    """
    check_args(generate, locals(), "--")
    settings = {k: v for k, v in locals().items() if k not in ("output",)}
    settings["source"] = dataclasses.asdict(source)
    if mode in ("pairs", "cai-pairs") and num_samples < 2:
        raise ConfigError("--num_samples", f"is {num_samples}: pairs need at least 2 completions per prompt")
    rows, _ = load_splits(source, Shape.SFT if mode == "spin" else Shape.PROMPT)
    reals: list[str] | None = None
    if mode == "spin":
        prompts, reals, answers, columns = read_demonstrations(rows, prompt_field, real_field, answer_field)
    else:
        prompts, answers, _, columns = read_prompts(rows, prompt_field, answer_field)
    if mode == "step-labels":
        if all(a is None for a in answers):
            raise ConfigError("--answer_field", f"step-labels needs answers, and {rows.origin} has no '{answer_field}' "
                              "column")  # fmt: skip
        if scorer not in ("verifier", "none"):
            raise ConfigError("--scorer", "step-labels judges continuations by the answers (--match), not a scorer")
        if not step_separator:
            raise ConfigError("--step_separator", "is empty")
        scorer = "none"
    checker = import_object(step_checker, "--step_checker") if step_checker else None
    if scorer == "verifier" and all(a is None for a in answers):
        raise ConfigError("--scorer", f"verifier needs answers, and {rows.origin} has no '{answer_field}' column")
    out = Path(output)
    shards = _shard_folder(out, settings)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    # "$model" in the scorer's arguments is the generating model: a judge that is the policy (self-rewarding).
    scorer_kwargs = {k: model if v == "$model" else v for k, v in (scorer_kwargs or {}).items()}
    reward = build_scorer(scorer, match=match, kwargs=scorer_kwargs, batch_size=batch_size, device=device,
                          trust_remote_code=trust_remote_code)  # fmt: skip
    if reward is None and mode not in ("spin", "step-labels"):
        raise ConfigError("--scorer", "generate needs a scorer to rank completions with, not none")
    constitution = _constitution(scorer, reward) if mode.startswith("cai") else None
    sampling = SamplingConfig(temperature=temperature, top_p=top_p, max_new_tokens=max_new_tokens)
    loaded: tuple | None = None
    starts = range(0, len(prompts), shard_size)
    skipped = 0
    for k, start in enumerate(starts):
        path = shards / f"shard-{k:05d}.jsonl"
        if path.exists() and path.with_suffix(".json").exists():
            skipped += 1
            continue
        if loaded is None:
            tokenizer = load_tokenizer(model, trust_remote_code=trust_remote_code, key="--model")
            policy = load_policy(ModelSpec(name_or_path=model, trust_remote_code=trust_remote_code)).to(device)
            loaded = (policy, tokenizer)
        part = slice(start, start + shard_size)
        completions = complete(*loaded, prompts[part], sampling, num_samples=num_samples, batch_size=batch_size,
                               seed=seed + k, progress=f"shard {k + 1}/{len(starts)}")  # fmt: skip
        part_columns = {key: values[part] for key, values in columns.items()}
        scored = Scored.score(completions, prompts[part], answers[part], part_columns, reward, match)
        ids = range(start, start + len(completions))
        if mode == "step-labels":
            labelled = monte_carlo_rows(*loaded, prompts[part], answers[part], completions, rollouts=rollouts,
                                        separator=step_separator, how=step_label, sampling=sampling,
                                        batch_size=batch_size, seed=seed + k, match=match, checker=checker)  # fmt: skip
            lines, stats = _step_rows(scored, prompts[part], answers[part], ids, settings, *labelled)
        else:
            lines, stats = _shard_rows(scored, prompts[part], answers[part], ids, settings, reals and reals[part],
                                       constitution)  # fmt: skip
        _write_atomic(path, "".join(json.dumps(line) + "\n" for line in lines))
        _write_atomic(path.with_suffix(".json"), json.dumps(stats))
    files = [shards / f"shard-{k:05d}.jsonl" for k in range(len(starts))]
    _write_atomic(out, "".join(f.read_text() for f in files))
    summary = _summary([json.loads(f.with_suffix(".json").read_text()) for f in files], num_samples)
    summary = rounded({"output": str(out), "mode": mode, "model": model, "scorer": scorer, "data": rows.origin,
                       **summary, "shards": len(files), "shards_skipped": skipped})  # fmt: skip
    print(json.dumps(summary))
    return summary


def _constitution(scorer: str, reward: RewardSet | None) -> Constitution:
    """The constitution ``--scorer`` built (the scorer itself: a model constitution is loaded once), or refused."""
    made = reward.functions[0] if reward is not None else None
    if not isinstance(made, Constitution):
        raise ConfigError("--scorer", f"the cai modes need a constitution (lit_align.rewards.constitution), not "
                          f"'{scorer}'")  # fmt: skip
    return made


def _shard_folder(out: Path, settings: dict[str, Any]) -> Path:
    """The output's shard folder, created with the settings; refused when it holds shards of other settings."""
    shards = out.with_suffix(".shards")
    saved = shards / SETTINGS
    if saved.exists():
        before = json.loads(saved.read_text())
        changed = sorted(k for k in set(before) | set(settings) if before.get(k) != settings.get(k))
        if changed:
            raise ConfigError("--output", f"'{shards}' holds shards made with other settings ({', '.join(changed)} "
                              "differ); delete that folder or choose another --output")  # fmt: skip
    shards.mkdir(parents=True, exist_ok=True)
    _write_atomic(saved, json.dumps(settings, sort_keys=True))
    return shards


def _shard_rows(
    scored: Scored,
    prompts: list[Any],
    answers: list[str | None],
    ids: range,
    settings: dict[str, Any],
    reals: list[str] | None,
    constitution: Constitution | None = None,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The JSON rows of one shard and the counts its summary needs.

    An empty completion (the model stopped at once) is left out of every row and counted (``empty_samples``): the
    data modules refuse empty answers.
    """
    empty = [[not c.text.strip() for c in row_] for row_ in scored.completions]
    if scored.scores is not None:  # unscored, so no pair or SFT row picks it
        pairs = zip(scored.scores, empty, strict=True)
        scores = [[None if e else v for v, e in zip(vs, es, strict=True)] for vs, es in pairs]
        scored = dataclasses.replace(scored, scores=scores)
    answer_field = settings["answer_field"] or "answer"
    common = {"generator": settings["model"], "scorer": settings["scorer"], "round": settings["round"]}

    def text(i: int, j: int) -> Any:
        return as_reward_input(prompts[i], scored.completions[i][j].text)

    def row(i: int, **fields: Any) -> dict[str, Any]:
        extra = {answer_field: answers[i]} if answers[i] is not None else {}
        return {"prompt": prompts[i], **fields, "prompt_id": ids[i], **common, **extra}

    lines: list[dict[str, Any]] = []
    extra_stats: dict[str, int] = {}
    if settings["mode"] == "spin":
        identical = 0
        for i, (real, samples) in enumerate(zip(reals, scored.completions, strict=True)):
            used: set[str] = set()
            for j, sample in enumerate(samples):
                if sample.text.strip() == real.strip():
                    identical += 1
                elif sample.text not in used and not empty[i][j]:
                    used.add(sample.text)
                    score = None if scored.scores is None else scored.scores[i][j]
                    lines.append(row(i, chosen=as_reward_input(prompts[i], real), rejected=text(i, j),
                                     rejected_score=score))  # fmt: skip
        extra_stats = {"samples": sum(map(len, scored.completions)), "identical_samples": identical}
        score_sums = {}
    elif settings["mode"] == "cai-sft":
        revised = 0
        for i, samples in enumerate(scored.completions):
            question, used = text_of(prompts[i]), set()
            for j, sample in enumerate(samples):
                if empty[i][j] or sample.text in used:
                    continue
                used.add(sample.text)
                better = constitution.revise(question, sample.text)
                if constitution.violations(question, better):
                    continue  # the revision could not fix it: no row
                revised += better != sample.text
                lines.append(row(i, completion=as_reward_input(prompts[i], better), original=sample.text,
                                 violations=constitution.violations(question, sample.text)))  # fmt: skip
        extra_stats, score_sums = {"revised_rows": revised}, {}
    elif settings["mode"] in ("pairs", "cai-pairs"):
        agree = [0, 0]  # pairs the answers order, and of those the ones whose chosen is the right answer
        for i, c, r in pair_rows(scored, settings["pairing"], settings["min_margin"]):
            high, low = scored.scores[i][c], scored.scores[i][r]
            critique = {}
            if constitution is not None:
                question, sample = text_of(prompts[i]), scored.completions[i]
                critique = {
                    "chosen_violations": constitution.violations(question, sample[c].text),
                    "rejected_violations": constitution.violations(question, sample[r].text),
                }
            lines.append(row(i, chosen=text(i, c), rejected=text(i, r), chosen_score=high, rejected_score=low,
                             margin=high - low, **critique))  # fmt: skip
            right = scored.correct[i][c], scored.correct[i][r]
            if None not in right and right[0] != right[1]:  # the answers order this pair: does the scorer agree?
                agree[0] += 1
                agree[1] += right[0]
        score_sums = {"chosen_score": sum(x["chosen_score"] for x in lines), "margin": sum(x["margin"] for x in lines)}
        score_sums["rejected_score"] = sum(x["rejected_score"] for x in lines)
        extra_stats = {"answer_ordered_pairs": agree[0], "answer_agreeing_pairs": agree[1]}
    else:
        for i, j in best_rows(scored, settings["min_score"], settings["rows_per_prompt"]):
            lines.append(row(i, completion=text(i, j), score=scored.scores[i][j]))
        score_sums = {"score": sum(x["score"] for x in lines)}
    stats = _counts(scored, lines) | {"score_sums": score_sums, "failures": scored.failures, **extra_stats}
    return lines, stats


def _counts(scored: Scored, lines: list[dict[str, Any]]) -> dict[str, Any]:
    """What every mode's summary counts in a shard: prompts, rows, the samples' exact match, empty samples."""
    answered = [c for row_ in scored.correct for c in row_ if c is not None]
    return {
        "prompts": len(scored.completions),
        "rows": len(lines),
        "prompts_with_rows": len({x["prompt_id"] for x in lines}),
        "answered_samples": len(answered),
        "correct_samples": sum(answered),
        "answered_prompts": sum(row_[0] is not None for row_ in scored.correct),
        "solved_prompts": sum(any(row_) for row_ in scored.correct if row_[0] is not None),
        "empty_samples": sum(not c.text.strip() for row_ in scored.completions for c in row_),
    }


def _step_rows(
    scored: Scored,
    prompts: list[Any],
    answers: list[str | None],
    ids: range,
    settings: dict[str, Any],
    labelled: list[dict[str, Any]],
    counts: dict[str, int],
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The step-wise rows of one shard, with provenance, and the counts its summary needs."""
    answer_field = settings["answer_field"] or "answer"
    lines = [{"prompt": prompts[r["prompt_index"]], "completions": r["completions"], "labels": r["labels"],
              answer_field: answers[r["prompt_index"]], "prompt_id": ids[r["prompt_index"]],
              "generator": settings["model"], "round": settings["round"], "rollouts": settings["rollouts"]}
             for r in labelled]  # fmt: skip
    stats = _counts(scored, lines) | {"score_sums": {}, "failures": {}}
    return lines, stats | {f"step_{key}": value for key, value in counts.items()}


def _summary(stats: list[dict[str, Any]], num_samples: int) -> dict[str, Any]:
    """Totals and means over every shard's counts."""

    def total(key: str) -> int:
        return sum(s[key] for s in stats)

    rows, prompts = total("rows"), total("prompts")
    out: dict[str, Any] = {"prompts": prompts, "rows": rows, "prompt_coverage": total("prompts_with_rows") / prompts}
    out["empty_samples"] = total("empty_samples")
    for key in stats[0]["score_sums"]:
        out[f"{key}_mean"] = sum(s["score_sums"][key] for s in stats) / rows if rows else float("nan")
    if "answer_ordered_pairs" in stats[0] and total("answer_ordered_pairs"):
        # Of the pairs whose answers (one right, one wrong) order them, the share the scorer ordered the same way.
        out["answer_agreement"] = total("answer_agreeing_pairs") / total("answer_ordered_pairs")
        out["answer_ordered_fraction"] = total("answer_ordered_pairs") / rows
    if "revised_rows" in stats[0]:
        out["revised_rows"] = total("revised_rows")
    if "step_steps" in stats[0]:
        out["steps"] = total("step_steps")
        if total("step_checked"):
            out["step_label_agreement"] = total("step_agree_any") / total("step_checked")
            out["step_label_agreement_half"] = total("step_agree_half") / total("step_checked")
    if "identical_samples" in stats[0]:
        out["spin/identical_fraction"] = total("identical_samples") / total("samples")
    if total("answered_samples"):
        out["exact_match"] = total("correct_samples") / total("answered_samples")
        out[f"pass@{num_samples}"] = total("solved_prompts") / total("answered_prompts")
    failures: dict[str, int] = {}
    for s in stats:
        for reason, count in s["failures"].items():
            failures[reason] = failures.get(reason, 0) + count
    if failures:
        out["scorer_failures"] = failures
    return out


def _write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` whole or not at all (a temporary file renamed over it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def generate_cli(args: list[str] | None = None) -> None:
    """``lit-align generate --help``."""
    auto_cli(generate, args=sys.argv[2:] if args is None else args, prog="lit-align generate", exit_on_error=False)
