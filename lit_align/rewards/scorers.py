"""A scorer named on the command line: the task's verifier, a reward model folder or a reward function.

``--scorer verifier`` checks answers (:func:`~lit_align.rewards.verifiable.arithmetic_answer`, or
:func:`~lit_align.rewards.verifiable.final_number` with ``match: final``); a folder, an embedded model name or a
hub id (anything with a ``/``) is a reward model (:class:`~lit_align.rewards.model.RewardModelScorer`: a
``recipes/rm.yaml`` run's ``hf_model`` or any sequence classifier), or a process reward model when the folder was
saved by ``ProcessRewardModel`` (:class:`~lit_align.rewards.prm.ProcessRewardScorer`: step scores aggregated, by
``aggregate`` in the scorer's kwargs); anything else is the import path of a reward
function or class, as in the online objectives' ``rewards:``. Every scorer is a :class:`RewardSet` whose failures
(None, NaN, an exception) are counted, not fatal.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lit_align.rewards.combine import RewardSet, RewardSpec
from lit_align.rewards.prm import is_process_reward_model
from lit_align.rewards.verifiable import Match

VERIFIERS = {"leading": "lit_align.rewards.arithmetic_answer", "final": "lit_align.rewards.final_number"}


def is_model_path(scorer: str) -> bool:
    """True when ``scorer`` names a model (an existing path, or a name with a ``/``), not an import path."""
    return Path(scorer).exists() or "/" in scorer


def build_scorer(
    scorer: str | None,
    *,
    match: Match = "leading",
    kwargs: dict[str, Any] | None = None,
    batch_size: int = 64,
    device: str = "cpu",
    trust_remote_code: bool = False,
    key: str = "--scorer",
) -> RewardSet | None:
    """The scorer ``scorer`` names, or None for ``none`` / None.

    Args:
        scorer: ``verifier``, ``none``, a reward model (path or name) or an import path.
        match: Which verifier ``verifier`` means.
        kwargs: Keyword arguments of a reward function or class.
        batch_size: Completions per reward-model forward pass.
        device: Where a reward model runs.
        trust_remote_code: Allow a reward model's code from the hub.
        key: Config key named in error messages.

    """
    if scorer is None or scorer == "none":
        return None
    if scorer == "verifier":
        spec = RewardSpec(VERIFIERS[match], name="verifier", kwargs=dict(kwargs or {}))
    elif is_model_path(scorer):
        model_kwargs = {"path": scorer, "batch_size": batch_size, "device": device}
        model_kwargs["trust_remote_code"] = trust_remote_code
        if is_process_reward_model(scorer):  # step scores aggregated (kwargs: aggregate, step_separator)
            prm_kwargs = model_kwargs | (kwargs or {})
            spec = RewardSpec("lit_align.rewards.prm.ProcessRewardScorer", name="prm", kwargs=prm_kwargs)
        else:
            spec = RewardSpec("lit_align.rewards.RewardModelScorer", name="reward_model", kwargs=model_kwargs)
    else:
        spec = RewardSpec(scorer, kwargs=dict(kwargs or {}))
    return RewardSet([spec], on_error="none", key=key)
