"""GRPO end to end on the tiny model: metrics, reference handling, iterations, and a raising reward."""

import csv

import pytest
import torch
from lightning import Trainer
from lightning.pytorch.loggers import CSVLogger

from lit_align.data import DataSource, PromptDataModule
from lit_align.errors import LitAlignError
from lit_align.objectives import GRPO
from lit_align.rewards import RewardSpec
from lit_align.rollout import SamplingConfig


def flaky_reward(prompts, completions, answer, **_):
    """Raises on every completion of the first prompt's answer (a stand-in for a failing remote scorer)."""
    if answer[0] == "__never__":
        return [0.0] * len(completions)
    raise RuntimeError("scorer timed out")


def _fit(tmp_path, module, steps=2, updates_per_batch=1):
    dm = PromptDataModule(source=DataSource(num_rows=16, num_val_rows=4), batch_size=2, eval_batch_size=4)
    trainer = Trainer(
        max_steps=steps * updates_per_batch,  # max_steps counts optimizer steps, val_check_interval batches
        logger=CSVLogger(tmp_path),
        log_every_n_steps=1,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        val_check_interval=steps,
        num_sanity_val_steps=0,
        default_root_dir=tmp_path,
    )
    trainer.fit(module, dm)
    with open(next(tmp_path.glob("lightning_logs/version_0/metrics.csv"))) as f:
        return list(csv.DictReader(f))


def _grpo(**kwargs):
    return GRPO(
        completions_per_prompt=4, sampling=SamplingConfig(max_new_tokens=6), log_samples_every_n_steps=1, **kwargs
    )


def test_grpo_trains_and_logs_metric_names(tmp_path):
    torch.manual_seed(0)
    module = _grpo(num_iterations=2, mini_batch_size=4)
    assert module.policy is None  # roles are built in configure_model
    rows = _fit(tmp_path, module, updates_per_batch=4)
    assert module.reference.kind == "none" and module.reference.model is None
    names = set(rows[0])
    for name in (
        "reward",
        "reward_std",
        "frac_reward_zero_std",
        "rewards/arithmetic_answer",
        "entropy",
        "clip_ratio/region_mean",
        "completions/mean_length",
        "completions/min_length",
        "completions/max_length",
        "completions/clipped_ratio",
        "distinct_2",
        "timing/generation",
        "timing/scoring",
        "timing/update",
        "loss",
    ):
        assert f"train/{name}" in names, name
    assert "val/reward" in names
    # 2 steps x 2 iterations x (8 completions / 4 per minibatch) optimizer steps
    assert module.trainer.global_step == 8
    samples = (tmp_path / "samples.jsonl").read_text().splitlines()
    assert len(samples) == 2 * 4 and '"arithmetic_answer"' in samples[0]


def test_grpo_with_kl_coef_builds_a_reference_and_logs_kl(tmp_path):
    module = _grpo(kl_coef=0.05)
    rows = _fit(tmp_path, module, steps=1)
    assert module.reference.model is not None and not any(p.requires_grad for p in module.reference.parameters())
    assert any(r.get("train/kl") for r in rows)


def test_raising_reward_stops_or_is_counted(tmp_path):
    spec = [RewardSpec("tests.objectives.test_grpo.flaky_reward"), RewardSpec("lit_align.rewards.arithmetic_answer")]
    with pytest.raises(LitAlignError, match="reward 'flaky_reward' failed on sample 0"):
        _fit(tmp_path / "a", _grpo(rewards=spec, on_reward_error="raise"), steps=1)
    with pytest.warns(UserWarning, match="flaky_reward' failed"):
        rows = _fit(tmp_path / "b", _grpo(rewards=spec, on_reward_error="none"), steps=1)
    failures = [
        float(r["train/rewards/flaky_reward/failures"]) for r in rows if r.get("train/rewards/flaky_reward/failures")
    ]
    assert failures == [8.0]  # 2 prompts x 4 completions, each scored None and counted
    # None values stay out of the statistics: the flaky reward's mean is 0 (no known value), not NaN
    assert [float(r["train/rewards/flaky_reward"]) for r in rows if r.get("train/rewards/flaky_reward")] == [0.0]


def test_filter_zero_std_updates_on_the_groups_with_spread_only(tmp_path, monkeypatch):
    """Only the rows of groups with a reward spread reach the update; a batch without any takes no step."""
    from lit_align.ops.advantages import informative_rows

    rewards = torch.tensor([1.0, 1.0, 1.0, 1.0, 0.0, 1.0, 0.0, 0.0, float("nan"), 2.0, 2.0, float("nan")])
    assert informative_rows(rewards, 4).tolist() == [False] * 4 + [True] * 4 + [False] * 4

    seen = []
    torch.manual_seed(0)
    module = _grpo(filter_zero_std=True)
    original = GRPO._update

    def spy(self, rollout, advantages):
        seen.append(len(advantages))
        return original(self, rollout, advantages)

    monkeypatch.setattr(GRPO, "_update", spy)
    rows = _fit(tmp_path, module, steps=2)
    kept = [float(r["train/frac_groups_kept"]) for r in rows if r.get("train/frac_groups_kept")]
    assert seen == [round(k * 8) for k in kept if k > 0] and len(seen) == 2 and all(n % 4 == 0 for n in seen)
    seen.clear()
    uniform = _grpo(filter_zero_std=True, rewards=[RewardSpec("tests.runtime.monitor_rewards.constant")],
                    no_signal_patience=2)  # fmt: skip
    with pytest.raises(LitAlignError, match="2 batches in a row without learning signal"):
        _fit(tmp_path / "uniform", uniform, steps=2)
    assert seen == []  # no update was made from uniform groups


def test_dynamic_sampling_draws_more_prompts_until_a_batch_is_full(tmp_path, monkeypatch):
    """Each update gets exactly one batch of prompts' informative groups, drawn from up to 4 generation batches."""
    seen = []
    original = GRPO._update

    def spy(self, rollout, advantages):
        seen.append((len(advantages), rollout.completion_mask.any(-1).all().item()))
        return original(self, rollout, advantages)

    monkeypatch.setattr(GRPO, "_update", spy)
    torch.manual_seed(0)
    rows = _fit(tmp_path, _grpo(filter_zero_std=True, dynamic_sampling=4), steps=3)
    draws = [float(r["train/generation_batches"]) for r in rows if r.get("train/generation_batches")]
    assert len(seen) == 3 and all(1 <= d <= 4 for d in draws) and max(draws) > 1, (draws, seen)
    # An update never holds more than one batch (2 prompts x 4 completions), only whole groups, and one filled up
    # from more than one generation batch.
    assert all(n <= 8 and n % 4 == 0 for n, _ in seen) and 8 in [n for n, _ in seen], seen
    with pytest.raises(LitAlignError, match="GRPO.dynamic_sampling: needs filter_zero_std: true"):
        _grpo(dynamic_sampling=2)
