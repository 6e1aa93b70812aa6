"""Reward functions that misbehave the ways user rewards do, named by import path in the bad-input tests."""

import math


def always_none(prompts, completions, **_):
    return [None] * len(completions)


def always_nan(prompts, completions, **_):
    return [math.nan] * len(completions)


def constant(prompts, completions, **_):
    return [0.0] * len(completions)


def inf_on_first(prompts, completions, **_):
    return [math.inf] + [float(len(c)) for c in completions[1:]]


def raises(prompts, completions, **_):
    raise RuntimeError("judge unavailable")


def wrong_length(prompts, completions, **_):
    return [1.0]


def text_scores(prompts, completions, **_):
    return ["good"] * len(completions)


def needs_label(prompts, completions, label, **_):
    return [float(x) for x in label]


NOT_CALLABLE = 3
