"""Online and iterative DPO: sample completions, rank them with a reward, take DPO steps on the best/worst pairs."""

from __future__ import annotations

from typing import Any

import torch
from lightning import LightningModule
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable

from lit_align.domains import (
    AtLeastTwo,
    FlipRate,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    check_args,
)
from lit_align.errors import LitAlignError
from lit_align.losses.specs import LossType, preference_loss_spec
from lit_align.metrics import log_metrics, preference_metrics, sequence_kl, token_kl
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
from lit_align.ops.pairs import Pairing, select_pairs
from lit_align.rewards.combine import OnRewardError, RewardSet, RewardSpec
from lit_align.roles.models import ModelSpec, load_policy
from lit_align.roles.reference import Reference, ReferenceKind, ReferenceSpec, WithReference
from lit_align.rollout import Rollout, RolloutSpec, SamplingConfig, completion_logps
from lit_align.runtime.distributed import token_normalizer
from lit_align.types import PromptBatch

ARITHMETIC = RewardSpec("lit_align.rewards.arithmetic_answer")


class OnlineDPO(WithReference, LightningModule):
    """Online DPO (Guo et al., 2024; arXiv:2402.04792) and iterative DPO (Xu et al., 2023; arXiv:2312.16682).

    Each step samples ``completions_per_prompt`` completions per prompt from the current policy, scores them with the
    rewards (functions or a reward model), pairs the best with the worst completion of each prompt (or, with
    ``pairing``, the best with every other, or every ordered pair; prompts whose samples all score alike give none)
    and takes one step of the preference loss on those pairs.
    With ``regenerate_every: N`` the pairs are generated every N steps from that step's prompts and the steps in
    between train on them again (iterative, off-policy rounds); 1 is fully online.
    """

    def __init__(
        self,
        policy: ModelSpec = ModelSpec(),  # noqa: B008 (frozen dataclass)
        rewards: list[RewardSpec] = [ARITHMETIC],  # noqa: B006 (read only)
        on_reward_error: OnRewardError = "raise",
        no_signal_patience: NonNegativeInt = 20,
        completions_per_prompt: AtLeastTwo = 4,
        pairing: Pairing = "best_worst",
        min_margin: NonNegativeFloat = 0.0,
        sampling: SamplingConfig = SamplingConfig(),  # noqa: B008
        eval_sampling: SamplingConfig = SamplingConfig(temperature=0.0),  # noqa: B008
        rollout: RolloutSpec = RolloutSpec(),  # noqa: B008
        loss_type: LossType = "sigmoid",
        beta: PositiveFloat | None = None,
        label_smoothing: FlipRate | None = None,
        reference: ReferenceSpec | ReferenceKind = "auto",
        regenerate_every: PositiveInt = 1,
        max_grad_norm: PositiveFloat | None = 1.0,
        log_samples_every_n_steps: NonNegativeInt = 50,
        num_samples_to_log: NonNegativeInt = 4,
        optimizer: OptimizerCallable = torch.optim.AdamW,
        lr_scheduler: LRSchedulerCallable | None = None,
        num_samples: AtLeastTwo | None = None,
    ) -> None:
        """Configure the objective.

        Args:
            policy: The model to train and how (full, LoRA, QLoRA); the reference starts as this model.
            rewards: Reward functions (or a reward model) that rank the samples.
            on_reward_error: ``raise`` stops at a reward that raises; ``none`` scores that sample None and counts it.
            no_signal_patience: Stop the run (one line, exit 2) after this many training batches in a row without
                learning signal: no usable reward, or the same reward for every completion of every prompt. The
                first such batch warns; 0 never stops.
            completions_per_prompt: Completions sampled per prompt (at least 2).
            pairing: Which pairs of each prompt's ranking to train on: ``best_worst`` (one per prompt), ``best_rest``
                or ``all`` (see :func:`~lit_align.ops.pairs.select_pairs`, shared with ``lit-align generate``).
            min_margin: A pair needs the chosen completion's reward higher by more than this.
            sampling: Temperature, top-p, max new tokens and truncation masking for training rollouts.
            eval_sampling: Sampling for validation (greedy by default).
            rollout: The engine that samples completions (transformers ``generate`` on the policy, a bf16
                copy of it, vLLM) and its precision; see :class:`~lit_align.rollout.RolloutSpec`.
            loss_type: A preference loss of :data:`lit_align.losses.specs.PREFERENCE_LOSSES` (as in :class:`DPO`).
            beta: The loss's beta; None keeps the spec's default.
            label_smoothing: Preference-flip rate for ``sigmoid``, ``rpo`` and ``robust``; None keeps the default.
            reference: Where reference log-probs come from (:class:`~lit_align.roles.reference.ReferenceSpec`).
            regenerate_every: Generate new pairs every this many steps (1 = online DPO).
            max_grad_norm: Clip the gradient norm before each step; None disables it.
            log_samples_every_n_steps: Write sample prompts, completions and rewards to ``samples.jsonl`` this often.
            num_samples_to_log: How many samples each time.
            optimizer: Optimizer class and arguments.
            lr_scheduler: Optional scheduler, stepped after every optimizer step.
            num_samples: Deprecated name of ``completions_per_prompt``.

        """
        check_args(OnlineDPO.__init__, locals(), "OnlineDPO")
        super().__init__()
        completions_per_prompt = renamed(
            completions_per_prompt,
            num_samples,
            default=4,
            old="num_samples",
            new="completions_per_prompt",
            owner="OnlineDPO",
        )
        if completions_per_prompt < 2:
            raise LitAlignError(
                "model.init_args.completions_per_prompt: at least 2 are needed to form pairs, "
                f"got {completions_per_prompt}"
            )
        self.save_hyperparameters(ignore=["optimizer", "lr_scheduler", "num_samples"])
        self.automatic_optimization = False
        self.policy_spec, self.optimizer, self.lr_scheduler = policy, optimizer, lr_scheduler
        self.sampling, self.eval_sampling, self.rollout_spec = (
            sampling,
            eval_sampling,
            rollout,
        )  # hparams holds them as plain dicts
        check_group_sampling(sampling, completions_per_prompt, "OnlineDPO")
        self.loss = preference_loss_spec(loss_type, beta=beta, label_smoothing=label_smoothing)
        self.reference = Reference(
            reference, finetune=policy.finetune, fixed_rows=False, needed=self.loss.needs_reference
        )
        self.policy: torch.nn.Module | None = None
        self.sampler: Sampler | None = None  # built in configure_model, so a bad reward is a one-line error
        self.pairs: Rollout | None = None

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

    def training_step(self, batch: PromptBatch, batch_idx: int) -> None:
        """(Every ``regenerate_every`` steps) sample -> rank -> pair; then one DPO step on the pairs."""
        hp, timings, extra = self.hparams, {}, {}
        if batch_idx % hp.regenerate_every == 0:  # the same decision on every rank (generation is collective)
            with timed(timings, "timing/generation"):
                samples = self.sampler.sample(
                    self.policy, batch, hp.completions_per_prompt, self.sampling, version=self.global_step
                )
            with timed(timings, "timing/scoring"):
                scores = self.sampler.score(samples, training=True)
                rollout, total = samples.rollout, scores.total.clone()
                total[~rollout.completion_mask.any(-1).cpu()] = float("nan")  # masked (truncated): no pair
                chosen, rejected = select_pairs(total, hp.completions_per_prompt, hp.pairing, hp.min_margin)
                rows = torch.cat([chosen, rejected]).to(rollout.input_ids.device)
                self.pairs = Rollout(*(t[rows] for t in rollout)) if len(chosen) else None
            extra["pairs_per_prompt"] = torch.tensor(len(chosen) / len(batch["prompts"]))
            extra |= self.sampler.signal_metrics()
            log_rollout(self, "train", rollout, scores, hp.completions_per_prompt, extra)
            if hp.log_samples_every_n_steps and batch_idx % hp.log_samples_every_n_steps == 0:
                write_samples(self, samples.batch["prompts"], samples.completions, scores, hp.num_samples_to_log)
        if self.pairs is None:
            # Every prompt's samples scored alike: nothing to learn, but under DDP every rank must still take part
            # in the gradient all-reduce, so step on a zero loss.
            zero = sum(p.sum() for p in self.parameters() if p.requires_grad) * 0.0
            manual_step(self, zero, hp.max_grad_norm)
            return
        with timed(timings, "timing/update"):
            metrics = self._dpo_step(self.pairs)
        log_metrics(self, {**metrics, **as_tensors(timings)}, "train", batch_size=len(self.pairs.input_ids) // 2)

    def _dpo_step(self, pairs: Rollout) -> dict[str, torch.Tensor]:
        mask = pairs.completion_mask
        logps = (completion_logps(self.policy, pairs).token_logps * mask).sum(-1)  # (2M,)
        lengths = mask.sum(-1)  # (2M,)
        chosen_lengths, rejected_lengths = lengths.chunk(2)
        refs: tuple = ()
        if self.loss.needs_reference:
            with self.reference.use() as ref:
                ref_logps = (completion_logps(ref, pairs).token_logps * mask).sum(-1)
            refs = ref_logps.clone().chunk(2)
        normalizer = token_normalizer(chosen_lengths.sum())
        out = self.loss(*logps.chunk(2), chosen_lengths, rejected_lengths, *refs, nll_normalizer=normalizer)
        manual_step(self, out.loss, self.hparams.max_grad_norm)
        pc, pr = logps.chunk(2)
        metrics = preference_metrics(out.chosen_rewards, out.rejected_rewards, pc, pr, chosen_lengths, rejected_lengths)
        metrics["loss"] = out.loss.detach()
        if refs:
            metrics["kl"] = sequence_kl(logps, torch.cat(refs))
            metrics["kl_per_token"] = token_kl(logps, torch.cat(refs), lengths)
        return metrics

    def validation_step(self, batch: PromptBatch, batch_idx: int) -> None:
        """Greedy completions of held-out prompts: ``val/reward`` and the completion metrics."""
        validation_rollout(self, self.policy, self.sampler, batch, "val", self.eval_sampling)

    def test_step(self, batch: PromptBatch, batch_idx: int) -> None:
        """The same on the test split."""
        validation_rollout(self, self.policy, self.sampler, batch, "test", self.eval_sampling)

    def configure_optimizers(self) -> Any:
        """Optimizer over trainable parameters (never the frozen reference)."""
        return configure_optimizers(self, self.optimizer, self.lr_scheduler)
