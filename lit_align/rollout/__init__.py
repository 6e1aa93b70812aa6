"""Generation for the online objectives and ``generate``: sampling settings, rollouts, engines, token scoring."""

from lit_align.rollout.engines import RolloutEngine, RolloutSpec, TransformersEngine, build_engine
from lit_align.rollout.sampling import (
    Rollout,
    SamplingConfig,
    cat_rollouts,
    generate,
    generate_ids,
    mask_after_eos,
    repeat_prompts,
    stop_token_ids,
    to_rollout,
)
from lit_align.rollout.scoring import CompletionScores, ValueHead, completion_logps

__all__ = [
    "CompletionScores",
    "Rollout",
    "RolloutEngine",
    "RolloutSpec",
    "SamplingConfig",
    "TransformersEngine",
    "ValueHead",
    "build_engine",
    "cat_rollouts",
    "completion_logps",
    "generate",
    "generate_ids",
    "mask_after_eos",
    "repeat_prompts",
    "stop_token_ids",
    "to_rollout",
]
