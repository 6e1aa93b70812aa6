"""Rounds of generate -> score -> pair -> train -> evaluate, each from the last round's model (``lit-align iterate``).

Round k (1-based) lives in ``<output_dir>/round-k/``: the generated rows (``rows.jsonl`` and its shards), the fit
config it trained with (``fit.yaml``), the run (``fit/``: checkpoints, CSV log, ``hf_model``) and ``metrics.json``
(the generate summary and the evaluation), written last. Round 0 is the starting model's evaluation. On restart a
round with ``metrics.json`` is skipped, an unfinished fit resumes from its ``checkpoints/last.ckpt`` (exactly, as
``--ckpt_path last``) and generation skips its finished shards, so a killed run ends as an uninterrupted one.
Training starts each round from the previous round's ``hf_model`` and, with the fit config's ``reference: auto``,
scores against a frozen copy of that same model: the reference is the round's starting policy.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from jsonargparse import ArgumentError, ArgumentParser, auto_cli

from lit_align.commands.evaluate import evaluate as evaluate_model
from lit_align.commands.generate import generate as generate_rows
from lit_align.domains import PositiveInt, check_args
from lit_align.errors import ConfigError

FIXED = {"generate": ("model", "output", "round", "seed"), "evaluate": ("model",)}
"""Arguments that ``iterate`` sets itself in each round (a config giving them is refused)."""


def parsed(function: Callable, given: dict[str, Any], section: str, fixed: dict[str, Any]) -> dict[str, Any]:
    """A command function's keyword arguments from a config section, checked and typed by its signature.

    Raises:
        ConfigError: A key ``iterate`` sets itself, an unknown key or a value outside its type (one line).

    """
    taken = sorted(set(given) & set(FIXED[section]))
    if taken:
        raise ConfigError(f"{section}.{taken[0]}", "is set by iterate in each round; remove it from the config")
    parser = ArgumentParser(exit_on_error=False)
    parser.add_function_arguments(function, fail_untyped=False)
    try:
        return vars(parser.instantiate(parser.parse_object({**given, **fixed})))
    except ArgumentError as error:
        raise ConfigError(section, " ".join(str(error).split())) from None


def round_fit_config(fit: dict[str, Any], start: str, rows: Path, run_dir: Path, seed: int) -> dict[str, Any]:
    """The fit config of one round: the policy is ``start``, the data source ``rows``, the run folder ``run_dir``."""
    config = copy.deepcopy(fit)
    try:
        config["model"]["init_args"].setdefault("policy", {})["name_or_path"] = start
        config["data"]["init_args"].setdefault("source", {})["path"] = str(rows)
    except (KeyError, TypeError, AttributeError):
        raise ConfigError("fit", "needs model.init_args and data.init_args sections, as a recipe has") from None
    config.setdefault("trainer", {})["default_root_dir"] = str(run_dir)
    config["seed_everything"] = seed
    return config


def iterate(
    rounds: PositiveInt = 3,
    output_dir: str = "runs/iterative_dpo",
    generate: dict | None = None,
    fit: dict | None = None,
    evaluate: dict | None = None,
    keep_rounds: PositiveInt = 1,
    seed: int = 0,
) -> list[dict]:
    """Run ``rounds`` rounds; print one JSON line per round and write ``<output_dir>/summary.jsonl``.

    The sections are plain ``dict`` on purpose: a ``class_path`` inside ``fit`` stays a config for the fit command
    instead of being instantiated here.

    Args:
        rounds: Rounds to run (a restart with more rounds continues after the finished ones).
        output_dir: Folder of the rounds.
        generate: ``lit-align generate`` arguments (``mode``, ``scorer``, ``num_samples``, ``source``, ...) but
            ``model``, ``output``, ``round`` and ``seed``, which each round sets (round k samples with seed + k).
        fit: A fit config, as a recipe (``trainer``, ``model``, ``data``): the round sets the policy, the data
            source path, the run folder and ``seed_everything``; its ``model.init_args.policy.name_or_path`` is the
            first round's starting model.
        evaluate: ``lit-align evaluate`` arguments but ``model``; each round's model and the starting model are
            evaluated with them.
        keep_rounds: Train each round on the rows of this many latest rounds (2: this round's and the previous
            one's, as SPIN's authors mix them); 1 trains on this round's rows only.
        seed: Base seed of the rounds.

    """
    check_args(iterate, locals(), "--")
    if not fit:
        raise ConfigError("fit", "is missing: give the fit config (trainer, model, data) each round trains with")
    start = str(((fit.get("model") or {}).get("init_args") or {}).get("policy", {}).get("name_or_path", ""))
    if not start:
        raise ConfigError("fit.model.init_args.policy.name_or_path", "is missing: the first round's starting model")
    # Refuse a bad generate or evaluate section before any work.
    parsed(generate_rows, generate or {}, "generate", {"model": start, "output": "rows.jsonl", "round": 1, "seed": 0})
    parsed(evaluate_model, evaluate or {}, "evaluate", {"model": start})
    out = Path(output_dir)
    check_fit(fit, start, out, seed)
    summary = []
    for k in range(rounds + 1):
        here = out / f"round-{k}"
        done = here / "metrics.json"
        if done.exists():
            result = json.loads(done.read_text())
        else:
            result = {"round": k, "start": start}
            if k > 0:
                fixed = {"model": start, "output": str(here / "rows.jsonl"), "round": k, "seed": seed + k}
                result["generate"] = generate_rows(**parsed(generate_rows, generate or {}, "generate", fixed))
                start = _train(fit, start, here, _training_rows(out, k, keep_rounds), seed + k)
            result["model"] = start
            result["evaluate"] = evaluate_model(**parsed(evaluate_model, evaluate or {}, "evaluate", {"model": start}))
            here.mkdir(parents=True, exist_ok=True)
            done.write_text(json.dumps(result))
        start = result["model"]
        summary.append(result)
        print(json.dumps({"round": k, **_headline(result)}))
    (out / "summary.jsonl").write_text("".join(json.dumps(r) + "\n" for r in summary))
    return summary


def check_fit(fit: dict[str, Any], start: str, out: Path, seed: int) -> None:
    """Parse round 1's fit config as ``lit-align fit --print_config`` would, so a typo fails before any generation.

    Raises:
        ConfigError: The fit section does not parse (an unknown key, a value outside its type), in one line.

    """
    from lit_align.commands import summarize_config_error
    from lit_align.commands.fit import run_cli

    here = out / "round-1"
    config = round_fit_config(fit, start, here / "rows.jsonl", here / "fit", seed + 1)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "fit.yaml"
        path.write_text(yaml.safe_dump(config))
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                run_cli(["fit", "--config", str(path), "--print_config"])
        except SystemExit as done:  # --print_config exits once the config parsed
            if done.code not in (0, None):
                raise ConfigError("fit", "does not parse as a fit config") from None
        except ArgumentError as error:
            raise ConfigError("fit", summarize_config_error(str(error))) from None


def _training_rows(out: Path, k: int, keep_rounds: int) -> Path:
    """Round k's training file: its own rows, or those of the last ``keep_rounds`` rounds in one file."""
    own = out / f"round-{k}" / "rows.jsonl"
    if keep_rounds == 1 or k == 1:
        return own
    rounds = range(max(1, k - keep_rounds + 1), k + 1)
    mixed = out / f"round-{k}" / "train.jsonl"
    mixed.write_text("".join((out / f"round-{r}" / "rows.jsonl").read_text() for r in rounds))
    return mixed


