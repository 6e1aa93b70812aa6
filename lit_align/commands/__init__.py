"""The ``lit-align`` command: a small dispatcher over one module per verb.

``fit``/``validate``/``test``/``predict`` go to the LightningCLI (:mod:`lit_align.commands.fit`); ``evaluate``,
``generate``, ``iterate``, ``evaluate-rm``, ``check-data``, ``report`` and ``export`` to their own modules.
Nothing else in lit_align imports this package.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import traceback
import warnings
from pathlib import Path

from jsonargparse import ArgumentError

from lit_align.errors import LitAlignError

TRACEBACK_ENV = "LIT_ALIGN_TRACEBACK"
"""Set to 1 to see the full traceback of a user error too (for a bug report)."""


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``lit-align`` console script; user mistakes exit with one line and code 2.

    User mistakes are :class:`LitAlignError` (bad data, config values, checkpoints, rewards), jsonargparse's
    config errors, and the configuration errors Lightning raises itself (see :func:`lightning_config_error`).
    Anything else is a bug in lit-align and keeps its traceback. With ``LIT_ALIGN_TRACEBACK=1`` user errors show
    their traceback as well.
    """
    try:
        _dispatch(sys.argv[1:] if argv is None else argv, argv)
    except LitAlignError as error:
        _fail(str(error), error)
    except ArgumentError as error:
        _fail(f"{summarize_config_error(str(error))} (see lit-align --help)", error)
    except (ValueError, TypeError) as error:
        message = instantiation_error(error) or lightning_config_error(error)
        if message is None:
            raise
        _fail(message, error)
    except Exception as error:
        if type(error).__name__ != "MisconfigurationException":
            raise
        _fail(f"trainer: {_first_line(error)}", error)


def _fail(message: str, error: BaseException) -> None:
    if os.environ.get(TRACEBACK_ENV, "") not in ("", "0"):
        traceback.print_exception(error)
    print(f"lit-align: error: {message}", file=sys.stderr)
    sys.exit(2)


def _first_line(error: BaseException) -> str:
    text = " ".join(str(error).split())
    return text or type(error).__name__


def instantiation_error(error: BaseException) -> str | None:
    """One line for a user error raised inside a constructor that jsonargparse called (it wraps it in a ValueError).

    Only a :class:`LitAlignError` cause counts; its ``<ClassName>.<argument>`` key becomes the config key
    (``model.init_args.<argument>`` or ``data.init_args.<argument>``).
    """
    cause = error.__cause__
    if not isinstance(cause, LitAlignError):
        return None
    message = str(cause)
    section = "data" if "LightningDataModule" in str(error) else "model" if "LightningModule" in str(error) else None
    owner = re.match(r"(\w+)\.(\w+): ", message)
    if section and owner and owner.group(1)[:1].isupper():
        message = f"{section}.init_args.{message[len(owner.group(1)) + 1 :]}"
    return message


def lightning_config_error(error: BaseException) -> str | None:
    """One line for a ValueError/TypeError that Lightning raised on its own settings (e.g. ``val_check_interval``).

    Only errors raised directly by the Trainer's configuration code (``lightning/pytorch/trainer``, its connectors
    and loops) count: those are about values the user set. The same exception types from anywhere else are bugs.
    """
    frames = traceback.extract_tb(error.__traceback__)
    if not frames:
        return None
    where = Path(frames[-1].filename).as_posix()
    if "/lightning/pytorch/trainer/" not in where and "/lightning/pytorch/loops/" not in where:
        return None
    return f"trainer: {_first_line(error)}"


def check_config_files(args: list[str]) -> None:
    """Parse every ``--config`` file first, so a YAML syntax error names its file, line and column."""
    import yaml

    paths = [b for a, b in zip(args, args[1:], strict=False) if a == "--config"]
    paths += [a.split("=", 1)[1] for a in args if a.startswith("--config=")]
    for path in paths:
        file = Path(path)
        if not file.is_file():
            raise LitAlignError(f"--config: '{path}' does not exist")
        try:
            yaml.safe_load(file.read_text())
        except yaml.YAMLError as error:
            mark = getattr(error, "problem_mark", None)
            where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            problem = getattr(error, "problem", None) or str(error).splitlines()[0]
            raise LitAlignError(f"--config: '{path}':{where}: invalid YAML: {problem}") from error
        except UnicodeDecodeError as error:
            raise LitAlignError(f"--config: '{path}': is not valid UTF-8 text") from error


COMMANDS = {
    "fit": "train an objective on a data module (LightningCLI): lit-align fit --config recipes/dpo.yaml",
    "validate": "run the validation loop of a config (and --ckpt_path) and log val/ metrics",
    "test": "run the test loop of a config (and --ckpt_path) and log test/ metrics",
    "predict": "run Lightning's predict loop of a config",
    "evaluate": "sample a model on prompts and score it: exact match, reward, win rate, length, distinct-n, best-of-N",
    "generate": "sample a model and score the completions into preference pairs or best-of-N SFT rows (JSONL)",
    "iterate": "rounds of generate -> train -> evaluate, each from the last round's model (recipes/iterative_dpo.yaml)",
    "evaluate-rm": "pairwise accuracy of a reward model on preference rows, one JSON line",
    "check-data": "audit a data set: duplicates, contradictions, leaks, length bias, label agreement, mislabel rate",
    "report": "write a run folder's HTML report: curves, sample generations over time, monitor warnings, config",
    "export": "write a checkpoint's policy as a Hugging Face folder (merged LoRA or the adapter)",
}


