"""Score (prompt, completion) pairs with a reward model saved by ``RewardModel`` (Hugging Face folder)."""

from __future__ import annotations

import torch
from transformers import AutoModelForSequenceClassification

from lit_align.data.templates import tokenize_prompt_completion
from lit_align.data.validation import Messages
from lit_align.roles.models import load_pretrained
from lit_align.roles.paths import resolve_model_path
from lit_align.roles.tokenizer import load_tokenizer


class RewardModelScorer:
    """Callable ``(prompts, completions) -> list[float]`` backed by a trained reward model.

    Args:
        path: Folder written by ``RewardModel`` training (``hf_model``), or any sequence-classification model.
        batch_size: Pairs scored per forward pass.
        device: Where to run the model.
        trust_remote_code: Allow model code from the hub.

    """

    def __init__(self, path: str, batch_size: int = 64, device: str = "cpu", trust_remote_code: bool = False):
        """See the class docstring."""
        self.tokenizer = load_tokenizer(path, trust_remote_code=trust_remote_code, key="reward model path")
        self.model = (
            load_pretrained(
                AutoModelForSequenceClassification,
                resolve_model_path(path, "reward model path"),
                trust_remote_code=trust_remote_code,
            )
            .to(device)
            .eval()
        )
        self.batch_size, self.device = batch_size, device

    @torch.no_grad()
    def __call__(self, prompts: list[str | Messages], completions: list[str | Messages], **_: object) -> list[float]:
        """Score each completion of its prompt; the same tokenization as training."""
        scores: list[float] = []
        for start in range(0, len(prompts), self.batch_size):
            ids = []
            for prompt, completion in zip(
                prompts[start : start + self.batch_size], completions[start : start + self.batch_size], strict=True
            ):
                prompt_ids, completion_ids = tokenize_prompt_completion(self.tokenizer, prompt, completion)
                ids.append(prompt_ids + completion_ids)
            batch = self.tokenizer.pad({"input_ids": ids}, return_tensors="pt", padding_side="right").to(self.device)
            scores += self.model(**batch).logits.squeeze(-1).float().tolist()
        return scores
