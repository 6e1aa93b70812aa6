"""GRPO: group-relative policy optimisation with verifiable or learned rewards (manual optimisation)."""

from __future__ import annotations

from typing import Any, Literal

import torch
from lightning import LightningModule
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable

from lit_align.domains import AtLeastTwo, NonNegativeFloat, NonNegativeInt, PositiveFloat, PositiveInt, check_args
from lit_align.errors import ConfigError
from lit_align.losses.policy_gradient import LossNormalization, clipped_policy_loss
from lit_align.objectives.names import renamed
from lit_align.objectives.online import (
    Sampler,
    as_tensors,
    check_group_sampling,
    log_rollout,
    timed,
    validation_rollout,
    write_samples,
)
from lit_align.objectives.optim import configure_optimizers, manual_step, role_device
from lit_align.ops.advantages import AdvantageScale, group_advantages, informative_rows
from lit_align.ops.logprobs import masked_mean
from lit_align.rewards.combine import OnRewardError, RewardSet, RewardSpec
from lit_align.roles.models import ModelSpec, load_policy
from lit_align.roles.reference import Reference, ReferenceKind, ReferenceSpec, WithReference
from lit_align.roles.scoring import without_autograd
from lit_align.rollout import Rollout, RolloutSpec, SamplingConfig, cat_rollouts, completion_logps
from lit_align.runtime.distributed import mean_over_ranks
from lit_align.types import PromptBatch

ARITHMETIC = RewardSpec("lit_align.rewards.arithmetic_answer")