def overview() -> str:
    """What ``lit-align --help`` prints: every command with one line each."""
    width = max(map(len, COMMANDS))
    lines = [f"  {name:<{width}}  {what}" for name, what in COMMANDS.items()]
    return "\n".join(
        [
            "usage: lit-align <command> [options]    (lit-align <command> --help for its options)",
            "",
            "commands:",
            *lines,
            "",
            "User errors print one line and exit 2; LIT_ALIGN_TRACEBACK=1 shows the full traceback.",
        ]
    )


class _NoAdverts(logging.Filter):
    """Drop Lightning's "Tip: try installing ..." lines (they open every run and are not about it)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Tip: For seamless" not in str(record.msg)


def quiet() -> None:
    """No adverts and no deprecation noise from dependencies; lit-align's own FutureWarnings (renamed keys) stay."""
    rank_zero = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    if not any(isinstance(f, _NoAdverts) for f in rank_zero.filters):  # main() may run many times in one process
        rank_zero.addFilter(_NoAdverts())
    for module in ("transformers", "torchdata", "jsonargparse", "lightning", "torch", "datasets", "peft"):
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=module)
        warnings.filterwarnings("ignore", category=FutureWarning, module=module)
    warnings.filterwarnings("ignore", message=".*'set_vital' is deprecated")  # torchdata's stateful loader
    warnings.filterwarnings("ignore", message="Found .* module.* in eval mode")  # the frozen reference, on purpose
    warnings.filterwarnings("ignore", message=".*JsonargparseDeprecationWarning|.*instantiate_classes.*deprecated")
    # Every step-interval checkpoint of a manually optimised objective (GRPO, PPO, online DPO) printed a 20-line code
    # sample: the state saved is the one after the step, which is what exact resume needs (the step count and the
    # optimizer state match it).
    warnings.filterwarnings("ignore", message="Using ModelCheckpoint with manual optimization")


def _dispatch(args: list[str], argv: list[str] | None) -> None:
    quiet()
    if not args or args[0] in ("-h", "--help"):
        print(overview())
        if not args:
            sys.exit(2)  # a command is needed
        return
    check_config_files(args)
    if args and args[0] == "evaluate":
        from lit_align.commands.evaluate import evaluate_cli

        evaluate_cli(args[1:])
    elif args and args[0] == "generate":
        from lit_align.commands.generate import generate_cli

        generate_cli(args[1:])
    elif args and args[0] == "iterate":
        from lit_align.commands.iterate import iterate_cli

        iterate_cli(args[1:])
    elif args and args[0] == "evaluate-rm":
        from lit_align.commands.evaluate_rm import evaluate_reward_model_cli

        evaluate_reward_model_cli(args[1:])
    elif args and args[0] == "check-data":
        from lit_align.commands.check_data import check_data_cli

        check_data_cli(args[1:])
    elif args and args[0] == "report":
        from lit_align.commands.report import report_cli

        report_cli(args[1:])
    elif args and args[0] == "export":
        from lit_align.commands.export import export_cli

        export_cli(args[1:])
    else:
        from lit_align.commands.fit import run_cli

        run_cli(argv)


def summarize_config_error(message: str) -> str:
    """Condense jsonargparse's nested error report into ``key: reason`` on one line."""
    keys = re.findall(r'Parser key "([^"]+)"', message)
    noise = ("Given value", "Subtypes:", "Errors:", "Does not validate", "Expected a <class 'NoneType'>")
    lines = (re.sub(r'Parser key "[^"]+":', "", line).strip(" -") for line in message.splitlines())
    details = [line for line in lines if line and not line.startswith(noise)]
    reason = " ".join(details) if details else message.strip().splitlines()[0]
    reason = re.sub(r"Not of type \w+: ", "", reason)
    # Restricted numbers (lit_align.domains): "-1 does not conform to restriction v>0" -> "must be > 0, got -1"
    restriction = re.search(r"does not conform to restriction (.+?)(?:$|\n)", message)
    if restriction:
        domain = re.sub(r"v(>=|<=|==|!=|>|<)", r"\1 ", restriction.group(1)).strip()
        given = re.search(r"([^\s:]+) does not conform", message) or re.search(r"val='([^']*)'", message)
        given = given or re.search(r"Given value: (.+)", message)
        reason = f"must be {domain}" + (f", got {given.group(1).strip()}" if given else "")
    if len(keys) > 1 and keys[0] in ("model", "data") and keys[1] not in ("init_args", "class_path"):
        keys.insert(1, "init_args")  # the key as the user writes it in subclass mode
    return f"{'.'.join(keys)}: {reason}" if keys else reason
