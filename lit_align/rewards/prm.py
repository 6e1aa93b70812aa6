"""Score solutions step by step with a process reward model saved by ``ProcessRewardModel`` (``hf_model``).

One forward pass per batch reads a score at the end of every step (the steps are the completion split on the
step separator, tokenized as :class:`~lit_align.data.StepwiseDataModule` tokenized them for training), and the
step scores are aggregated into one score per solution. The aggregate matters:

- ``min`` (default): the weakest step; a solution is as good as its worst step, whatever its length.
- ``last``: the last step's score; a PRM trained with "wrong from the first error on" labels already estimates
  there whether the whole solution is still right.
- ``prod``: the product of the step probabilities, as P(every step right) if the steps were independent; every
  extra step multiplies in a factor below 1, so it favours short solutions.
- ``mean``: the mean step probability; one wrong step is diluted by the right ones, so it favours long solutions
  with a single error over short ones.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Literal

import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForTokenClassification

from lit_align.data.collate import pad
from lit_align.data.stepwise import prompt_ids, step_token_flags, tokenize_steps
from lit_align.data.validation import Messages
from lit_align.errors import ConfigError
from lit_align.ops.step_rewards import step_token_rewards
from lit_align.rewards.judges import text_of
from lit_align.roles.models import load_pretrained
from lit_align.roles.paths import resolve_model_path
from lit_align.roles.scoring import likelihood_logits, selected_logits
from lit_align.roles.tokenizer import load_tokenizer

Aggregate = Literal["min", "last", "prod", "mean"]
REWARD_TOKENS_KEY = "prm_reward_tokens"
"""Config attribute in which ``ProcessRewardModel`` records the reward tokens of a saved ``reward_tokens`` PRM."""
LIKELIHOOD_KEY = "prm_likelihood"
"""Config attribute holding a saved ``likelihood`` PRM's ``{"scale": ..., "offset": ...}``."""


def is_process_reward_model(path: str) -> bool:
    """True when ``path`` is a local model folder saved by ``ProcessRewardModel`` (or any token classifier)."""
    config = Path(path) / "config.json"
    if not config.is_file():
        return False
    saved = json.loads(config.read_text())
    return (
        REWARD_TOKENS_KEY in saved
        or LIKELIHOOD_KEY in saved
        or any(a.endswith("ForTokenClassification") for a in saved.get("architectures", []))
    )


def aggregate_steps(step_probs: list[float], how: Aggregate) -> float:
    """One solution score from its step probabilities (see the module docstring for each one's bias)."""
    if how == "min":
        return min(step_probs)
    if how == "last":
        return step_probs[-1]
    if how == "prod":
        return math.prod(step_probs)
    return sum(step_probs) / len(step_probs)


