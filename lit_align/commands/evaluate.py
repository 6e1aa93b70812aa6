"""Evaluate a model on prompts with a scorer (``lit-align evaluate``).

Exact match, reward statistics, win rate against a reference model, length, diversity and best-of-N, per group.
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any, Literal

import torch
from jsonargparse import auto_cli

from lit_align.commands.output import rounded
from lit_align.commands.scored import Scored, read_prompts
from lit_align.data.sources import DataSource, load_splits
from lit_align.domains import NonNegativeFloat, PositiveInt, TopP, check_args
from lit_align.errors import ConfigError
from lit_align.metrics import best_of_n, win_tie_rates
from lit_align.rewards.scorers import build_scorer
from lit_align.rewards.verifiable import Match
from lit_align.roles.models import ModelSpec, load_policy
from lit_align.roles.tokenizer import load_tokenizer
from lit_align.rollout.sampling import SamplingConfig
from lit_align.rollout.texts import complete
from lit_align.types import Shape

Select = Literal["all", "best"]


def evaluate(
    model: str = "lit-align/tiny-sft",
    source: DataSource = DataSource(split="test", val_split=None, num_rows=500),  # noqa: B008
    prompt_field: str = "prompt",
    answer_field: str | None = "answer",
    scorer: str | None = "verifier",
    scorer_kwargs: dict[str, Any] | None = None,
    reference: str | None = None,
    num_samples: PositiveInt = 1,
    select: Select = "all",
    temperature: NonNegativeFloat | None = None,
    top_p: TopP = 1.0,
    max_new_tokens: PositiveInt = 8,
    batch_size: PositiveInt = 64,
    seed: int = 0,
    group_field: str | None = None,
    output: str | None = None,
    match: Match = "leading",
    trust_remote_code: bool = False,
) -> dict:
    """Sample or greedy-decode a model on prompts, score the completions and print one JSON line of metrics.

    Reported (over every completion): ``exact_match`` where rows have an answer, ``reward_mean`` / ``reward_std``
    and ``reward_failures`` with a scorer, ``length_{tokens,words}_{mean,std}``, ``distinct_{1,2}`` (tokens) and
    ``distinct_{1,2}_words``; ``pass@N`` with N samples; ``win_rate`` / ``tie_rate`` against ``--reference``
    (ties count half); with ``--select best`` the scorer's pick of each prompt (``best_of_n``), greedy decoding
    (``greedy``) and the difference (``best_of_n_gain``); all of it per group with ``--group_field``.

    Args:
        model: Model name or path (a Hugging Face folder, e.g. a run's ``hf_model``, or a ``.gguf`` file).
        source: Prompt rows; defaults to 500 problems of the embedded task's test split.
        prompt_field: Column holding the prompt (text or messages).
        answer_field: Column of the reference answer, for exact match and the verifier (rows without it are not
            matched); None: no answers.
        scorer: ``verifier`` (checks answers, see ``match``), ``none``, a reward model (a ``recipes/rm.yaml`` run's
            ``hf_model`` or any sequence classifier: a path or a name with ``/``) or the import path of a reward
            function or class (``package.module:name``).
        scorer_kwargs: Keyword arguments of a reward function or class.
        reference: A second model whose completions (same prompts, settings and seed) the win rate compares with.
        num_samples: Completions per prompt (N).
        select: ``all`` reports every completion; ``best`` also the scorer's best of the N of each prompt.
        temperature: Sampling temperature; default 0 (greedy) for one sample, 1.0 for several.
        top_p: Nucleus sampling mass.
        max_new_tokens: Tokens generated per completion at most.
        batch_size: Rows (prompt x sample) per generation batch.
        seed: Seed of the sampling (the model and the reference draw the same random numbers).
        group_field: Column to break every metric down by (e.g. ``wrong_by``, a subset name).
        output: Write every prompt with its completions, scores and exact match to this JSONL file.
        match: ``leading``: the completion's first integer must equal the answer (the embedded arithmetic task);
            ``final``: its last number must (GSM8K style, as the ``final_number`` reward).
        trust_remote_code: Allow model code from the hub.

    """
    check_args(evaluate, locals(), "--")
    temperature = (0.0 if num_samples == 1 else 1.0) if temperature is None else temperature
    if num_samples > 1 and temperature == 0:
        raise ConfigError("--temperature", f"is 0: greedy decoding gives {num_samples} identical completions")
    if select == "best" and (num_samples == 1 or scorer in (None, "none")):
        raise ConfigError("--select", "best needs --num_samples > 1 and a --scorer to pick with")
    rows, _ = load_splits(source, Shape.PROMPT)
    prompts, answers, groups, columns = read_prompts(rows, prompt_field, answer_field, group_field)
    if scorer == "verifier" and all(a is None for a in answers):
        raise ConfigError(
            "--scorer",
            f"verifier needs answers, and {rows.origin} has no '{answer_field}' column (--answer_field); "
            "give a reward model or function, or none",
        )
    device = "cuda" if torch.cuda.is_available() else "cpu"
    reward = build_scorer(
        scorer, match=match, kwargs=scorer_kwargs, batch_size=batch_size, device=device,
        trust_remote_code=trust_remote_code,
    )  # fmt: skip
    sampling = SamplingConfig(temperature=temperature, top_p=top_p, max_new_tokens=max_new_tokens)

    def run(path: str, settings: SamplingConfig, samples: int, label: str) -> Scored:
        tokenizer = load_tokenizer(path, trust_remote_code=trust_remote_code, key=label)
        policy = load_policy(ModelSpec(name_or_path=path, trust_remote_code=trust_remote_code)).to(device)
        completions = complete(
            policy, tokenizer, prompts, settings, num_samples=samples, batch_size=batch_size, seed=seed, progress=path
        )
        return Scored.score(completions, prompts, answers, columns, reward, match)

    main = run(model, sampling, num_samples, "--model")
    if reward is not None and main.scores is not None and all(s is None for s in main.flat_scores(range(len(prompts)))):
        raise ConfigError("--scorer", f"'{scorer}' scored none of {len(prompts) * num_samples} completions "
                          f"(failures: {main.failures}); check that it can read the data's columns")  # fmt: skip
    picks = best_of_n(main.scores) if select == "best" else None
    greedy = run(model, SamplingConfig(temperature=0.0, max_new_tokens=max_new_tokens), 1, "--model") if picks else None
    ref = run(reference, sampling, num_samples, "--reference") if reference else None

    def metrics(members: list[int]) -> dict[str, Any]:
        out: dict[str, Any] = main.summary(members)
        if picks is not None:
            best, base = main.picked(picks).summary(members), greedy.summary(members)
            out["best_of_n"], out["greedy"] = best, base
            out["best_of_n_gain"] = {k: best[k] - base[k] for k in ("exact_match", "reward_mean") if k in best}
        if ref is not None:
            out["reference_summary"] = ref.summary(members)
            if reward is not None:
                mine, theirs = main.picked(picks), ref.picked(best_of_n(ref.scores) if picks else None)
                win, tie, compared = win_tie_rates(mine.flat_scores(members), theirs.flat_scores(members))
                out.update(win_rate=win, tie_rate=tie, compared=compared)
        return out

    everyone = list(range(len(prompts)))
    result: dict[str, Any] = {"model": model, "data": rows.origin, "rows": len(prompts), "num_samples": num_samples}
    result.update(scorer=scorer, temperature=temperature, seed=seed, **({"reference": reference} if ref else {}))
    result.update(metrics(everyone))
    if main.failures:
        result["scorer_failures"] = main.failures
    if group_field is not None:
        members: dict[str, list[int]] = defaultdict(list)
        for i, label in enumerate(groups):
            members[label].append(i)
        result["groups"] = {label: metrics(idx) for label, idx in sorted(members.items())}
    if output:
        _write_rows(Path(output), prompts, answers, groups, main, picks, ref)
    result = rounded(result)
    print(json.dumps(result))
    return result


def _write_rows(
    path: Path, prompts: list, answers: list, groups: list, main: Scored, picks: list | None, ref: Scored | None
) -> None:
    """One JSON line per prompt: its completions, scores, exact match, the pick and the reference's."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as f:
        for i, prompt in enumerate(prompts):
            line: dict[str, Any] = {"index": i, "prompt": prompt, "answer": answers[i]}
            if groups:
                line["group"] = groups[i]
            line["completions"] = [c.text for c in main.completions[i]]
            line["correct"] = main.correct[i]
            if main.scores is not None:
                line["scores"] = main.scores[i]
            if picks is not None:
                line["selected"] = picks[i]
            if ref is not None:
                line["reference_completions"] = [c.text for c in ref.completions[i]]
                if ref.scores is not None:
                    line["reference_scores"] = ref.scores[i]
            f.write(json.dumps(line) + "\n")


def evaluate_cli(args: list[str] | None = None) -> None:
    """``lit-align evaluate --help``."""
    auto_cli(evaluate, args=sys.argv[2:] if args is None else args, prog="lit-align evaluate", exit_on_error=False)
