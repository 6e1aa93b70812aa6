"""Each failure-mode monitor fires on a run built to trigger it, once, with its cause; ``stop`` ends the run."""

import json

import pytest
import torch
from lightning import Callback, Trainer

from lit_align.data import DataSource, PairwiseDataModule, PromptDataModule
from lit_align.errors import SignalError
from lit_align.objectives import DPO, GRPO
from lit_align.rewards import RewardSpec
from lit_align.roles.reference import ReferenceSpec
from lit_align.rollout import SamplingConfig
from lit_align.runtime.monitors import (
    ALARMS_FILE,
    FrozenReference,
    KLBound,
    LengthHacking,
    ModeCollapse,
    PreferenceStuck,
    RewardHacking,
    ZeroRewardSpread,
)
from lit_align.runtime.monitors.trends import change, correlation, window_mean

REWARDS = "tests.runtime.monitor_rewards"


def _fit(tmp_path, module, dm, callbacks, steps, val_every=None):
    trainer = Trainer(
        max_steps=steps,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=callbacks,
        val_check_interval=val_every or steps,
        num_sanity_val_steps=0,
        limit_val_batches=1,
        default_root_dir=tmp_path,
    )
    trainer.fit(module, dm)


def _alarms(tmp_path):
    path = tmp_path / ALARMS_FILE
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _pairs():
    return PairwiseDataModule(source=DataSource(num_rows=64, num_val_rows=8), batch_size=8, max_length=64)


def _prompts():
    return PromptDataModule(source=DataSource(num_rows=64, num_val_rows=4), batch_size=4, eval_batch_size=4)


def _adamw(lr):
    return lambda params: torch.optim.AdamW(params, lr=lr, weight_decay=0.0)


def _grpo(lr, rewards, **kwargs):
    return GRPO(
        rewards=rewards, completions_per_prompt=4, sampling=SamplingConfig(max_new_tokens=8), optimizer=_adamw(lr),
        log_samples_every_n_steps=0, **kwargs,
    )  # fmt: skip


