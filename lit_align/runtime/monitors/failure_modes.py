"""One callback per way alignment fails quietly; each warns once with the likely cause and the usual fix.

They read what the objectives log (``train/rewards/margins``, ``train/kl_per_token``, ``train/frac_reward_zero_std``,
``train/reward``, ``train/completions/mean_length``, ``train/distinct_2``, ``train/rewards/<name>``), so they
apply to any objective that logs those names and stay idle otherwise. The recipes turn on the ones that fit.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from lightning import LightningModule, Trainer

from lit_align.domains import NonNegativeInt, PositiveFloat, PositiveInt
from lit_align.ops.fingerprint import fingerprint
from lit_align.runtime.monitors.base import Monitor
from lit_align.runtime.monitors.trends import change, correlation, window_mean

LN2 = math.log(2)
MAX_KL_PER_TOKEN = 1.0
"""KLBound's default, in nats per token (measured on healthy runs: docs/results.md, "Failure-mode monitors")."""


def _trainable(module: LightningModule) -> list[torch.Tensor]:
    return [p for p in module.parameters() if p.requires_grad]


class PreferenceStuck(Monitor):
    """DPO-style training that learns nothing: the weights do not move, or the preference margin stays at zero.

    With a reference (or a fresh reward head) the margin starts at 0; a margin whose mean over ``window`` steps has
    never left ``tolerance`` of 0 means the loss sits at ln 2 (sigmoid DPO's value at a zero margin). Once a window
    mean has left it, learning has started and later noisy dips (KTO's batches) do not count. Reference-free losses
    (SimPO, ORPO) start with a margin far from 0 that need not grow: for them only the weights are checked.

    Args:
        key: The logged margin (``train/margin`` for the reward model).
        tolerance: Size of the recent mean margin (last ``window`` steps) under which the margin counts as zero.
        after_steps: Steps before the first check; put it past a long learning-rate warm-up (the reward-model
            recipe's margin stays near 0 for its 300 warm-up steps).
        window: See :class:`~lit_align.runtime.monitors.base.Monitor`.
        stop: See :class:`~lit_align.runtime.monitors.base.Monitor`.

    """

    name = "preference_stuck"

    def __init__(
        self,
        key: str = "train/rewards/margins",
        tolerance: float = 0.01,
        after_steps: NonNegativeInt = 100,
        window: PositiveInt = 20,
        stop: bool = False,
    ) -> None:
        """See the class docstring."""
        super().__init__(after_steps, window, stop)
        self.keys, self.tolerance = (key,), tolerance
        self.start: torch.Tensor | None = None
        self.peak: float | None = None  # largest |window mean| of the margin so far

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Fingerprint the trainable weights before the first step."""
        self.start = fingerprint(_trainable(pl_module))

    def check(self, trainer: Trainer, pl_module: LightningModule) -> str | None:
        """Warn when the weights have not moved, or the margin has not."""
        if self.start is not None and torch.equal(fingerprint(_trainable(pl_module)), self.start):
            return (
                f"the trainable weights have not changed in {trainer.global_step} steps: the learning rate is 0 (or "
                "a schedule holds it at 0), no parameter is trainable, or no gradient reaches them; set a positive lr "
                "and check the policy's finetune / LoRA target modules"
            )
        margins = self.history[self.keys[0]]
        if self.peak is None:  # the first check (or the first after a resume): every window so far
            self.peak = max(abs(window_mean(margins[: i + 1], self.window)) for i in range(len(margins)))
        last = window_mean(margins, self.window)
        self.peak = max(self.peak, abs(last))
        if self.peak >= self.tolerance:  # it moved away from 0 once: learning started (later dips are noise)
            return None
        return (
            f"{self.keys[0]} is still {last:+.4f} (mean of the last {self.window} steps; it never left +-"
            f"{self.tolerance} since the start), so the loss is near ln 2, "
            f"after {trainer.global_step} steps while the weights move: the preference is not being learned; likely "
            "beta or the learning rate is too small, chosen and rejected are nearly identical (lit-align "
            "check-data), or the reference moves with the policy; raise lr or beta and check the data"
        )


class ZeroRewardSpread(Monitor):
    """Online training where most groups' completions all get one reward, so they carry no gradient.

    Args:
        threshold: Share of groups with zero spread (mean over ``window`` steps) that fires.
        after_steps: See :class:`~lit_align.runtime.monitors.base.Monitor`.
        window: See :class:`~lit_align.runtime.monitors.base.Monitor`.
        stop: See :class:`~lit_align.runtime.monitors.base.Monitor`.

    """

    name = "zero_reward_spread"
    keys = ("train/frac_reward_zero_std",)

    def __init__(
        self, threshold: float = 0.9, after_steps: NonNegativeInt = 10, window: PositiveInt = 10, stop: bool = False
    ) -> None:
        """See the class docstring."""
        super().__init__(after_steps, window, stop)
        self.threshold = threshold

    def check(self, trainer: Trainer, pl_module: LightningModule) -> str | None:
        """Warn when the recent share of zero-spread groups is above the threshold."""
        share = window_mean(self.history[self.keys[0]], self.window)
        if share <= self.threshold:
            return None
        return (
            f"{share:.0%} of groups gave every completion the same reward over the last {self.window} steps, so they "
            "give no gradient: the prompts are too hard or too easy for the policy, or the reward ignores the "
            "completion; drop such groups from the update (GRPO filter_zero_std: true), "
            "raise the temperature or completions_per_prompt, or choose prompts of the right difficulty"
        )


class KLBound(Monitor):
    """The policy drifting away from its reference: ``train/kl_per_token`` (mean over ``window`` steps) past a bound.

    For objectives that sample their completions from the policy (GRPO, PPO, online DPO), where ``kl_per_token``
    estimates KL(policy || reference) per completion token. Per token, so one bound fits short and long completions
    (a sequence-level bound fired on healthy 40-token runs). DPO and KTO do not log ``kl_per_token`` and the monitor
    stays idle there: on fixed pairs the policy's log-ratio to the reference is dominated by the rejected answers,
    which the loss pushes down on purpose (docs/results.md, "Failure-mode monitors"), so it is no sign of drift.

    Args:
        max_kl: Bound on ``|kl_per_token|``, in nats per token.
        after_steps: See :class:`~lit_align.runtime.monitors.base.Monitor`.
        window: See :class:`~lit_align.runtime.monitors.base.Monitor`.
        stop: See :class:`~lit_align.runtime.monitors.base.Monitor`.

    """

    name = "kl_bound"
    keys = ("train/kl_per_token",)

    def __init__(
        self,
        max_kl: PositiveFloat = MAX_KL_PER_TOKEN,
        after_steps: NonNegativeInt = 10,
        window: PositiveInt = 10,
        stop: bool = False,
    ) -> None:
        """See the class docstring."""
        super().__init__(after_steps, window, stop)
        self.max_kl = max_kl

    def check(self, trainer: Trainer, pl_module: LightningModule) -> str | None:
        """Warn when the recent KL is past the bound."""
        kl = window_mean(self.history[self.keys[0]], self.window)
        if abs(kl) <= self.max_kl:
            return None
        return (
            f"KL to the reference is {kl:.3f} nats per token (mean of the last {self.window} steps; bound "
            f"{self.max_kl}): the policy is drifting far from the reference, usually a learning rate too high or a KL "
            "weight too low; lower the learning rate, raise kl_coef (online) or beta (DPO)"
        )


class LengthHacking(Monitor):
    """Completions growing longer while the reward rises with their length, and the gold signal (if any) does not.

    Args:
        reward_key: The optimised reward.
        length_key: The completions' mean length.
        gold_key: A reward that measures what is wanted (logged with weight 0), if there is one.
        min_growth: Relative growth of the mean length (last window over the first) that counts.
        min_correlation: Correlation of reward and length over the run that counts.
        after_steps: See :class:`~lit_align.runtime.monitors.base.Monitor`.
        window: See :class:`~lit_align.runtime.monitors.base.Monitor`.
        stop: See :class:`~lit_align.runtime.monitors.base.Monitor`.

    """

    name = "length_hacking"

    def __init__(
        self,
        reward_key: str = "train/reward",
        length_key: str = "train/completions/mean_length",
        gold_key: str | None = None,
        min_growth: float = 0.5,
        min_correlation: float = 0.5,
        after_steps: NonNegativeInt = 20,
        window: PositiveInt = 10,
        stop: bool = False,
    ) -> None:
        """See the class docstring."""
        super().__init__(after_steps, window, stop)
        self.keys = (reward_key, length_key) + ((gold_key,) if gold_key else ())
        self.min_growth, self.min_correlation = min_growth, min_correlation

    def check(self, trainer: Trainer, pl_module: LightningModule) -> str | None:
        """Warn when length grew with the reward (and the gold signal did not rise)."""
        reward, length = self.history[self.keys[0]], self.history[self.keys[1]]
        start, now = window_mean(length, self.window, last=False), window_mean(length, self.window)
        r = correlation(reward, length)
        if now < start * (1 + self.min_growth) or change(reward, self.window) <= 0 or r < self.min_correlation:
            return None
        gold = ""
        if len(self.keys) == 3:
            gained = change(self.history[self.keys[2]], self.window)
            if gained > 0.01:
                return None
            gold = f" while {self.keys[2]} changed by {gained:+.3f}"
        return (
            f"completions grew from {start:.1f} to {now:.1f} tokens and the reward rose with them (correlation "
            f"{r:.2f}){gold}: the reward likely pays for length; add a length penalty, normalise the reward by "
            "length, lower max_new_tokens, or score with a length-controlled reward"
        )


class ModeCollapse(Monitor):
    """The completions' diversity collapsing: distinct-2 falling below a share of its starting value.

    Relative, not absolute: distinct-2 depends on the tokenizer and the task (one-word answers have few bigrams).

    Args:
        ratio: Fires when the recent distinct-2 is below ``ratio`` times the starting one.
        after_steps: See :class:`~lit_align.runtime.monitors.base.Monitor`.
        window: See :class:`~lit_align.runtime.monitors.base.Monitor`.
        stop: See :class:`~lit_align.runtime.monitors.base.Monitor`.

    """

    name = "mode_collapse"
    keys = ("train/distinct_2",)

    def __init__(
        self, ratio: float = 0.5, after_steps: NonNegativeInt = 20, window: PositiveInt = 10, stop: bool = False
    ) -> None:
        """See the class docstring."""
        super().__init__(after_steps, window, stop)
        self.ratio = ratio

    def check(self, trainer: Trainer, pl_module: LightningModule) -> str | None:
        """Warn when distinct-2 fell below ``ratio`` of its start."""
        values = self.history[self.keys[0]]
        start, now = window_mean(values, self.window, last=False), window_mean(values, self.window)
        if start <= 0 or now >= self.ratio * start:
            return None
        return (
            f"distinct-2 of the completions fell from {start:.3f} to {now:.3f}: the policy collapses onto a few "
            "answers; lower the learning rate, raise kl_coef, or sample with a higher temperature"
        )


class RewardHacking(Monitor):
    """A learned reward rising while a gold reward (logged with weight 0) falls: the policy games the learned one.

    Args:
        learned_key: The learned reward, e.g. ``train/rewards/RewardModelScorer``.
        gold_key: The gold reward, e.g. ``train/rewards/arithmetic_answer``.
        min_change: Rise of the learned and fall of the gold (last window mean minus the first) that count.
        after_steps: See :class:`~lit_align.runtime.monitors.base.Monitor`.
        window: See :class:`~lit_align.runtime.monitors.base.Monitor`.
        stop: See :class:`~lit_align.runtime.monitors.base.Monitor`.

    """

    name = "reward_hacking"

    def __init__(
        self,
        learned_key: str = "train/rewards/RewardModelScorer",
        gold_key: str = "train/rewards/arithmetic_answer",
        min_change: float = 0.05,
        after_steps: NonNegativeInt = 20,
        window: PositiveInt = 10,
        stop: bool = False,
    ) -> None:
        """See the class docstring."""
        super().__init__(after_steps, window, stop)
        self.keys, self.min_change = (learned_key, gold_key), min_change

    def check(self, trainer: Trainer, pl_module: LightningModule) -> str | None:
        """Warn when the learned reward rose and the gold one fell."""
        learned, gold = (change(self.history[k], self.window) for k in self.keys)
        if learned <= self.min_change or gold >= -self.min_change:
            return None
        return (
            f"{self.keys[0]} rose by {learned:+.3f} while {self.keys[1]} fell by {gold:+.3f}: the policy is gaming "
            "the learned reward; stop at an earlier checkpoint, raise kl_coef, retrain the reward model on the "
            "policy's own samples, or add the gold check to the reward"
        )


class FrozenReference(Monitor):
    """The reference changing although it is frozen: its fingerprint is checked at each validation and at the end.

    A scheduled refresh (``refresh_every``, iterative rounds) is expected and moves the baseline.

    Args:
        stop: See :class:`~lit_align.runtime.monitors.base.Monitor`.

    """

    name = "frozen_reference"

    def __init__(self, stop: bool = False) -> None:
        """See the class docstring."""
        super().__init__(0, 1, stop)
        self.start: torch.Tensor | None = None
        self.refreshes = 0

    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, idx: int
    ) -> None:
        """Nothing per step: the fingerprint is checked at validation."""

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Fingerprint the reference (after a resume: as it was loaded)."""
        self._baseline(pl_module)

    def _baseline(self, pl_module: LightningModule) -> None:
        reference = getattr(pl_module, "reference", None)
        self.start = reference.fingerprint() if reference is not None else None
        self.refreshes = getattr(reference, "refreshes", 0)

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Compare the reference with its fingerprint."""
        self._compare(trainer, pl_module)

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Compare once more at the end of training."""
        self._compare(trainer, pl_module)

    def _compare(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self.fired or self.start is None or trainer.sanity_checking:
            return
        reference = pl_module.reference
        if reference.refreshes != self.refreshes:
            self._baseline(pl_module)
            return
        if not torch.equal(reference.fingerprint(), self.start):
            self.alarm(
                trainer,
                f"the '{reference.kind}' reference changed although no refresh was scheduled: something trains or "
                "edits it (a reference left trainable, an optimizer over all parameters, a callback writing to it), "
                "so KL and rewards no longer compare with the starting model; keep it requires_grad_(False) and out "
                "of the optimizer",
            )

    def check(self, trainer: Trainer, pl_module: LightningModule) -> str | None:
        """Unused: the reference is compared at validation."""
        return None

    def state_dict(self) -> dict[str, Any]:
        """Only the fired flag: the fingerprint is taken anew when a resumed run starts."""
        return {"fired": self.fired}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`."""
        self.fired = state_dict["fired"]
