"""A constitution whose critiques and revisions an instruct model writes from templates (Bai et al., 2022).

:class:`ModelConstitution` is a :class:`~lit_align.rewards.constitution.Constitution` whose principles are sentences:
for each (question, answer) the model is asked whether the answer follows a principle (:data:`CRITIQUE`), and the
answer keeps it when the model's probability of ``yes`` over ``no`` is at least one half (one forward pass per
verdict, no sampling: :func:`~lit_align.rewards.judges.expected_label_value`); an answer that breaks a principle is
rewritten by the model from :data:`REVISION`. Priorities, scores and the ``cai-pairs`` / ``cai-sft`` modes of
``lit-align generate`` are the constitution's: the first principle matters most. Critiques of a whole batch are
computed together when it is scored, and remembered, so the pairs' critique columns cost nothing more.

Use an instruct model that can follow the templates (1B parameters and up, on a GPU); the embedded tiny model cannot,
and the checkable :class:`~lit_align.rewards.constitution.ArithmeticConstitution` plays these roles on the embedded
task. Templates are filled by plain replacement of ``{prompt}``, ``{response}`` and ``{principle}``.
"""

from __future__ import annotations

from typing import Any

import torch

from lit_align.data.validation import Messages
from lit_align.errors import ConfigError
from lit_align.rewards.constitution import Constitution, Principle
from lit_align.rewards.judges import JudgeModel, expected_label_value, fill, text_of
from lit_align.rollout.sampling import SamplingConfig

CRITIQUE = """Here is a request and a response to it.

Request: {prompt}

Response: {response}

Principle: {principle}

Does the response follow the principle? Answer yes or no."""
"""The critique question (a user message); the verdict is read as the probability of ``yes`` against ``no``."""

REVISION = """Here is a request and a response to it that does not follow a principle.

Request: {prompt}

Response: {response}

Principle: {principle}

Rewrite the response so that it follows the principle and still answers the request. Reply with the rewritten
response only."""
"""The revision request (a user message); the model's greedy reply is the revised answer."""


class ModelConstitution(Constitution):
    """Principles in priority order, checked and applied by an instruct model.

    Args:
        path: The instruct model (folder, name or ``.gguf``); ``$model`` in ``lit-align generate``: the generator.
        principles: Most important first: ``{"name": ..., "principle": "The response ..."}``, optionally
            ``"revise": false`` for a principle that is only checked.
        critique: Critique template with ``{prompt}``, ``{response}`` and ``{principle}``.
        revision: Revision template with the same fields.
        max_new_tokens: Tokens of a revision at most.
        batch_size: Critiques or revisions per forward batch.
        device: Where the model runs.
        trust_remote_code: Allow model code from the hub.

    """

    def __init__(
        self,
        path: str,
        principles: list[dict[str, Any]],
        critique: str = CRITIQUE,
        revision: str = REVISION,
        max_new_tokens: int = 256,
        batch_size: int = 32,
        device: str = "cpu",
        trust_remote_code: bool = False,
    ) -> None:
        """See the class docstring."""
        if not principles:
            raise ConfigError("ModelConstitution.principles", "is empty: give at least one principle")
        for i, given in enumerate(principles):
            if not isinstance(given, dict) or not str(given.get("principle", "")).strip() or not given.get("name"):
                raise ConfigError(f"ModelConstitution.principles[{i}]", "needs a name and a principle sentence")
        for key, template in (("critique", critique), ("revision", revision)):
            if "{response}" not in template or "{principle}" not in template:
                raise ConfigError(f"ModelConstitution.{key}", "needs {response} and {principle}")
        self.model = JudgeModel(path, batch_size, device, trust_remote_code, "ModelConstitution")
        self.texts = [str(p["principle"]) for p in principles]
        self.critique, self.revision = critique, revision
        self.sampling = SamplingConfig(temperature=0.0, max_new_tokens=max_new_tokens)
        self.verdicts: dict[tuple[int, str, str], bool] = {}  # (principle, prompt, answer) -> kept
        super().__init__(
            [
                Principle(str(p["name"]), self._check(i), self._revise(i) if p.get("revise", True) else None)
                for i, p in enumerate(principles)
            ]
        )

    def __call__(self, prompts: list[str | Messages], completions: list[str | Messages], **_: object) -> list[float]:
        """Scores of every completion, after critiquing the whole batch at once."""
        self.critique_all([(text_of(p), text_of(c)) for p, c in zip(prompts, completions, strict=True)])
        return super().__call__(prompts, completions)

    def critique_all(self, answers: list[tuple[str, str]]) -> None:
        """Ask every principle about every ``(prompt, answer)`` not yet judged, in batches."""
        for i, principle in enumerate(self.texts):
            todo = list(dict.fromkeys(a for a in answers if (i, *a) not in self.verdicts))
            if not todo:
                continue
            asked = [[{"role": "user", "content": fill(self.critique, prompt=p, response=r, principle=principle)}]
                     for p, r in todo]  # fmt: skip
            yes = [t for t, _ in self.model.logps(asked, [[{"role": "assistant", "content": "yes"}]] * len(asked))]
            no = [t for t, _ in self.model.logps(asked, [[{"role": "assistant", "content": "no"}]] * len(asked))]
            kept = expected_label_value(torch.tensor([yes, no]).T, torch.tensor([1.0, 0.0])) >= 0.5
            self.verdicts.update({(i, *a): bool(k) for a, k in zip(todo, kept.tolist(), strict=True)})

    def _check(self, i: int) -> Any:
        def check(prompt: str, answer: str) -> bool:
            self.critique_all([(prompt, answer)])
            return self.verdicts[(i, prompt, answer)]

        return check

    def _revise(self, i: int) -> Any:
        def revise(prompt: str, answer: str) -> str:
            asked = [[{"role": "user", "content": fill(self.revision, prompt=prompt, response=answer,
                                                       principle=self.texts[i])}]]  # fmt: skip
            return self.model.ask(asked, self.sampling, 1, 0)[0][0].strip()

        return revise
