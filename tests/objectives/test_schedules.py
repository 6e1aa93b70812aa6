"""Schedules whose length is the run's: factors by hand, torch's OneCycleLR reproduced, recipes at any max_steps."""

import math

import pytest
import torch

from lit_align.commands.fit import run_cli
from lit_align.errors import ConfigError
from lit_align.objectives.schedules import OneCycleLR, WarmupDecay, planned_steps
from tests.helpers import REPO


def _optimizer(lr=1.0):
    return torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=lr)


@pytest.mark.parametrize(
    ("decay", "expected"),
    [
        # 10 steps, 2 of warm-up: (s+1)/3, then from 1 to final_ratio 0.1 over steps 2..9 (progress (s-2)/7).
        ("cosine", [1 / 3, 2 / 3] + [0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * (s - 2) / 7)) for s in range(2, 10)]),
        ("linear", [1 / 3, 2 / 3] + [0.1 + 0.9 * (1 - (s - 2) / 7) for s in range(2, 10)]),
        ("constant", [1 / 3, 2 / 3] + [1.0] * 8),
    ],
)
def test_warmup_decay_factors_by_hand(decay, expected):
    opt = _optimizer(lr=2.0)
    with planned_steps(10):
        schedule = WarmupDecay(opt, warmup_ratio=0.2, decay=decay, final_ratio=0.1)
    seen = []
    for _ in range(10):
        seen.append(opt.param_groups[0]["lr"])
        opt.step()
        schedule.step()
    assert seen == pytest.approx([2.0 * e for e in expected], abs=1e-12)


def test_one_cycle_without_total_steps_is_torchs_with_the_run_length():
    ours, theirs = _optimizer(), _optimizer()
    with planned_steps(37):
        a = OneCycleLR(ours, max_lr=1e-3, pct_start=0.1)
    b = torch.optim.lr_scheduler.OneCycleLR(theirs, max_lr=1e-3, total_steps=37, pct_start=0.1)
    for _ in range(37):
        assert ours.param_groups[0]["lr"] == theirs.param_groups[0]["lr"]
        assert ours.param_groups[0]["betas"] == theirs.param_groups[0]["betas"]  # momentum cycles alike
        ours.step(), theirs.step(), a.step(), b.step()


def test_a_schedule_with_no_known_length_is_refused():
    with pytest.raises(ConfigError, match=r"model.init_args.lr_scheduler.init_args.total_steps: WarmupDecay needs"):
        WarmupDecay(_optimizer())


@pytest.mark.parametrize("recipe", ["sft", "dpo", "rm"])
@pytest.mark.parametrize("max_steps", [3, 6])
def test_recipe_schedules_follow_trainer_max_steps(tmp_path, recipe, max_steps):
    """The recipes set no total_steps: any max_steps runs to its end (torch's class crashed one step past it)."""
    cli = run_cli(
        ["fit", "--config", str(REPO / f"recipes/{recipe}.yaml"), "--trainer.max_steps", str(max_steps),
         "--data.init_args.source.num_rows", "16", "--data.init_args.source.num_val_rows", "4",
         "--data.init_args.batch_size", "4", "--trainer.enable_progress_bar", "false",
         "--trainer.default_root_dir", str(tmp_path)],
    )  # fmt: skip
    scheduler = cli.trainer.lr_scheduler_configs[0].scheduler
    assert cli.trainer.global_step == max_steps and scheduler.total_steps == max_steps


@pytest.mark.parametrize("kind", ["one_cycle", "warmup_decay"])
def test_a_resumed_run_with_a_longer_max_steps_follows_the_new_length(kind):
    def build(opt, steps):
        with planned_steps(steps):
            if kind == "one_cycle":
                return OneCycleLR(opt, max_lr=1e-3, pct_start=0.25)
            return WarmupDecay(opt, warmup_ratio=0.25)

    opt = _optimizer()
    first = build(opt, 8)
    for _ in range(4):
        opt.step(), first.step()
    state = first.state_dict()
    resumed_opt = _optimizer()
    resumed = build(resumed_opt, 16)
    resumed.load_state_dict(state)
    for _ in range(11):  # up to step 15, where torch's OneCycleLR (restored total_steps 8) raises
        resumed_opt.step(), resumed.step()
    assert resumed.total_steps == 16 and resumed.last_epoch == 15
    assert resumed_opt.param_groups[0]["lr"] < 1e-3 * 0.05  # decayed to the end of the new length


def test_one_cycle_on_a_very_short_run_keeps_one_warm_up_step():
    with planned_steps(10):
        OneCycleLR(_optimizer(), max_lr=1e-3, pct_start=0.1)  # torch's divides by zero here
