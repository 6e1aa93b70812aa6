"""PPO-based RLHF: policy, value, reward and reference roles; KL-shaped token rewards, GAE, clipped updates."""

from __future__ import annotations

from typing import Any

import torch
from lightning import LightningModule
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable

from lit_align.domains import (
    ClosedUnitInterval,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    check_args,
)
from lit_align.errors import LitAlignError
from lit_align.losses.policy_gradient import clipped_policy_loss, clipped_value_loss
from lit_align.metrics import explained_variance
from lit_align.objectives.names import renamed
from lit_align.objectives.online import Sampler, as_tensors, log_rollout, timed, validation_rollout, write_samples
from lit_align.objectives.optim import configure_optimizers, manual_step, role_device
from lit_align.ops.advantages import adaptive_kl_coef, gae, group_advantages, whiten
from lit_align.ops.kl import kl_shaped_rewards
from lit_align.ops.logprobs import masked_mean
from lit_align.ops.step_rewards import StepRewards
from lit_align.rewards.combine import OnRewardError, RewardSet, RewardSpec
from lit_align.rewards.prm import dense_step_rewards, process_reward_index
from lit_align.roles.models import ModelSpec, load_policy
from lit_align.roles.reference import Reference, ReferenceKind, ReferenceSpec, WithReference
from lit_align.roles.scoring import without_autograd
from lit_align.rollout import Rollout, RolloutSpec, SamplingConfig, ValueHead, completion_logps
from lit_align.runtime.distributed import mean_over_ranks, world_size
from lit_align.types import PromptBatch

REWARD_MODEL = RewardSpec("lit_align.rewards.RewardModelScorer", kwargs={"path": "runs/rm/hf_model"})