def test_the_trends_by_hand():
    values = [1.0, 3.0, 2.0, 6.0, 8.0]
    assert window_mean(values, 2) == 7.0 and window_mean(values, 2, last=False) == 2.0 and change(values, 2) == 5.0
    assert correlation([1, 2, 3], [2, 4, 6]) == pytest.approx(1.0)
    assert correlation([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0) and correlation([1, 2], [5, 5]) == 0.0
    # x = (1, 2, 3, 4), y = (1, 3, 2, 4): cov 2.5 / 3, var_x = var_y = 5 / 3 -> r = 0.8
    assert correlation([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(0.8)


def test_dpo_with_a_schedule_at_zero_fires_weights_not_moving(tmp_path):
    # lr: 0 itself is refused when the optimizer is built; a schedule that multiplies it by 0 is not.
    monitor = PreferenceStuck(after_steps=4, window=2)
    schedule = lambda optimizer: torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 0.0)  # noqa: E731
    _fit(tmp_path, DPO(optimizer=_adamw(1e-4), lr_scheduler=schedule), _pairs(), [monitor], steps=6)
    alarms = _alarms(tmp_path)
    assert [a["monitor"] for a in alarms] == ["preference_stuck"] and alarms[0]["step"] == 4
    assert "the trainable weights have not changed in 4 steps" in alarms[0]["message"]


def test_dpo_with_a_vanishing_beta_is_stuck_at_ln2_while_the_weights_move(tmp_path):
    monitor = PreferenceStuck(after_steps=6, window=2)
    _fit(tmp_path, DPO(beta=1e-6, optimizer=_adamw(1e-3)), _pairs(), [monitor], steps=6)
    (alarm,) = _alarms(tmp_path)
    assert "so the loss is near ln 2" in alarm["message"] and "while the weights move" in alarm["message"]


def test_a_very_high_learning_rate_breaks_the_kl_bound_and_stop_ends_the_run(tmp_path):
    rewards = [RewardSpec("lit_align.rewards.arithmetic_answer")]
    calm = KLBound(after_steps=2, window=2)  # the default bound, per token
    _fit(tmp_path / "calm", _grpo(1e-5, rewards, kl_coef=0.04), _prompts(), [calm], steps=4)
    assert not _alarms(tmp_path / "calm") and len(calm.history["train/kl_per_token"]) == 4
    monitor = KLBound(after_steps=2, window=2, stop=True)
    with pytest.raises(SignalError, match=r"kl_bound at step \d+: KL to the reference is \d+\.\d+ nats per token"):
        _fit(tmp_path, _grpo(3e-2, rewards, kl_coef=0.04), _prompts(), [monitor], steps=30)
    assert len(_alarms(tmp_path)) == 1


def test_a_reward_constant_within_groups_fires_zero_spread(tmp_path):
    module = _grpo(1e-5, [RewardSpec(f"{REWARDS}.constant")], no_signal_patience=0)
    _fit(tmp_path, module, _prompts(), [ZeroRewardSpread(after_steps=3, window=2)], steps=3)
    (alarm,) = _alarms(tmp_path)
    assert alarm["monitor"] == "zero_reward_spread" and "100% of groups" in alarm["message"]


def test_a_reward_that_pays_for_length_fires_length_and_reward_hacking(tmp_path):
    torch.manual_seed(0)
    rewards = [RewardSpec(f"{REWARDS}.length_pays"), RewardSpec("lit_align.rewards.arithmetic_answer", weight=0.0)]
    gold = "train/rewards/arithmetic_answer"
    monitors = [
        LengthHacking(gold_key=gold, after_steps=12, window=4),
        RewardHacking(learned_key="train/rewards/length_pays", gold_key=gold, after_steps=12, window=4),
    ]
    _fit(tmp_path, _grpo(3e-3, rewards), _prompts(), monitors, steps=16)
    fired = {a["monitor"]: a["message"] for a in _alarms(tmp_path)}
    assert set(fired) == {"length_hacking", "reward_hacking"}, fired
    assert "the reward likely pays for length" in fired["length_hacking"]
    assert f"while {gold} fell" in fired["reward_hacking"]


def test_a_reward_for_brevity_collapses_the_completions(tmp_path):
    torch.manual_seed(0)
    module = _grpo(3e-3, [RewardSpec(f"{REWARDS}.short_pays")])
    _fit(tmp_path, module, _prompts(), [ModeCollapse(after_steps=12, window=4)], steps=16)
    (alarm,) = _alarms(tmp_path)
    assert alarm["monitor"] == "mode_collapse" and "distinct-2 of the completions fell" in alarm["message"]


class EditReference(Callback):
    """A bug stand-in: writes to the frozen reference's weights after step 2."""

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step == 2:
            with torch.no_grad():
                next(pl_module.reference.model.parameters()).add_(0.01)


def test_a_reference_edited_during_training_fires_at_the_next_validation(tmp_path):
    _fit(tmp_path, DPO(reference="copy"), _pairs(), [FrozenReference(), EditReference()], steps=6, val_every=3)
    (alarm,) = _alarms(tmp_path)
    assert alarm["monitor"] == "frozen_reference" and alarm["step"] == 3
    assert "the 'copy' reference changed although no refresh was scheduled" in alarm["message"]


def test_a_scheduled_refresh_is_no_alarm(tmp_path):
    module = DPO(reference=ReferenceSpec(kind="copy", refresh_every=2), optimizer=_adamw(1e-3))
    _fit(tmp_path, module, _pairs(), [FrozenReference()], steps=6, val_every=3)
    assert module.reference.refreshes >= 2 and _alarms(tmp_path) == []


def test_a_reference_free_margin_that_stays_high_is_not_stuck():
    """SimPO's margin starts far from 0 and may stay flat while it learns (recipes/simpo.yaml: about 5 throughout)."""
    from types import SimpleNamespace

    monitor = PreferenceStuck(window=20)
    trainer = SimpleNamespace(global_step=150)
    monitor.history = {"train/rewards/margins": [5.0 + 0.8 * (-1) ** i for i in range(150)]}
    assert monitor.check(trainer, None) is None
    stuck = PreferenceStuck(window=20)
    stuck.history = {"train/rewards/margins": [0.002 * (-1) ** i for i in range(150)]}
    assert "so the loss is near ln 2" in stuck.check(trainer, None)


def test_a_noisy_margin_that_once_left_zero_is_not_stuck_later():
    """KTO's margin (recipes/kto.yaml) rose to about 0.1, then dipped near 0 for a few logged steps before growing."""
    from types import SimpleNamespace

    monitor = PreferenceStuck(window=4)
    monitor.history = {"train/rewards/margins": [0.0, 0.02, 0.05, 0.1, 0.12, 0.1, -0.01, 0.01, -0.005, 0.001]}
    assert monitor.check(SimpleNamespace(global_step=150), None) is None  # the last 4 average -0.001: noise
