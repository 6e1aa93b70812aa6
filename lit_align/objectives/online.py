"""What every online objective (GRPO, PPO, online DPO) shares: the sampler, rollout metrics and sample logs.

Shape legend: N completions (B prompts x G), R completion length.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import torch
import torch.distributed as dist
from lightning import LightningModule

from lit_align.errors import ConfigError
from lit_align.metrics import distinct_n, log_metrics
from lit_align.ops.advantages import group_reward_std
from lit_align.rewards.combine import RewardScores, RewardSet
from lit_align.roles.models import ModelSpec
from lit_align.roles.paths import resolve_model_path
from lit_align.roles.tokenizer import load_tokenizer
from lit_align.rollout import (
    Rollout,
    RolloutEngine,
    RolloutSpec,
    SamplingConfig,
    build_engine,
    repeat_prompts,
    stop_token_ids,
)
from lit_align.runtime.monitors import SignalMonitor
from lit_align.types import PromptBatch


@contextmanager
def timed(timings: dict[str, float], name: str) -> Iterator[None]:
    """Add the seconds spent in the block to ``timings[name]``."""
    start = time.perf_counter()
    yield
    timings[name] = timings.get(name, 0.0) + time.perf_counter() - start


def as_tensors(values: dict[str, float]) -> dict[str, torch.Tensor]:
    """Turn plain numbers (timings) into tensors for logging."""
    return {k: torch.tensor(v) for k, v in values.items()}


class Samples(NamedTuple):
    """Completions sampled for a batch of prompts.

    Attributes:
        batch: The prompt batch with every prompt repeated once per completion (G consecutive rows per prompt).
        rollout: Token ids and masks of prompts and completions. Shapes: (N, ...)
        completions: What the rewards see: text, or one assistant message when the prompts are messages (N items).
        group_size: Completions per prompt (G).

    """

    batch: PromptBatch
    rollout: Rollout
    completions: list
    group_size: int


@dataclass
class Sampler:
    """Samples completions of prompts with a policy and scores them with the rewards (online objectives' rollout).

    Args:
        tokenizer: The policy's tokenizer (decodes completions for the rewards).
        stop_ids: Token ids that end a completion.
        rewards: The reward functions and weights.
        monitor: Watches training batches for a dead reward signal (None: no watch).
        engine: What samples the completions (transformers ``generate`` on the policy by default).

    """

    tokenizer: Any
    stop_ids: list[int]
    rewards: RewardSet
    monitor: SignalMonitor | None = None
    engine: RolloutEngine | None = None

    @classmethod
    def for_policy(
        cls,
        policy: torch.nn.Module,
        spec: ModelSpec,
        rewards: RewardSet,
        no_signal_patience: int = 0,
        rollout: RolloutSpec = RolloutSpec(),  # noqa: B008 (frozen dataclass)
    ) -> Sampler:
        """Load the policy's tokenizer, read its stop tokens, build the rollout engine; watch ``no_signal_patience``."""
        tokenizer = load_tokenizer(spec.name_or_path, trust_remote_code=spec.trust_remote_code)
        monitor = SignalMonitor(no_signal_patience, key="model.init_args.no_signal_patience")
        engine = build_engine(rollout, str(resolve_model_path(spec.name_or_path)))
        return cls(tokenizer, stop_token_ids(policy, tokenizer), rewards, monitor, engine)

    def sample(
        self,
        policy: torch.nn.Module,
        batch: PromptBatch,
        completions_per_prompt: int,
        sampling: SamplingConfig,
        version: int | None = None,
    ) -> Samples:
        """Sample ``completions_per_prompt`` completions of every prompt.

        ``version`` counts the policy's optimizer steps: engines holding a copy of the weights resync when it
        changes (None always resyncs).
        """
        grouped = repeat_prompts(batch, completions_per_prompt)
        engine = self.engine or build_engine(RolloutSpec())
        rollout = engine.rollout(
            policy, grouped, sampling, pad_token_id=self.tokenizer.pad_token_id, stop_ids=self.stop_ids, version=version
        )
        texts = self.tokenizer.batch_decode(rollout.completion_ids, skip_special_tokens=True)
        prompts = grouped["prompts"]
        if prompts and isinstance(prompts[0], list):
            texts = [[{"role": "assistant", "content": t}] for t in texts]
        return Samples(grouped, rollout, texts, completions_per_prompt)

    def score(self, samples: Samples, *, training: bool = False) -> RewardScores:
        """Score every completion with the rewards (NaN where no reward could score it).

        A training batch also goes to the monitor, which warns when it has no learning signal and stops the run
        after ``no_signal_patience`` such batches in a row (:class:`~lit_align.runtime.monitors.SignalMonitor`).
        """
        rollout = samples.rollout
        completion_ids = [
            ids[m].tolist() for ids, m in zip(rollout.completion_ids, rollout.completion_mask, strict=True)
        ]
        scores = self.rewards(samples.batch["prompts"], samples.completions, samples.batch["columns"], completion_ids)
        if training and self.monitor is not None:
            self.monitor.update(scores, samples.group_size, samples.rollout.input_ids.device)
        return scores

    def signal_metrics(self) -> dict[str, torch.Tensor]:
        """``no_signal_batches``: training batches in a row without learning signal (0 when the last one had it)."""
        return {} if self.monitor is None else {"no_signal_batches": torch.tensor(float(self.monitor.in_a_row))}


def check_group_sampling(sampling: SamplingConfig, completions_per_prompt: int, owner: str) -> None:
    """Refuse greedy training samples where the signal compares a prompt's completions (they would all be equal).

    Raises:
        ConfigError: ``sampling.temperature`` is 0 with more than one completion per prompt.

    """
    if sampling.temperature == 0 and completions_per_prompt > 1:
        raise ConfigError(
            f"{owner}.sampling.temperature",
            f"must be > 0: greedy decoding gives {completions_per_prompt} identical completions per prompt, so "
            "there is nothing to compare (temperature 0 is for eval_sampling)",
        )


def reward_metrics(scores: RewardScores, group_size: int) -> dict[str, torch.Tensor]:
    """``reward``, ``reward_std`` (mean per-group std), ``frac_reward_zero_std`` and ``rewards/<name>`` means.

    Unknown (None, NaN, inf, failed) values stay out of every mean; a reward's failures are logged as
    ``rewards/<name>/failures`` and the share of completions no reward could score as ``frac_reward_unscored``.
    """
    total = scores.total
    metrics = {"reward": _nanmean(total), "frac_reward_unscored": total.isnan().float().mean()}
    if group_size > 1:
        std = group_reward_std(total, group_size)  # (B,)
        metrics["reward_std"] = std.mean()
        metrics["frac_reward_zero_std"] = (std < 1e-6).float().mean()
    for name, values in scores.per_reward.items():
        metrics[f"rewards/{name}"] = _nanmean(values)
        metrics[f"rewards/{name}/failures"] = torch.tensor(float(scores.failures.get(name, 0)))
    return metrics


def _nanmean(values: torch.Tensor) -> torch.Tensor:
    known = values[~values.isnan()]
    return known.mean() if known.numel() else torch.tensor(0.0)


def completion_metrics(rollout: Rollout) -> dict[str, torch.Tensor]:
    """Completion lengths (tokens up to and including EOS) and the fraction cut at ``max_new_tokens``."""
    lengths = (rollout.attention_mask[:, rollout.prompt_length :] > 0).sum(-1).float()  # (N,)
    return {
        "completions/mean_length": lengths.mean(),
        "completions/clipped_ratio": rollout.truncated.float().mean(),
    }


def log_length_extremes(module: LightningModule, rollout: Rollout, stage: str) -> None:
    """Log the batch's shortest and longest completion, reduced with min/max over processes."""
    lengths = (rollout.attention_mask[:, rollout.prompt_length :] > 0).sum(-1).float()
    module.log(f"{stage}/completions/min_length", lengths.min(), sync_dist=True, reduce_fx="min")
    module.log(f"{stage}/completions/max_length", lengths.max(), sync_dist=True, reduce_fx="max")


def global_distinct_2(rollout: Rollout) -> torch.Tensor:
    """Distinct-2 of the completions of every process together (gathered first, so it is correct under DDP)."""
    sequences = [ids[m].tolist() for ids, m in zip(rollout.completion_ids, rollout.completion_mask, strict=True)]
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        gathered: list[Any] = [None] * dist.get_world_size()
        dist.all_gather_object(gathered, sequences)
        sequences = [s for part in gathered for s in part]
    return torch.tensor(distinct_n(sequences, 2))


def log_rollout(
    module: LightningModule,
    stage: str,
    rollout: Rollout,
    scores: RewardScores,
    group_size: int,
    extra: dict[str, torch.Tensor],
) -> None:
    """Log reward, completion and objective metrics of one rollout under ``{stage}/``."""
    metrics = {**extra, **reward_metrics(scores, group_size), **completion_metrics(rollout)}
    metrics["distinct_2"] = global_distinct_2(rollout)
    batch_size = len(scores.total)
    log_metrics(
        module, {k: torch.as_tensor(v, device=module.device).float() for k, v in metrics.items()}, stage, batch_size
    )
    log_length_extremes(module, rollout, stage)


def validation_rollout(
    module: LightningModule,
    policy: torch.nn.Module,
    sampler: Sampler,
    batch: PromptBatch,
    stage: str,
    sampling: SamplingConfig,
) -> None:
    """Score one completion per held-out prompt (greedy by default) and log ``{stage}/reward`` and the rest."""
    samples = sampler.sample(policy, batch, 1, sampling, version=module.global_step)
    log_rollout(module, stage, samples.rollout, sampler.score(samples), 1, {})


def write_samples(module: LightningModule, prompts: list, completions: list, scores: RewardScores, count: int) -> None:
    """Append a few (prompt, completion, rewards) rows to ``<run folder>/samples.jsonl``; loggers with tables get one.

    Runs on global rank 0 only.
    """
    if not module.trainer.is_global_zero or count <= 0:
        return
    rows = []
    for i in range(min(count, len(completions))):
        reward = scores.total[i].item()
        rows.append(
            {
                "step": module.global_step,
                "prompt": prompts[i],
                "completion": completions[i],
                "reward": None if math.isnan(reward) else reward,
                **{name: _value(v[i]) for name, v in scores.per_reward.items()},
            }
        )
    path = Path(module.trainer.default_root_dir) / "samples.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")
    for logger in module.loggers:
        if hasattr(logger, "log_table"):  # e.g. WandbLogger
            columns = list(rows[0])
            logger.log_table(key="samples", columns=columns, data=[[json.dumps(r[c]) for c in columns] for r in rows])


def _value(x: torch.Tensor) -> float | None:
    return None if math.isnan(x.item()) else x.item()
