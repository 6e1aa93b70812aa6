"""ProcessRewardModel: a score for every step of a solution, trained on step labels (PRM; Lightman et al., 2023)."""

from __future__ import annotations

from typing import Any, Literal

import torch
from lightning import LightningModule
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable

from lit_align.domains import NonNegativeFloat, NonNegativeInt, PositiveFloat, check_args
from lit_align.errors import ConfigError
from lit_align.losses.process_reward import likelihood_step_logits, step_classification_loss
from lit_align.metrics import log_metrics, process_reward_metrics
from lit_align.objectives.optim import configure_optimizers, role_device
from lit_align.ops.logprobs import masked_mean, shift_labels
from lit_align.rewards.prm import LIKELIHOOD_KEY, REWARD_TOKENS_KEY
from lit_align.roles.models import ModelSpec, load_policy
from lit_align.roles.scoring import likelihood_logits, position_logps, selected_logits
from lit_align.roles.tokenizer import load_tokenizer
from lit_align.types import IGNORE_INDEX, StepwiseBatch

ScoreHead = Literal["reward_tokens", "classifier", "likelihood"]


class ProcessRewardModel(LightningModule):
    """Score each step of a solution: P(the solution is still right after this step), trained on step labels.

    The score of a step is read at its last token (where :class:`~lit_align.data.StepwiseDataModule` puts its
    label), from one of two heads:

    - ``reward_tokens`` (default): the language model's own head, score = logit(good) - logit(bad) of two tokens
      (``+`` and ``-`` by default, as Math-Shepherd's PRM reads them). Nothing new starts random, and the model keeps
      its next-token knowledge; the saved model is the causal LM with the tokens in its config
      (``prm_reward_tokens``).
    - ``classifier``: a new scalar head on every token (``AutoModelForTokenClassification``, one label), as TRL's
      ``PRMTrainer`` trains; the saved model is a token classifier.
    - ``likelihood``: no head at all: the step score is ``likelihood_scale`` times the lowest log-probability the
      model gives any token of the solution so far (separators excluded), plus ``likelihood_offset``
      (:func:`~lit_align.losses.process_reward.likelihood_step_logits`). A model that computes the steps already
      gives a wrong result a probability near 0, so training starts from a working checker and sharpens it:
      lower likelihood for wrong steps, higher for right ones. It cannot flag an error the model itself finds
      likely (train it on labelled samples of the generator to teach it those). The saved model is the causal LM
      with the scale and offset in its config (``prm_likelihood``).

    The loss is :func:`~lit_align.losses.process_reward.step_classification_loss` (hard or soft labels). Logs
    ``{stage}/loss``, ``step_accuracy``, ``first_error_accuracy``, ``solution_accuracy``, ``scores/right`` and
    ``scores/wrong`` (:func:`~lit_align.metrics.process_reward_metrics`).
    """

    def __init__(
        self,
        policy: ModelSpec = ModelSpec(),  # noqa: B008 (frozen dataclass)
        score_head: ScoreHead = "reward_tokens",
        reward_tokens: tuple[str, str] = ("+", "-"),
        expand_layers: NonNegativeInt = 0,
        sft_weight: NonNegativeFloat = 0.0,
        likelihood_scale: PositiveFloat = 0.5,
        likelihood_offset: float = 2.0,
        optimizer: OptimizerCallable = torch.optim.AdamW,
        lr_scheduler: LRSchedulerCallable | None = None,
    ) -> None:
        """Configure the objective.

        Args:
            policy: The backbone to train and how (full, LoRA, QLoRA).
            score_head: ``reward_tokens`` (two tokens of the LM head), ``classifier`` (a new per-token head) or
                ``likelihood`` (the model's own likelihood of the steps; no new weights).
            reward_tokens: ``reward_tokens`` head: the token meaning "right so far" and the one meaning "wrong";
                each must be one token of the tokenizer.
            expand_layers: New identity-initialised decoder blocks stacked on the backbone (as ``RewardModel``'s):
                more depth to compare a step's written result with the one the model computes; kept on export.
            sft_weight: ``reward_tokens`` and ``likelihood`` heads: weight of a language-modelling loss (mean token
                NLL) on the right steps that open each solution (the batch's ``labels``), so the model keeps
                computing, and with the ``likelihood`` head learns to compute better, the steps it judges (as
                ``RewardModel``'s ``sft_weight``); logged as ``nll``. 0 disables it.
            likelihood_scale: ``likelihood`` head: logit per nat of the lowest token log-prob.
            likelihood_offset: ``likelihood`` head: the logit of a solution whose every token had probability 1;
                with the defaults a step whose least likely token has probability p scores
                sigmoid(2 + 0.5 ln p): 0.88 at p = 1, 0.5 at p = e^-4 (0.018).
            optimizer: Optimizer class and arguments.
            lr_scheduler: Optional scheduler, stepped after every optimizer step.

        """
        check_args(ProcessRewardModel.__init__, locals(), "ProcessRewardModel")
        if score_head not in ("reward_tokens", "classifier", "likelihood"):
            raise ConfigError(
                "model.init_args.score_head", f"must be reward_tokens, classifier or likelihood, got {score_head!r}"
            )
        if sft_weight and score_head == "classifier":
            raise ConfigError("model.init_args.sft_weight", "needs a language-model head (reward_tokens or likelihood)")
        super().__init__()
        self.save_hyperparameters(ignore=["optimizer", "lr_scheduler"])
        self.policy_spec, self.optimizer, self.lr_scheduler = policy, optimizer, lr_scheduler
        self.head = "token_reward" if score_head == "classifier" else "causal_lm"  # how SaveHuggingFace saves it
        self.token_ids: list[int] = []
        self.policy: torch.nn.Module | None = None

    def configure_model(self) -> None:
        """Build the backbone (and, for ``reward_tokens``, find the two tokens); idempotent."""
        if self.policy is not None:
            return
        if self.hparams.score_head == "reward_tokens":
            spec = self.policy_spec
            tokenizer = load_tokenizer(spec.name_or_path, trust_remote_code=spec.trust_remote_code)
            self.token_ids = reward_token_ids(tokenizer, self.hparams.reward_tokens)
        self.policy = load_policy(
            self.policy_spec, device=role_device(self), head=self.head, expand_layers=self.hparams.expand_layers
        )
        base = getattr(self.policy, "get_base_model", lambda: self.policy)()
        if self.token_ids:
            setattr(base.config, REWARD_TOKENS_KEY, list(self.hparams.reward_tokens))
        if self.hparams.score_head == "likelihood":
            setattr(base.config, LIKELIHOOD_KEY, {"scale": self.hparams.likelihood_scale,
                                                  "offset": self.hparams.likelihood_offset})  # fmt: skip

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, counted: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The step score (a logit) at every position. Shapes: (B, T) -> (B, T).

        ``counted`` (bool, (B, T)): the solution tokens whose likelihood counts, needed by the ``likelihood`` head
        (the batch's ``step_token_mask``); the other heads ignore it.
        """
        if self.hparams.score_head == "likelihood":
            if counted is None:
                raise ValueError("the likelihood head needs `counted`: the solution tokens, separators excluded")
            hp = self.hparams
            return likelihood_logits(self.policy, input_ids, attention_mask, counted, hp.likelihood_scale,
                                     hp.likelihood_offset)  # fmt: skip
        if self.token_ids:
            pair, _ = selected_logits(self.policy, input_ids, attention_mask, self.token_ids)  # (B, T, 2)
            return pair[..., 0] - pair[..., 1]
        return self.policy(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).logits.squeeze(-1)

    def _shared_step(self, batch: StepwiseBatch, stage: str) -> torch.Tensor:
        hp, nll = self.hparams, None
        if hp.sft_weight and hp.score_head == "likelihood":  # one forward: counted tokens and right steps' tokens
            counted, right = batch["step_token_mask"], batch["labels"] != IGNORE_INDEX
            token = position_logps(self.policy, batch["input_ids"], batch["attention_mask"], counted | right)
            logits = likelihood_step_logits(token, counted, hp.likelihood_scale, hp.likelihood_offset)
            nll = -masked_mean(token, right)
        elif hp.sft_weight:  # one forward: the two reward logits everywhere, the LM log-probs of right steps
            targets, mask = shift_labels(batch["labels"])
            pair, logps = selected_logits(self.policy, batch["input_ids"], batch["attention_mask"], self.token_ids,
                                          targets, mask)  # fmt: skip
            logits = (pair[..., 0] - pair[..., 1]).float()  # (B, T)
            nll = -masked_mean(logps, mask)
        else:
            logits = self(batch["input_ids"], batch["attention_mask"], batch["step_token_mask"]).float()  # (B, T)
        loss = step_classification_loss(logits, batch["step_labels"])
        metrics = {"loss": loss, **process_reward_metrics(logits, batch["step_labels"])}
        if nll is not None:
            loss = loss + self.hparams.sft_weight * nll
            metrics |= {"loss": loss, "nll": nll.detach()}
        log_metrics(self, metrics, stage, batch_size=len(logits))
        return loss

    def training_step(self, batch: StepwiseBatch, batch_idx: int) -> torch.Tensor:
        """One optimisation step on a batch of step-labelled solutions."""
        return self._shared_step(batch, "train")

    def validation_step(self, batch: StepwiseBatch, batch_idx: int) -> None:
        """Log held-out step, first-error and solution accuracy."""
        self._shared_step(batch, "val")

    def test_step(self, batch: StepwiseBatch, batch_idx: int) -> None:
        """Log the same metrics on the test split (``lit-align test``)."""
        self._shared_step(batch, "test")

    def configure_optimizers(self) -> Any:
        """Optimizer over trainable parameters."""
        return configure_optimizers(self, self.optimizer, self.lr_scheduler)


def reward_token_ids(tokenizer: Any, tokens: tuple[str, str] | list[str]) -> list[int]:
    """The ids of the two reward tokens, each required to be a single token of ``tokenizer``.

    Raises:
        ConfigError: A token that is not exactly one token (or both the same).

    """
    ids = []
    for text in tokens:
        found = tokenizer(text, add_special_tokens=False).input_ids
        if len(found) != 1:
            raise ConfigError("model.init_args.reward_tokens", f"{text!r} is {len(found)} tokens, not one")
        ids.append(found[0])
    if len(ids) != 2 or ids[0] == ids[1]:
        raise ConfigError("model.init_args.reward_tokens", f"needs two different tokens, got {list(tokens)}")
    return ids