def _train(fit: dict[str, Any], start: str, here: Path, rows: Path, seed: int) -> str:
    """Fit one round on ``rows`` (resuming an interrupted fit) and return its ``hf_model`` folder."""
    from lit_align.commands.fit import run_cli

    run_dir = here / "fit"
    config = here / "fit.yaml"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(yaml.safe_dump(round_fit_config(fit, start, rows, run_dir, seed)))
    args = ["fit", "--config", str(config)]
    if (run_dir / "checkpoints" / "last.ckpt").exists():
        args += ["--ckpt_path", "last"]
    run_cli(args)
    model = run_dir / "hf_model"
    if not (model / "config.json").is_file():
        raise ConfigError("fit.trainer.callbacks", f"round {here.name} wrote no {model}: add SaveHuggingFace")
    return str(model)


def _headline(result: dict[str, Any]) -> dict[str, Any]:
    """The numbers of a round worth one line: rows generated, coverage, exact match, reward."""
    line: dict[str, Any] = {"model": result["model"]}
    for key in ("rows", "prompt_coverage"):
        if key in result.get("generate", {}):
            line[key] = result["generate"][key]
    for key in ("exact_match", "reward_mean", "win_rate"):
        if key in result["evaluate"]:
            line[key] = result["evaluate"][key]
    return line


def iterate_cli(args: list[str] | None = None) -> None:
    """``lit-align iterate --help``."""
    auto_cli(iterate, args=sys.argv[2:] if args is None else args, prog="lit-align iterate", exit_on_error=False)