class PPO(WithReference, LightningModule):
    """PPO for RLHF (Ziegler et al., 2019, arXiv:1909.08593; Ouyang et al., 2022, arXiv:2203.02155).

    Each training step: sample completions -> score them (a reward model by default) -> per-token rewards
    ``-kl_coef (log pi - log ref)`` plus the score at the last token -> GAE advantages and returns (advantages
    whitened) -> ``ppo_epochs`` passes of shuffled minibatch updates of the clipped policy loss plus
    ``vf_coef`` times the clipped value loss. The value is a head on the policy, or a separate model with its own
    head when ``value_model`` is set. ``kl_coef`` is fixed, or adapted toward ``target_kl`` (nats per completion).
    Completions whose score is unknown (None) are left out of the update.
    """

    def __init__(
        self,
        policy: ModelSpec = ModelSpec(),  # noqa: B008 (frozen dataclass)
        value_model: ModelSpec | None = None,
        rewards: list[RewardSpec] = [REWARD_MODEL],  # noqa: B006 (read only)
        on_reward_error: OnRewardError = "raise",
        no_signal_patience: NonNegativeInt = 20,
        completions_per_prompt: PositiveInt = 1,
        sampling: SamplingConfig = SamplingConfig(),  # noqa: B008
        eval_sampling: SamplingConfig = SamplingConfig(temperature=0.0),  # noqa: B008
        rollout: RolloutSpec = RolloutSpec(),  # noqa: B008
        reference: ReferenceSpec | ReferenceKind = "auto",
        center_scores: bool = False,
        prm_rewards: StepRewards = "sequence",
        kl_coef: NonNegativeFloat = 0.05,
        target_kl: PositiveFloat | None = None,
        kl_horizon: PositiveInt = 10_000,
        gamma: ClosedUnitInterval = 1.0,
        gae_lambda: ClosedUnitInterval = 0.95,
        epsilon: PositiveFloat = 0.2,
        value_clip: PositiveFloat = 0.2,
        vf_coef: PositiveFloat = 0.1,
        ppo_epochs: PositiveInt = 4,
        mini_batch_size: PositiveInt | None = None,
        whiten_advantages: bool = True,
        max_grad_norm: PositiveFloat | None = 1.0,
        log_samples_every_n_steps: NonNegativeInt = 50,
        num_samples_to_log: NonNegativeInt = 4,
        optimizer: OptimizerCallable = torch.optim.AdamW,
        lr_scheduler: LRSchedulerCallable | None = None,
        samples_per_prompt: PositiveInt | None = None,
        lam: ClosedUnitInterval | None = None,
    ) -> None:
        """Configure the objective.

        Args:
            policy: The model to train and how (full, LoRA, QLoRA); the reference starts as this model.
            value_model: A separate critic backbone (a head is added); None puts the value head on the policy.
            rewards: Reward functions and weights; by default the reward model written by ``recipes/rm.yaml``.
            on_reward_error: ``raise`` stops at a reward that raises; ``none`` scores that sample None and counts it.
            no_signal_patience: Stop the run (one line, exit 2) after this many training batches in a row without
                learning signal: no usable reward, or the same reward for every completion of every prompt. The
                first such batch warns; 0 never stops.
            completions_per_prompt: Completions sampled per prompt.
            sampling: Temperature, top-p, max new tokens and truncation masking for training rollouts.
            eval_sampling: Sampling for validation (greedy by default).
            rollout: The engine that samples completions (transformers ``generate`` on the policy, a bf16
                copy of it, vLLM) and its precision; see :class:`~lit_align.rollout.RolloutSpec`.
            reference: Where reference log-probs come from (:class:`~lit_align.roles.reference.ReferenceSpec`).
            center_scores: Subtract from each score the mean score of its prompt's completions before the KL shaping
                (a Bradley-Terry reward is only defined up to a per-prompt constant); needs
                ``completions_per_prompt`` > 1.
            prm_rewards: With a :class:`~lit_align.rewards.prm.ProcessRewardScorer` among ``rewards``: ``sequence``
                puts its aggregated score on the last token, as any reward; ``steps`` puts each step's score on the
                token that ends the step (Math-Shepherd's step-by-step PPO; more steps collect more), ``deltas``
                each step's change of score (the return telescopes to the last step's score); see
                :mod:`lit_align.ops.step_rewards`.
            kl_coef: Weight of the per-token KL penalty folded into the rewards (initial value when adaptive).
            target_kl: Adapt ``kl_coef`` toward this KL per completion; None keeps it fixed.
            kl_horizon: Horizon of the adaptive controller, in completions.
            gamma: Discount factor of GAE.
            gae_lambda: Lambda of GAE.
            epsilon: Clip range of the policy ratio.
            value_clip: Clip range of the value update.
            vf_coef: Weight of the value loss.
            ppo_epochs: Passes over each rollout.
            mini_batch_size: Completions per optimizer step; None uses the whole rollout.
            whiten_advantages: Normalise advantages to zero mean and unit variance over the rollout's tokens.
            max_grad_norm: Clip the gradient norm before each step; None disables it.
            log_samples_every_n_steps: Write sample prompts, completions and rewards to ``samples.jsonl`` this often.
            num_samples_to_log: How many samples each time.
            optimizer: Optimizer class and arguments (policy, value head and value model together).
            lr_scheduler: Optional scheduler, stepped after every optimizer step.
            samples_per_prompt: Deprecated name of ``completions_per_prompt``.
            lam: Deprecated name of ``gae_lambda``.

        """
        check_args(PPO.__init__, locals(), "PPO")
        super().__init__()
        completions_per_prompt = renamed(
            completions_per_prompt,
            samples_per_prompt,
            default=1,
            old="samples_per_prompt",
            new="completions_per_prompt",
            owner="PPO",
        )
        gae_lambda = renamed(gae_lambda, lam, default=0.95, old="lam", new="gae_lambda", owner="PPO")
        if center_scores and completions_per_prompt < 2:
            raise LitAlignError("model.init_args.center_scores: needs completions_per_prompt > 1 (a mean per prompt)")
        self.save_hyperparameters(ignore=["optimizer", "lr_scheduler", "samples_per_prompt", "lam"])
        self.hparams.update(completions_per_prompt=completions_per_prompt, gae_lambda=gae_lambda)
        self.automatic_optimization = False
        self.policy_spec, self.value_spec = policy, value_model
        self.optimizer, self.lr_scheduler = optimizer, lr_scheduler
        self.sampling, self.eval_sampling, self.rollout_spec = (
            sampling,
            eval_sampling,
            rollout,
        )  # hparams holds them as plain dicts
        self.reference = Reference(reference, finetune=policy.finetune, fixed_rows=False)
        self.policy: torch.nn.Module | None = None
        self.sampler: Sampler | None = None  # built in configure_model, so a bad reward is a one-line error
        self.value_backbone: torch.nn.Module | None = None
        self.value_head: ValueHead | None = None
        self.prm_index: int | None = None  # which reward gives per-step rewards (prm_rewards steps / deltas)
        self.kl_coef = kl_coef

    def configure_model(self) -> None:
        """Build policy, reference (copy or adapter-disabled), value head and the optional value model."""
        if self.policy is not None:
            return
        device = role_device(self)
        rewards = RewardSet(self.hparams.rewards, self.hparams.on_reward_error, key="model.init_args.rewards")
        self.policy = load_policy(self.policy_spec, device=device)
        self.reference.build(self.policy, device)
        self.sampler = Sampler.for_policy(
            self.policy, self.policy_spec, rewards, self.hparams.no_signal_patience, self.rollout_spec
        )
        if self.hparams.prm_rewards != "sequence":
            self.prm_index = process_reward_index(rewards, "model.init_args.prm_rewards")
        if self.value_spec is not None:
            self.value_backbone = load_policy(self.value_spec, device=device)
        critic = self.value_backbone or self.policy
        self.value_head = ValueHead(critic.config.hidden_size)

    def _scores(self, rollout: Rollout, with_entropy: bool = False) -> tuple[torch.Tensor, torch.Tensor, Any]:
        """Token log-probs (at the sampling temperature) and values of a rollout, shapes (N, R) and (N, R)."""
        t = self.sampling.temperature
        if self.value_backbone is None:
            out = completion_logps(
                self.policy, rollout, with_entropy=with_entropy, value_head=self.value_head, temperature=t
            )
            return out.token_logps, out.values, out.entropy
        out = completion_logps(self.policy, rollout, with_entropy=with_entropy, temperature=t)
        values = completion_logps(self.value_backbone, rollout, value_head=self.value_head).values
        return out.token_logps, values, out.entropy

    def training_step(self, batch: PromptBatch, batch_idx: int) -> None:
        """Rollout -> scores -> KL-shaped rewards -> GAE -> ``ppo_epochs`` passes of minibatch updates."""
        hp, timings = self.hparams, {}
        with timed(timings, "timing/generation"):
            samples = self.sampler.sample(
                self.policy, batch, hp.completions_per_prompt, self.sampling, version=self.global_step
            )
        with timed(timings, "timing/scoring"):
            scores = self.sampler.score(samples, training=True)
            score, dense = self._step_rewards(samples, scores)  # (N,), (N, R) or None
            known = ~score.isnan()  # unknown scores are left out of the update
            if hp.center_scores:
                score = group_advantages(score, hp.completions_per_prompt, "none")  # score - its prompt's mean
            rollout = samples.rollout
            rollout = rollout._replace(completion_mask=rollout.completion_mask & known.unsqueeze(-1))
            with without_autograd(self):
                old_logps, old_values = (t.clone() for t in self._scores(rollout)[:2])
            with self.reference.use() as ref:
                ref_logps = completion_logps(ref, rollout, temperature=self.sampling.temperature).token_logps.clone()
            mask = rollout.completion_mask
            token_rewards, kl = kl_shaped_rewards(score, old_logps, ref_logps, mask, kl_coef=self.kl_coef)
            if dense is not None:
                token_rewards = token_rewards + dense.to(token_rewards) * mask
            advantages, returns = gae(token_rewards, old_values, mask, gamma=hp.gamma, lam=hp.gae_lambda)
            if hp.whiten_advantages:
                advantages = whiten(advantages, mask)
        with timed(timings, "timing/update"):
            stats = self._update(rollout, old_logps, old_values, advantages, returns)
        sequence_kl = kl.sum(-1)[known].mean() if known.any() else kl.new_zeros(())
        kl_per_token = kl[known].sum() / mask[known].sum().clamp(min=1)
        stats |= {"kl": sequence_kl, "kl_per_token": kl_per_token, "kl_coef": torch.tensor(self.kl_coef)}
        stats["value/explained_variance"] = explained_variance(old_values, returns, mask)
        if hp.target_kl is not None:  # every rank applies the same update, from the KL of all ranks
            self.kl_coef = adaptive_kl_coef(
                self.kl_coef,
                mean_over_ranks(sequence_kl).item(),
                target=hp.target_kl,
                horizon=hp.kl_horizon,
                n_steps=len(score) * world_size(),
            )
        stats |= {**as_tensors(timings), **self.sampler.signal_metrics()}
        log_rollout(self, "train", rollout, scores, hp.completions_per_prompt, stats)
        if hp.log_samples_every_n_steps and batch_idx % hp.log_samples_every_n_steps == 0:
            write_samples(self, samples.batch["prompts"], samples.completions, scores, hp.num_samples_to_log)

    def _step_rewards(self, samples: Any, scores: Any) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The score for the last token and, with ``prm_rewards`` steps / deltas, the PRM's share on step ends.

        Returns ``(score, dense)``: the total score without the PRM's weighted aggregate, and that PRM's weighted
        step rewards, shape (N, R). A batch the PRM scored one completion at a time (after an error) keeps it
        whole on the last token. Shapes: (N,), (N, R) or None.
        """
        score = scores.total.to(self.device)
        if self.prm_index is None:
            return score, None
        rewards, i = self.sampler.rewards, self.prm_index
        rollout = samples.rollout
        ids = [t[m].tolist() for t, m in zip(rollout.completion_ids, rollout.completion_mask, strict=True)]
        shape = tuple(rollout.completion_ids.shape)
        dense = dense_step_rewards(rewards.functions[i], self.sampler.tokenizer, samples.completions, ids, shape,
                                   self.hparams.prm_rewards)  # fmt: skip
        if dense is None:
            return score, None
        aggregate = scores.per_reward[rewards.names[i]].to(self.device).nan_to_num(0.0)
        return score - rewards.weights[i] * aggregate, rewards.weights[i] * dense

    def _update(self, rollout: Rollout, old_logps, old_values, advantages, returns) -> dict[str, torch.Tensor]:  # noqa: ANN001
        hp = self.hparams
        n = rollout.input_ids.shape[0]
        size = hp.mini_batch_size or n
        history: dict[str, list[torch.Tensor]] = {}
        for _ in range(hp.ppo_epochs):
            order = torch.randperm(n, device=self.device)
            for start in range(0, n, size):
                rows = order[start : start + size]
                part = Rollout(*(t[rows] for t in rollout))
                logps, values, entropy = self._scores(part, with_entropy=True)
                mask = part.completion_mask
                policy = clipped_policy_loss(
                    logps, old_logps[rows], advantages[rows], mask, epsilon=hp.epsilon, normalization="token"
                )
                value = clipped_value_loss(values, old_values[rows], returns[rows], mask, clip=hp.value_clip)
                loss = policy.loss + hp.vf_coef * value.loss
                manual_step(self, loss, hp.max_grad_norm)
                step = {
                    "loss": loss.detach(),
                    "loss/policy": policy.loss.detach(),
                    "loss/value": value.loss.detach(),
                    "value/clip_frac": value.clip_frac,
                    "clip_ratio/region_mean": policy.low_clip + policy.high_clip,
                    "entropy": masked_mean(entropy, mask),
                }
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
        """One optimizer over the policy, the value head and the value model (never the frozen reference)."""
        return configure_optimizers(self, self.optimizer, self.lr_scheduler)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Keep the reference's state (cache, refreshes, refreshed weights) and the adaptive KL coefficient."""
        super().on_save_checkpoint(checkpoint)
        checkpoint["kl_coef"] = self.kl_coef

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Restore the reference's state and the adaptive KL coefficient."""
        super().on_load_checkpoint(checkpoint)
        self.kl_coef = checkpoint.get("kl_coef", self.kl_coef)
