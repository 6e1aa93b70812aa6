"""Rewards built to trigger the failure-mode monitors."""


def _text(c):
    return c if isinstance(c, str) else c[0]["content"]


def length_pays(completions, **_):
    """Pays one point per character: a reward a policy hacks by writing more."""
    return [float(len(_text(c))) for c in completions]


def constant(completions, **_):
    """The same reward for every completion: no group has any spread."""
    return [1.0] * len(completions)


def short_pays(completions, **_):
    """Pays for brevity: the policy collapses onto the shortest answers."""
    return [-float(len(_text(c))) for c in completions]
