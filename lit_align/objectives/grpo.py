"""GRPO: group-relative policy optimisation with verifiable or learned rewards (manual optimisation)."""

from __future__ import annotations

from typing import Any, Literal

import torch
from lightning import LightningModule
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable

from lit_align.distributed import mean_over_ranks
from lit_align.losses.policy_gradient import LossNormalization, clipped_policy_loss
from lit_align.modeling import Finetune, ModelSpec, reference_mode
from lit_align.objectives.logps import ReferenceMode, checkpoint_without_reference
from lit_align.objectives.online import (
    as_tensors,
    build_online_roles,
    log_rollout,
    sample,
    timed,
    validation_rollout,
    write_samples,
)
from lit_align.objectives.optim import configure_optimizers
from lit_align.ops.advantages import AdvantageScale, group_advantages
from lit_align.rewards.combine import OnRewardError, RewardSpec
from lit_align.rollout import Rollout, SamplingConfig, completion_logps
from lit_align.types import PromptBatch

ARITHMETIC = RewardSpec("lit_align.rewards.arithmetic_answer")


class GRPO(LightningModule):
    """Group Relative Policy Optimisation (Shao et al., 2024; arXiv:2402.03300) with the DAPO / Dr. GRPO options.

    Each training step: sample ``group_size`` completions of every prompt -> score them with the rewards ->
    group-normalised advantages -> ``num_iterations`` passes of minibatch updates on the clipped surrogate (the
    log-probs of the sampling policy are stored once, so later passes are off-policy corrected). No reference model
    is built when ``beta`` is 0. Validation decodes greedily and logs ``val/reward``.
    """

    def __init__(
        self,
        policy: ModelSpec = ModelSpec(),  # noqa: B008 (frozen dataclass)
        rewards: list[RewardSpec] = [ARITHMETIC],  # noqa: B006 (read only)
        on_reward_error: OnRewardError = "raise",
        group_size: int = 8,
        sampling: SamplingConfig = SamplingConfig(),  # noqa: B008
        eval_sampling: SamplingConfig = SamplingConfig(temperature=0.0),  # noqa: B008
        advantage_scale: Literal["group", "batch", "none"] = "group",
        loss_normalization: Literal["sequence", "constant", "token"] = "sequence",
        epsilon: float = 0.2,
        epsilon_high: float | None = None,
        beta: float = 0.0,
        reference: Literal["auto", "copy", "adapter"] = "auto",
        num_iterations: int = 1,
        mini_batch_size: int | None = None,
        max_grad_norm: float | None = 1.0,
        log_samples_every_n_steps: int = 50,
        num_samples_to_log: int = 4,
        optimizer: OptimizerCallable = torch.optim.AdamW,
        lr_scheduler: LRSchedulerCallable | None = None,
    ) -> None:
        """Configure the objective.

        Args:
            policy: The model to train and how (full, LoRA, QLoRA).
            rewards: Reward functions and weights (see :class:`lit_align.rewards.RewardSpec`).
            on_reward_error: ``raise`` stops at a reward that raises; ``none`` scores that sample None and counts it.
            group_size: Completions sampled per prompt (G).
            sampling: Temperature, top-p, max new tokens and truncation masking for training rollouts.
            eval_sampling: Sampling for validation (greedy by default).
            advantage_scale: Divide centred rewards by the ``group`` std (GRPO), the ``batch`` std, or ``none``
                (Dr. GRPO).
            loss_normalization: ``sequence`` (GRPO), ``constant`` (Dr. GRPO) or ``token`` (DAPO).
            epsilon: Lower clip range of the ratio.
            epsilon_high: Upper clip range (DAPO clip-higher, e.g. 0.28); None uses ``epsilon``.
            beta: Weight of the k3 KL penalty to the reference; 0 builds no reference.
            reference: ``auto``, ``copy`` or ``adapter`` (only used when ``beta`` > 0).
            num_iterations: Update passes over one generation batch (mu in the paper).
            mini_batch_size: Completions per optimizer step within a pass; None uses the whole batch.
            max_grad_norm: Clip the gradient norm before each step; None disables it.
            log_samples_every_n_steps: Write sample prompts, completions and rewards to ``samples.jsonl`` this often.
            num_samples_to_log: How many samples each time.
            optimizer: Optimizer class and arguments.
            lr_scheduler: Optional scheduler, stepped after every optimizer step.

        """
        super().__init__()
        self.save_hyperparameters(ignore=["optimizer", "lr_scheduler"])
        self.automatic_optimization = False
        self.policy_spec, self.optimizer, self.lr_scheduler = policy, optimizer, lr_scheduler
        self.sampling, self.eval_sampling = sampling, eval_sampling  # hparams holds them as plain dicts
        self.reference_mode = ReferenceMode(reference).resolve(Finetune(policy.finetune)) if beta else None
        self.policy: torch.nn.Module | None = None
        self.reference: torch.nn.Module | None = None
        self.reward_set = None  # built in configure_model, so a bad reward is a one-line error, not a dump
        self.strict_loading = False  # checkpoints leave out the frozen reference

    def configure_model(self) -> None:
        """Build the policy, its tokenizer and, when ``beta`` > 0 under full fine-tuning, the reference copy."""
        if self.policy is not None:
            return
        build_online_roles(self, self.reference_mode or ReferenceMode.ADAPTER)  # ADAPTER builds no copy

    def training_step(self, batch: PromptBatch, batch_idx: int) -> None:
        """Rollout -> rewards -> advantages -> ``num_iterations`` passes of minibatch updates."""
        hp, timings = self.hparams, {}
        with timed(timings, "timing/generation"):
            grouped, rollout, completions = sample(self, batch, hp.group_size, self.sampling)
        with timed(timings, "timing/scoring"):
            scores = self.reward_set(grouped["prompts"], completions, grouped["columns"])
            advantages = group_advantages(scores.total, hp.group_size, AdvantageScale(hp.advantage_scale))
            advantages = advantages.to(self.device)
        with timed(timings, "timing/update"):
            stats = self._update(rollout, advantages)
        log_rollout(self, "train", rollout, scores, hp.group_size, {**stats, **as_tensors(timings)})
        if hp.log_samples_every_n_steps and batch_idx % hp.log_samples_every_n_steps == 0:
            write_samples(self, grouped["prompts"], completions, scores, hp.num_samples_to_log)

    def _update(self, rollout: Rollout, advantages: torch.Tensor) -> dict[str, torch.Tensor]:
        hp = self.hparams
        temperature = self.sampling.temperature
        n = len(advantages)
        size = hp.mini_batch_size or n
        old_logps = ref_logps = None
        with torch.no_grad():
            if hp.num_iterations > 1 or size < n:  # later updates are off-policy: keep the sampling policy's logps
                old_logps = completion_logps(self.policy, rollout, temperature=temperature).token_logps
            if hp.beta:
                with reference_mode(self.policy, self.reference) as ref:
                    ref_logps = completion_logps(ref, rollout, temperature=temperature).token_logps
        opt, sched = self.optimizers(), self.lr_schedulers()
        history: dict[str, list[torch.Tensor]] = {}
        for _ in range(hp.num_iterations):
            for start in range(0, n, size):
                rows = slice(start, start + size)
                part = Rollout(*(t[rows] for t in rollout))
                scored = completion_logps(self.policy, part, with_entropy=True, temperature=temperature)
                # DAPO divides by the token count of the global batch; DDP averages gradients over ranks.
                num_tokens = mean_over_ranks(part.completion_mask.sum().float()).clamp(min=1)
                old = scored.token_logps.detach() if old_logps is None else old_logps[rows]
                out = clipped_policy_loss(
                    scored.token_logps,
                    old,
                    advantages[rows],
                    part.completion_mask,
                    epsilon=hp.epsilon,
                    epsilon_high=hp.epsilon_high,
                    normalization=LossNormalization(hp.loss_normalization),
                    max_completion_length=self.sampling.max_new_tokens,
                    num_tokens=num_tokens,
                    ref_token_logps=None if ref_logps is None else ref_logps[rows],
                    beta=hp.beta,
                )
                opt.zero_grad()
                self.manual_backward(out.loss)
                if hp.max_grad_norm:
                    self.clip_gradients(opt, gradient_clip_val=hp.max_grad_norm, gradient_clip_algorithm="norm")
                opt.step()
                if sched is not None:
                    sched.step()
                mask = part.completion_mask
                entropy = (scored.entropy * mask).sum() / mask.sum().clamp(min=1)
                step = {"loss": out.loss.detach(), "entropy": entropy, "clip_ratio/low_mean": out.low_clip}
                step |= {"clip_ratio/high_mean": out.high_clip, "clip_ratio/region_mean": out.low_clip + out.high_clip}
                if hp.beta:
                    step["kl"] = out.kl
                for k, v in step.items():
                    history.setdefault(k, []).append(v)
        return {k: torch.stack(v).mean() for k, v in history.items()}

    def validation_step(self, batch: PromptBatch, batch_idx: int) -> None:
        """Greedy completions of held-out prompts: ``val/reward`` and the completion metrics."""
        validation_rollout(self, batch, "val", self.eval_sampling)

    def test_step(self, batch: PromptBatch, batch_idx: int) -> None:
        """The same on the test split."""
        validation_rollout(self, batch, "test", self.eval_sampling)

    def configure_optimizers(self) -> Any:
        """Optimizer over trainable parameters (never the frozen reference)."""
        return configure_optimizers(self, self.optimizer, self.lr_scheduler)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Drop the frozen reference copy."""
        checkpoint_without_reference(checkpoint)
