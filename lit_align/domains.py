"""Numeric domains of config values, as types: ``--help`` shows them and the CLI refuses a value outside them.

The types are jsonargparse restricted numbers (``PositiveFloat`` is a ``float`` that must be > 0), so the
LightningCLI checks a YAML value before anything is built and names its config key. Python users get the same
check from :func:`check_args` (objectives and data modules) and :func:`check_fields` (config dataclasses), which
raise :class:`~lit_align.errors.ConfigError` naming the argument.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
import operator
import types
import typing
from collections.abc import Callable
from typing import Any

import torch
from jsonargparse.typing import (
    ClosedUnitInterval,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    restricted_number_type,
)

from lit_align.errors import ConfigError

__all__ = [
    "AtLeastTwo",
    "ClosedUnitInterval",
    "DropoutRate",
    "FlipRate",
    "NonNegativeFloat",
    "NonNegativeInt",
    "OpenUnitInterval",
    "PositiveFloat",
    "PositiveInt",
    "TopP",
    "check_args",
    "check_fields",
    "describe_restriction",
]

AtLeastTwo = restricted_number_type("AtLeastTwo", int, (">=", 2))
"""An int >= 2: completions per prompt where the learning signal compares completions of one prompt."""
FlipRate = restricted_number_type("FlipRate", float, [(">=", 0), ("<", 0.5)])
"""A probability that a preference label is flipped: in [0, 0.5) (0.5 means the labels carry no information)."""
OpenUnitInterval = restricted_number_type("OpenUnitInterval", float, [(">", 0), ("<", 1)])
"""A float strictly between 0 and 1."""
TopP = restricted_number_type("TopP", float, [(">", 0), ("<=", 1)])
"""Nucleus-sampling mass: in (0, 1]."""
DropoutRate = restricted_number_type("DropoutRate", float, [(">=", 0), ("<", 1)])
"""A dropout probability: in [0, 1)."""

_SYMBOLS = {
    operator.gt: ">",
    operator.ge: ">=",
    operator.lt: "<",
    operator.le: "<=",
    operator.eq: "==",
    operator.ne: "!=",
}


def describe_restriction(kind: type) -> str:
    """Human form of a restricted type's domain, e.g. ``> 0`` or ``>= 0 and < 0.5``."""
    parts = [f"{_SYMBOLS.get(op, op)} {bound}" for op, bound in getattr(kind, "_restrictions", [])]
    return " and ".join(parts)


def _restricted(annotation: Any) -> type | None:
    """The restricted number type in an annotation (``PositiveFloat`` or ``PositiveFloat | None``), else None."""
    if hasattr(annotation, "_restrictions"):
        return annotation
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        for arg in typing.get_args(annotation):
            if hasattr(arg, "_restrictions"):
                return arg
    return None


def _check(kind: type, value: Any, key: str) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(key, f"must be a number {describe_restriction(kind)}, got {value!r}")
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(key, f"must be a finite number {describe_restriction(kind)}, got {value!r}")
    try:
        kind(value)
    except (TypeError, ValueError):
        raise ConfigError(key, f"must be {describe_restriction(kind)}, got {value!r}") from None


def check_args(function: Callable, values: dict[str, Any], owner: str) -> None:
    """Check ``values`` (e.g. ``locals()`` at the top of ``__init__``) against ``function``'s restricted annotations.

    Raises:
        ConfigError: A value outside its domain, named ``<owner>.<argument>`` (``--<argument>`` for owner ``--``,
            a command's flags).

    """
    hints = typing.get_type_hints(function)
    for name in inspect.signature(function).parameters:
        kind = _restricted(hints.get(name))
        if kind is not None and name in values:
            _check(kind, values[name], f"--{name}" if owner == "--" else f"{owner}.{name}")


def check_fields(instance: Any) -> None:
    """Check a dataclass instance's fields against their restricted annotations (call from ``__post_init__``)."""
    hints = typing.get_type_hints(type(instance))
    for field in dataclasses.fields(instance):
        kind = _restricted(hints.get(field.name))
        if kind is not None:
            _check(kind, getattr(instance, field.name), f"{type(instance).__name__}.{field.name}")


# Parsed config values are instances of these types and land in checkpoints' hyperparameters; let them load with
# torch.load(weights_only=True).
torch.serialization.add_safe_globals(
    [
        AtLeastTwo,
        ClosedUnitInterval,
        DropoutRate,
        FlipRate,
        NonNegativeFloat,
        NonNegativeInt,
        OpenUnitInterval,
        PositiveFloat,
        PositiveInt,
        TopP,
    ]
)