class ProcessRewardScorer:
    """Callable ``(prompts, completions) -> scores``: each completion's steps scored by a PRM, then aggregated.

    Args:
        path: Folder written by ``ProcessRewardModel`` training (``hf_model``): a causal LM whose config names its
            two reward tokens, or a token classifier with one label.
        aggregate: ``min``, ``last``, ``prod`` or ``mean`` of the step probabilities (module docstring).
        step_separator: What separates (and ends) steps, as in the PRM's training data.
        batch_size: Solutions scored per forward pass.
        device: Where to run the model.
        trust_remote_code: Allow model code from the hub.

    """

    def __init__(
        self,
        path: str,
        aggregate: Aggregate = "min",
        step_separator: str = "\n",
        batch_size: int = 64,
        device: str = "cpu",
        trust_remote_code: bool = False,
    ) -> None:
        """See the class docstring."""
        if aggregate not in ("min", "last", "prod", "mean"):
            raise ConfigError("ProcessRewardScorer.aggregate", f"must be min, last, prod or mean, got {aggregate!r}")
        if not step_separator:
            raise ConfigError("ProcessRewardScorer.step_separator", "is empty")
        location = resolve_model_path(path, "process reward model path")
        self.tokenizer = load_tokenizer(path, trust_remote_code=trust_remote_code, key="process reward model path")
        config = AutoConfig.from_pretrained(location, trust_remote_code=trust_remote_code)
        tokens = getattr(config, REWARD_TOKENS_KEY, None)
        self.likelihood: dict[str, float] | None = getattr(config, LIKELIHOOD_KEY, None)
        auto = AutoModelForCausalLM if tokens or self.likelihood else AutoModelForTokenClassification
        self.model = load_pretrained(auto, location, trust_remote_code=trust_remote_code).to(device).eval()
        self.token_ids = [self.tokenizer(t, add_special_tokens=False).input_ids[0] for t in tokens] if tokens else []
        self.aggregate, self.separator = aggregate, step_separator
        self.batch_size, self.device = batch_size, device
        self.last_step_scores: list[list[float]] = []

    def steps_of(self, completion: str | Messages) -> list[str]:
        """The non-empty steps of a completion's text."""
        return [s for s in text_of(completion).split(self.separator) if s.strip()]

    def step_end_chars(self, completion: str | Messages) -> list[int]:
        """Where each step of :meth:`steps_of` ends in the completion's text.

        The offset just past the step's separator (past the step itself for a last step without one).
        """
        text, ends, start = text_of(completion), [], 0
        for part in text.split(self.separator):
            start += len(part)
            if part.strip():
                ends.append(min(start + len(self.separator), len(text)))
            start += len(self.separator)
        return ends

    @torch.no_grad()
    def step_scores(self, prompts: list[str | Messages], completions: list[str | Messages]) -> list[list[float]]:
        """P(right so far) at the end of each step of each completion (an empty list for a completion without steps)."""
        out: list[list[float]] = []
        for start in range(0, len(prompts), self.batch_size):
            part = slice(start, start + self.batch_size)
            encoded = [tokenize_steps(self.tokenizer, p, self.steps_of(c), self.separator)
                       for p, c in zip(prompts[part], completions[part], strict=True)]  # fmt: skip
            batch = self.tokenizer.pad({"input_ids": [ids for ids, _ in encoded]}, return_tensors="pt",
                                       padding_side="right").to(self.device)  # fmt: skip
            if self.likelihood:
                flags = [step_token_flags(len(ids), len(prompt_ids(self.tokenizer, p)), ends)
                         for p, (ids, ends) in zip(prompts[part], encoded, strict=True)]  # fmt: skip
                counted = pad(flags, 0).bool().to(self.device)
                logits = likelihood_logits(self.model, batch["input_ids"], batch["attention_mask"], counted,
                                           self.likelihood["scale"], self.likelihood["offset"])  # fmt: skip
            elif self.token_ids:
                pair, _ = selected_logits(self.model, batch["input_ids"], batch["attention_mask"], self.token_ids)
                logits = pair[..., 0] - pair[..., 1]  # (B, T)
            else:
                logits = self.model(**batch).logits.squeeze(-1)  # (B, T)
            probs = logits.float().sigmoid()
            out += [probs[i, ends].tolist() for i, (_, ends) in enumerate(encoded)]
        return out

    def __call__(
        self, prompts: list[str | Messages], completions: list[str | Messages], **_: Any
    ) -> list[float | None]:
        """Each completion's aggregated step score; None for a completion with no step (counted as a failure).

        The step scores of the last call stay in ``last_step_scores``, for PPO's per-step rewards.
        """
        self.last_step_scores = self.step_scores(prompts, completions)
        return [aggregate_steps(s, self.aggregate) if s else None for s in self.last_step_scores]


def step_end_tokens(tokenizer: Any, ids: list[int], char_ends: list[int]) -> list[int]:
    """Index of the token in ``ids`` whose decoding reaches each character offset of ``char_ends``.

    ``ids`` are the sampled completion tokens and the offsets are in their decoded text (special tokens skipped);
    each offset's token is found by bisection on the length of decoded prefixes, so tokens that hold several
    characters, or a step end inside one, map to the token that completes it. Offsets past the text map to the
    last token.
    """

    def reached(t: int) -> int:
        return len(tokenizer.decode(ids[: t + 1], skip_special_tokens=True))

    tokens = []
    for end in char_ends:
        low, high = 0, len(ids) - 1
        while low < high:
            middle = (low + high) // 2
            if reached(middle) >= end:
                high = middle
            else:
                low = middle + 1
        tokens.append(low)
    return tokens


def dense_step_rewards(
    scorer: ProcessRewardScorer,
    tokenizer: Any,
    completions: list[str | Messages],
    completion_ids: list[list[int]],
    shape: tuple[int, int],
    mode: Literal["steps", "deltas"],
) -> torch.Tensor | None:
    """The scorer's last step scores of ``completions`` on their step-end tokens (:func:`step_token_rewards`).

    ``completion_ids`` are each completion's sampled tokens (decoded by ``tokenizer``, the policy's); returns None
    when the scorer's last call did not score exactly these completions (it raised and was retried one by one).
    Shape: (N, R)
    """
    if len(scorer.last_step_scores) != len(completions):
        return None
    tokens = [step_end_tokens(tokenizer, ids, scorer.step_end_chars(c)) if ids else []
              for c, ids in zip(completions, completion_ids, strict=True)]  # fmt: skip
    pairs = [(s, t) if len(s) == len(t) else ([], []) for s, t in zip(scorer.last_step_scores, tokens, strict=True)]
    return step_token_rewards([s for s, _ in pairs], [t for _, t in pairs], shape, mode)


def process_reward_index(rewards: Any, key: str) -> int:
    """Position of the one :class:`ProcessRewardScorer` in a :class:`~lit_align.rewards.combine.RewardSet`.

    Raises:
        ConfigError: there is none, or more than one.

    """
    found = [i for i, fn in enumerate(rewards.functions) if isinstance(fn, ProcessRewardScorer)]
    if len(found) != 1:
        raise ConfigError(key, f"per-step rewards need exactly one lit_align.rewards.prm.ProcessRewardScorer among "
                               f"the rewards, found {len(found)} (rewards: {rewards.names})")  # fmt: skip
    return found[0]
