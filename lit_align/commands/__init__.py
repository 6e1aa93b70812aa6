"""The ``lit-align`` command: a small dispatcher over one module per verb.

``fit``/``validate``/``test``/``predict`` go to the LightningCLI (:mod:`lit_align.commands.fit`); ``evaluate``,
``evaluate-rm`` and ``export`` to their own modules. Nothing else in lit_align imports this package.
"""

from __future__ import annotations

import re
import sys

from jsonargparse import ArgumentError

from lit_align.errors import LitAlignError


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``lit-align`` console script; user mistakes exit with one line and code 2."""
    args = sys.argv[1:] if argv is None else argv
    try:
        if args and args[0] == "evaluate":
            from lit_align.commands.evaluate import evaluate_cli

            evaluate_cli(args[1:])
        elif args and args[0] == "evaluate-rm":
            from lit_align.commands.evaluate_rm import evaluate_reward_model_cli

            evaluate_reward_model_cli(args[1:])
        elif args and args[0] == "export":
            from lit_align.commands.export import export_cli

            export_cli(args[1:])
        else:
            from lit_align.commands.fit import run_cli

            run_cli(argv)
    except LitAlignError as error:
        print(f"lit-align: error: {error}", file=sys.stderr)
        sys.exit(2)
    except ArgumentError as error:
        print(f"lit-align: error: {summarize_config_error(str(error))} (see lit-align --help)", file=sys.stderr)
        sys.exit(2)


def summarize_config_error(message: str) -> str:
    """Condense jsonargparse's nested error report into ``key: reason`` on one line."""
    keys = re.findall(r'Parser key "([^"]+)"', message)
    noise = ("Given value", "Subtypes:", "Errors:", "Does not validate", "Expected a <class 'NoneType'>")
    lines = (re.sub(r'Parser key "[^"]+":', "", line).strip(" -") for line in message.splitlines())
    details = [line for line in lines if line and not line.startswith(noise)]
    reason = " ".join(details) if details else message.strip().splitlines()[0]
    return f"{'.'.join(keys)}: {reason}" if keys else reason
