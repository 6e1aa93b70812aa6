"""Reward callables for the online objectives, how YAML configures them, and reward-model scoring.

A reward is any callable ``(prompts, completions, **columns) -> list[float | None]``: one value per completion,
None where it cannot score one (counted as a failure and left out of the loss, as NaN and inf are). ``columns`` are
the prompt rows' other fields (for example ``answer``), repeated for every completion of a prompt.
"""

from lit_align.rewards.combine import RewardScores, RewardSet, RewardSpec
from lit_align.rewards.format import length_penalty, regex_format
from lit_align.rewards.model import RewardModelScorer
from lit_align.rewards.prm import ProcessRewardScorer
from lit_align.rewards.verifiable import arithmetic_answer, final_number

__all__ = [
    "ProcessRewardScorer",
    "RewardModelScorer",
    "RewardScores",
    "RewardSet",
    "RewardSpec",
    "arithmetic_answer",
    "final_number",
    "length_penalty",
    "regex_format",
]