class GRPO(WithReference, LightningModule):
    """Group Relative Policy Optimisation (Shao et al., 2024; arXiv:2402.03300) with the DAPO / Dr. GRPO options.

    Each training step: sample ``completions_per_prompt`` completions of every prompt -> score them with the rewards ->
    group-normalised advantages -> ``num_iterations`` passes of minibatch updates on the clipped surrogate (the
    log-probs of the sampling policy are stored once, so later passes are off-policy corrected). No reference model
    is built when ``kl_coef`` is 0. Validation decodes greedily and logs ``val/reward``.
    """

    def __init__(
        self,
        policy: ModelSpec = ModelSpec(),  # noqa: B008 (frozen dataclass)
        rewards: list[RewardSpec] = [ARITHMETIC],  # noqa: B006 (read only)
        on_reward_error: OnRewardError = "raise",
        no_signal_patience: NonNegativeInt = 20,
        completions_per_prompt: AtLeastTwo = 8,
        sampling: SamplingConfig = SamplingConfig(),  # noqa: B008
        eval_sampling: SamplingConfig = SamplingConfig(temperature=0.0),  # noqa: B008
        rollout: RolloutSpec = RolloutSpec(),  # noqa: B008
        advantage_scale: Literal["group", "batch", "none"] = "group",
        loss_normalization: Literal["sequence", "constant", "token"] = "sequence",
        epsilon: PositiveFloat = 0.2,
        epsilon_high: PositiveFloat | None = None,
        kl_coef: NonNegativeFloat = 0.0,
        reference: ReferenceSpec | ReferenceKind = "auto",
        num_iterations: PositiveInt = 1,
        mini_batch_size: PositiveInt | None = None,
        max_grad_norm: PositiveFloat | None = 1.0,
        filter_zero_std: bool = False,
        dynamic_sampling: NonNegativeInt = 0,
        log_samples_every_n_steps: NonNegativeInt = 50,
        num_samples_to_log: NonNegativeInt = 4,
        optimizer: OptimizerCallable = torch.optim.AdamW,
        lr_scheduler: LRSchedulerCallable | None = None,
        group_size: AtLeastTwo | None = None,
        beta: NonNegativeFloat | None = None,
    ) -> None:
        """Configure the objective.

        Args:
            policy: The model to train and how (full, LoRA, QLoRA).
            rewards: Reward functions and weights (see :class:`lit_align.rewards.RewardSpec`).
            on_reward_error: ``raise`` stops at a reward that raises; ``none`` scores that sample None and counts it.
            no_signal_patience: Stop the run (one line, exit 2) after this many training batches in a row without
                learning signal: no usable reward, or the same reward for every completion of every prompt. The
                first such batch warns; 0 never stops.
            completions_per_prompt: Completions sampled per prompt (G; TRL's ``num_generations``).
            sampling: Temperature, top-p, max new tokens and truncation masking for training rollouts.
            eval_sampling: Sampling for validation (greedy by default).
            rollout: The engine that samples completions (transformers ``generate`` on the policy, a bf16
                copy of it, vLLM) and its precision; see :class:`~lit_align.rollout.RolloutSpec`.
            advantage_scale: Divide centred rewards by the ``group`` std (GRPO), the ``batch`` std, or ``none``
                (Dr. GRPO).
            loss_normalization: ``sequence`` (GRPO), ``constant`` (Dr. GRPO) or ``token`` (DAPO).
            epsilon: Lower clip range of the ratio.
            epsilon_high: Upper clip range (DAPO clip-higher, e.g. 0.28); None uses ``epsilon``.
            kl_coef: Weight of the k3 KL penalty to the reference (TRL's GRPO ``beta``); 0 builds no reference.
            reference: Where reference log-probs come from (only with ``kl_coef`` > 0).
            num_iterations: Update passes over one generation batch (mu in the paper).
            mini_batch_size: Completions per optimizer step within a pass; None uses the whole batch.
            max_grad_norm: Clip the gradient norm before each step; None disables it.
            filter_zero_std: Leave groups whose completions all got one reward out of the update (and out of the
                loss normalisation), as DAPO's dynamic-sampling filter; ``train/frac_groups_kept`` logs the share kept.
                A batch with no such group takes no step.
            dynamic_sampling: With ``filter_zero_std``: draw up to this many batches of prompts per update, keeping
                their informative groups, until they fill one batch of prompts (DAPO's dynamic sampling; verl's
                ``max_num_gen_batches``); the update then uses exactly one batch of prompts' groups. 0 does not draw
                more. Groups kept for a later update are not checkpointed. ``train/generation_batches`` logs the draws.
            log_samples_every_n_steps: Write sample prompts, completions and rewards to ``samples.jsonl`` this often.
            num_samples_to_log: How many samples each time.
            optimizer: Optimizer class and arguments.
            lr_scheduler: Optional scheduler, stepped after every optimizer step.
            group_size: Deprecated name of ``completions_per_prompt``.
            beta: Deprecated name of ``kl_coef``.

        """
        check_args(GRPO.__init__, locals(), "GRPO")
        super().__init__()
        completions_per_prompt = renamed(
            completions_per_prompt, group_size, default=8, old="group_size", new="completions_per_prompt", owner="GRPO"
        )
        kl_coef = renamed(kl_coef, beta, default=0.0, old="beta", new="kl_coef", owner="GRPO")
        self.save_hyperparameters(ignore=["optimizer", "lr_scheduler", "group_size", "beta"])
        self.hparams.update(completions_per_prompt=completions_per_prompt, kl_coef=kl_coef)
        self.automatic_optimization = False
        self.policy_spec, self.optimizer, self.lr_scheduler = policy, optimizer, lr_scheduler
        self.sampling, self.eval_sampling, self.rollout_spec = (
            sampling,
            eval_sampling,
            rollout,
        )  # hparams holds them as plain dicts
        check_group_sampling(sampling, completions_per_prompt, "GRPO")
        if dynamic_sampling and not filter_zero_std:
            raise ConfigError("GRPO.dynamic_sampling", "needs filter_zero_std: true (it refills what the filter drops)")
        self._kept: list[tuple[Rollout, torch.Tensor]] = []  # informative groups waiting for a full batch
        self.reference = Reference(reference, finetune=policy.finetune, fixed_rows=False, needed=kl_coef > 0)
        self.policy: torch.nn.Module | None = None
        self.sampler: Sampler | None = None  # built in configure_model, so a bad reward is a one-line error

    def configure_model(self) -> None:
        """Build the rewards first (a bad one fails before any model loads), the policy, reference and sampler."""
        if self.policy is not None:
            return
        rewards = RewardSet(self.hparams.rewards, self.hparams.on_reward_error, key="model.init_args.rewards")
        self.policy = load_policy(self.policy_spec, device=role_device(self))
        self.reference.build(self.policy, role_device(self))
        self.sampler = Sampler.for_policy(
            self.policy, self.policy_spec, rewards, self.hparams.no_signal_patience, self.rollout_spec
        )

    def on_fit_start(self) -> None:
        """Refuse the group filter across processes: each would decide alone whether to step (DDP would hang)."""
        if self.hparams.filter_zero_std and self.trainer.world_size > 1:
            raise ConfigError(
                "model.init_args.filter_zero_std", "runs in single-process training only for now (one device)"
            )

    def training_step(self, batch: PromptBatch, batch_idx: int) -> None:
        """Rollout -> rewards -> advantages -> ``num_iterations`` passes of minibatch updates."""
        hp, timings = self.hparams, {}
        with timed(timings, "timing/generation"):
            samples = self.sampler.sample(
                self.policy, batch, hp.completions_per_prompt, self.sampling, version=self.global_step
            )
        with timed(timings, "timing/scoring"):
            scores = self.sampler.score(samples, training=True)
            advantages = group_advantages(scores.total, hp.completions_per_prompt, AdvantageScale(hp.advantage_scale))
        rollout, advantages, filtered = samples.rollout, advantages.to(self.device), {}
        if hp.filter_zero_std:
            keep = informative_rows(scores.total, hp.completions_per_prompt).to(self.device)  # (N,)
            filtered["frac_groups_kept"] = keep.float().mean()
            self._kept.append((Rollout(*(t[keep] for t in rollout)), advantages[keep]))
            wanted = len(batch["prompts"]) * hp.completions_per_prompt
            if sum(len(a) for _, a in self._kept) < wanted and len(self._kept) < hp.dynamic_sampling:
                advantages = advantages[:0]  # draw the next batch of prompts before updating
            else:
                filtered["generation_batches"] = torch.tensor(float(len(self._kept)))
                pad_id = self.sampler.tokenizer.pad_token_id
                rollout = cat_rollouts([r for r, _ in self._kept], pad_id)
                advantages = torch.cat([a for _, a in self._kept])
                rollout, advantages = Rollout(*(t[:wanted] for t in rollout)), advantages[:wanted]
                self._kept.clear()
        with timed(timings, "timing/update"):
            stats = self._update(rollout, advantages) if len(advantages) else {}
        log_rollout(
            self,
            "train",
            samples.rollout,
            scores,
            hp.completions_per_prompt,
            {**stats, **filtered, **as_tensors(timings), **self.sampler.signal_metrics()},
        )
        if hp.log_samples_every_n_steps and batch_idx % hp.log_samples_every_n_steps == 0:
            write_samples(self, samples.batch["prompts"], samples.completions, scores, hp.num_samples_to_log)

    def _update(self, rollout: Rollout, advantages: torch.Tensor) -> dict[str, torch.Tensor]:
        hp = self.hparams
        temperature = self.sampling.temperature
        n = len(advantages)
        size = hp.mini_batch_size or n
        old_logps = ref_logps = None
        if hp.num_iterations > 1 or size < n:  # later updates are off-policy: keep the sampling policy's logps
            with without_autograd(self):
                old_logps = completion_logps(self.policy, rollout, temperature=temperature).token_logps.clone()
        if hp.kl_coef:
            with self.reference.use() as ref:
                ref_logps = completion_logps(ref, rollout, temperature=temperature).token_logps.clone()
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
                    kl_coef=hp.kl_coef,
                )
                manual_step(self, out.loss, hp.max_grad_norm)
                entropy = masked_mean(scored.entropy, part.completion_mask)
                step = {"loss": out.loss.detach(), "entropy": entropy, "clip_ratio/low_mean": out.low_clip}
                step |= {"clip_ratio/high_mean": out.high_clip, "clip_ratio/region_mean": out.low_clip + out.high_clip}
                if hp.kl_coef:
                    step["kl"] = step["kl_per_token"] = out.kl  # TRL's GRPO ``kl`` is already per token
                for k, v in step.items():
                    history.setdefault(k, []).append(v)
        return {k: torch.stack(v).mean() for k, v in history.items()}

    def validation_step(self, batch: PromptBatch, batch_idx: int) -> None:
        """Greedy completions of held-out prompts: ``val/reward`` and the completion metrics."""
        validation_rollout(self, self.policy, self.sampler, batch, "val", self.eval_sampling)

    def test_step(self, batch: PromptBatch, batch_idx: int) -> None:
        """The same on the test split."""
        validation_rollout(self, self.policy, self.sampler, batch, "test", self.eval_sampling)

    def configure_optimizers(self) -> Any:
        """Optimizer over trainable parameters (never the frozen reference)."""
        return configure_optimizers(self, self.optimizer, self.lr_scheduler)
