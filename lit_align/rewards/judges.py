"""Judges: a language model scores answers, so preference data needs no human labels (``rewards:``, ``--scorer``).

- :class:`LogProbJudge`: the judge model's own likelihood of each answer (mean or summed log-probability).
- :class:`GenerativeJudge`: the judge reads a prompt template holding the question and the answer, writes a
  verdict, and a regex takes the score from it; several samples are averaged, and a verdict the regex cannot read
  is a counted failure (None), never a silent 0. With ``score_by: probabilities`` and ``labels``, the score is instead
  the expected label value under the judge's probability of writing each label as its verdict (one forward pass per
  label, no sampling). :data:`ADDITIVE_5_POINT` is an additive 5-point rubric as in the
  self-rewarding paper (Yuan et al., 2024; arXiv:2401.10020), for instruct models.
- :class:`PairwiseJudge`: the judge compares two answers, once in each order, so a preference for the first (or
  second) position cancels out; as a scorer, each answer's score is its win rate against the prompt's other answers.

A judge can be any model folder or name, or, in ``lit-align generate`` (and so ``lit-align iterate``), the model
that generated the answers: ``path: $model`` (self-rewarding). Templates are filled by plain text replacement of
``{prompt}`` and ``{response}`` (``{first}``, ``{second}``): nothing in them is evaluated.
"""

from __future__ import annotations

import json
import re
from typing import Any, Literal

import torch

from lit_align.data.templates import is_conversational, tokenize_prompt_completion
from lit_align.data.validation import Messages
from lit_align.errors import ConfigError
from lit_align.ops.pairs import round_robin_scores
from lit_align.roles.models import ModelSpec, load_frozen
from lit_align.roles.scoring import token_scores
from lit_align.roles.tokenizer import load_tokenizer
from lit_align.rollout.sampling import SamplingConfig
from lit_align.rollout.texts import complete

ADDITIVE_5_POINT = """You are grading an assistant's answer to a user. Start from 0 points and add points as follows:

1. +1 if the answer is on topic and gives at least some relevant information, even if partial or padded.
2. +1 more if it covers a large part of what was asked, even without a complete or direct answer.
3. +1 more if it answers the core of the question usefully.
4. +1 more if it addresses the question directly and completely, in a clear, well organised and helpful way, with
at most small flaws of clarity, length or focus.
5. +1 more if it fits the question exactly, with nothing superfluous, shows expert knowledge and is of excellent
quality.

User question: {prompt}

Answer to grade:
{response}

Explain your grade in at most 100 words, then end with a last line "Score: N" where N is the total (0 to 5).
"""
"""An additive 5-point grading prompt in the manner of the self-rewarding paper's judge (worded for lit-align), read
with ``pattern: "Score: ([0-5])"``; for instruct models."""

PAIRWISE = """Which response answers the question better?

Question: {prompt}

Response 1: {first}

Response 2: {second}

Reply with "1" or "2"."""
"""A plain pairwise template, read with ``pattern: "([12])"``."""


def text_of(value: str | Messages) -> str:
    """The text of a prompt or completion: itself, or the content of its last message."""
    return value[-1]["content"] if is_conversational(value) else value


def fill(template: str, **fields: str) -> str:
    """``template`` with each ``{name}`` replaced by ``fields[name]`` (plain replacement, nothing evaluated)."""
    for name, value in fields.items():
        template = template.replace("{" + name + "}", value)
    return template


def judge_prompt(template: str | Messages, as_chat: bool, **fields: str) -> str | Messages:
    """The judge's input: a text template filled (as one user message when ``as_chat``), or each message filled."""
    if isinstance(template, str):
        text = fill(template, **fields)
        return [{"role": "user", "content": text}] if as_chat else text
    return [{**message, "content": fill(message["content"], **fields)} for message in template]


def expected_label_value(label_logps: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """The mean label value under the judge's probabilities of the labels, renormalised over the labels.

    score = sum_l softmax(label_logps)_l * values_l, the probability-weighted score of G-Eval (Liu et al., 2023;
    arXiv:2303.16634) restricted to the verdicts the labels allow. Shapes: label_logps (B, L), values (L,) -> (B,).
    """
    assert label_logps.shape[-1] == values.shape[0], f"{label_logps.shape} logps for {values.shape[0]} labels"
    return torch.softmax(label_logps.double(), dim=-1) @ values.double()


def read_score(pattern: re.Pattern, text: str, labels: dict[str, float] | None) -> float | None:
    """The score a verdict states: the pattern's first group (through ``labels`` when given), None if unreadable."""
    found = pattern.search(text)
    if found is None:
        return None
    value = found.group(1) if found.groups() else found.group(0)
    if labels is not None:
        return labels.get(value.strip().lower())
    try:
        return float(value)
    except ValueError:
        return None


class JudgeModel:
    """A judge's frozen causal LM and its tokenizer."""

    def __init__(self, path: str, batch_size: int, device: str, trust_remote_code: bool, key: str) -> None:
        if path == "$model":
            raise ConfigError(f"{key}.path", "'$model' (the generating model) is only known inside lit-align generate")
        self.tokenizer = load_tokenizer(path, trust_remote_code=trust_remote_code, key=f"{key}.path")
        spec = ModelSpec(name_or_path=path, trust_remote_code=trust_remote_code)
        self.model = load_frozen(spec, device=torch.device(device))
        self.batch_size = batch_size

    def ask(self, prompts: list[str | Messages], sampling: SamplingConfig, n: int, seed: int) -> list[list[str]]:
        """The judge's answers to each prompt, ``n`` each; greedy ones once per distinct prompt (samples repeat)."""
        keys = [json.dumps(p) for p in prompts]
        distinct = list(dict.fromkeys(keys)) if sampling.temperature == 0 else keys
        asked = [json.loads(k) for k in distinct]
        out = complete(self.model, self.tokenizer, asked, sampling, num_samples=n, batch_size=self.batch_size,
                       seed=seed)  # fmt: skip
        if distinct is keys:
            return [[c.text for c in row] for row in out]
        answers = {k: [c.text for c in row] for k, row in zip(distinct, out, strict=True)}
        return [answers[k] for k in keys]

    @torch.no_grad()
    def logps(self, prompts: list[str | Messages], completions: list[str | Messages]) -> list[tuple[float, int]]:
        """Summed log-probability of each completion's tokens after its prompt, and the completion's token count."""
        tokenizer, model = self.tokenizer, self.model
        device = next(model.parameters()).device
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        out: list[tuple[float, int]] = []
        for start in range(0, len(prompts), self.batch_size):
            pairs = zip(prompts[start : start + self.batch_size], completions[start : start + self.batch_size],
                        strict=True)  # fmt: skip
            encoded = [tokenize_prompt_completion(tokenizer, p, c) for p, c in pairs]
            width = max(len(p) + len(c) for p, c in encoded)
            ids = torch.full((len(encoded), width), pad, dtype=torch.long)
            scored = torch.zeros(len(encoded), width, dtype=torch.bool)  # True where the next token is the answer's
            attention = torch.zeros(len(encoded), width, dtype=torch.long)
            for row, (p, c) in enumerate(encoded):
                ids[row, : len(p) + len(c)] = torch.tensor(p + c)
                attention[row, : len(p) + len(c)] = 1
                scored[row, len(p) - 1 : len(p) + len(c) - 1] = True
            targets = torch.cat([ids[:, 1:], ids[:, :1]], dim=1)  # position t predicts token t + 1
            token_logps = token_scores(model, ids.to(device), attention.to(device), targets.to(device),
                                       scored.to(device)).logps.float().cpu()  # fmt: skip
            out += zip((token_logps * scored).sum(-1).tolist(), scored.sum(-1).tolist(), strict=True)
        return out


class LogProbJudge:
    """The judge model's likelihood of each answer given its prompt: a model's own confidence as the score.

    Args:
        path: The judge model (folder, name or ``.gguf``).
        reduce: ``mean`` log-probability per answer token (comparable across lengths) or ``sum`` (the sequence's).
        batch_size: Answers per forward pass.
        device: Where the judge runs.
        trust_remote_code: Allow model code from the hub.

    """

    def __init__(
        self,
        path: str,
        reduce: str = "mean",
        batch_size: int = 64,
        device: str = "cpu",
        trust_remote_code: bool = False,
    ) -> None:
        """See the class docstring."""
        if reduce not in ("mean", "sum"):
            raise ConfigError("LogProbJudge.reduce", f"must be mean or sum, got {reduce!r}")
        self.judge = JudgeModel(path, batch_size, device, trust_remote_code, "LogProbJudge")
        self.reduce = reduce

    def __call__(self, prompts: list[str | Messages], completions: list[str | Messages], **_: object) -> list[float]:
        """Mean (or summed) log-probability of each completion's tokens after its prompt."""
        pairs = self.judge.logps(prompts, completions)
        return [total / max(count, 1) if self.reduce == "mean" else total for total, count in pairs]


class GenerativeJudge:
    """A model grades each answer from a prompt template; a regex reads the score; ``num_samples`` verdicts averaged.

    Args:
        path: The judge model; ``$model`` inside ``lit-align generate``: the model that wrote the answers.
        template: Judge prompt with ``{prompt}`` (the question's text) and ``{response}`` (the answer's), or a
            conversation (a list of messages, each filled): e.g. the question, the answer in the assistant's turn and
            a follow-up user question, so a model is asked about an answer in the place its own answers take.
        pattern: Regex whose first group (or whole match) is the score.
        labels: Map a matched word to a score (e.g. ``{"yes": 1, "no": 0}``); None reads a number.
        num_samples: Verdicts per answer; the score is the mean of those the pattern reads (None if none).
        score_by: ``samples`` (verdicts generated and read by ``pattern``) or ``probabilities``: the judge's
            probability of writing each of ``labels`` as its whole verdict, the score their probability-weighted
            value (:func:`expected_label_value`); deterministic, no generation, never unreadable; needs ``labels``.
        temperature: Sampling temperature of the verdicts; default 0 (greedy) for one, 1.0 for several.
        max_new_tokens: Tokens per verdict at most.
        as_chat: Send the filled template as a user message through the chat template (instruct models);
            False sends it as plain text.
        batch_size: Verdicts generated per batch.
        seed: Seed of the verdict sampling.
        device: Where the judge runs.
        trust_remote_code: Allow model code from the hub.

    """

    def __init__(
        self,
        path: str,
        template: str | list[dict[str, str]] = ADDITIVE_5_POINT,
        pattern: str = r"Score: ([0-5])",
        labels: dict[str, float] | None = None,
        num_samples: int = 1,
        score_by: Literal["samples", "probabilities"] = "samples",
        temperature: float | None = None,
        max_new_tokens: int = 128,
        as_chat: bool = True,
        batch_size: int = 64,
        seed: int = 0,
        device: str = "cpu",
        trust_remote_code: bool = False,
    ) -> None:
        """See the class docstring."""
        if not isinstance(template, str):
            for i, message in enumerate(template):
                fields = isinstance(message, dict) and all(isinstance(message.get(k), str) for k in ("role", "content"))
                if not fields:
                    raise ConfigError(f"GenerativeJudge.template[{i}]", f"must be a message with a role and a content "
                                      f"string, got {message!r}")  # fmt: skip
        texts = [template] if isinstance(template, str) else [m["content"] for m in template]
        if not any("{response}" in text for text in texts):
            raise ConfigError("GenerativeJudge.template", "has no {response}: the judge would never see the answer")
        if not isinstance(template, str) and not as_chat:
            raise ConfigError("GenerativeJudge.as_chat", "is false, but a template of messages is a conversation")
        try:
            self.pattern = re.compile(pattern)
        except re.error as error:
            raise ConfigError("GenerativeJudge.pattern", f"is not a valid regex: {error}") from None
        temperature = (0.0 if num_samples == 1 else 1.0) if temperature is None else temperature
        if num_samples > 1 and temperature == 0:
            raise ConfigError("GenerativeJudge.temperature", f"is 0: {num_samples} greedy verdicts are identical")
        if score_by not in ("samples", "probabilities"):
            raise ConfigError("GenerativeJudge.score_by", f"must be samples or probabilities, got {score_by!r}")
        if score_by == "probabilities" and not labels:
            raise ConfigError("GenerativeJudge.labels", "are needed with score_by: probabilities")
        self.template, self.num_samples, self.as_chat, self.seed = template, num_samples, as_chat, seed
        self.score_by = score_by
        self.labels = None if labels is None else {k.lower(): float(v) for k, v in labels.items()}
        self.sampling = SamplingConfig(temperature=temperature, max_new_tokens=max_new_tokens)
        self.judge = JudgeModel(path, batch_size, device, trust_remote_code, "GenerativeJudge")

    def verdicts(self, prompts: list[str | Messages], completions: list[str | Messages]) -> list[list[str]]:
        """The judge's raw verdicts on each answer (``num_samples`` each)."""
        return self.judge.ask(self.prompts(prompts, completions), self.sampling, self.num_samples, self.seed)

    def prompts(self, prompts: list[str | Messages], completions: list[str | Messages]) -> list[str | Messages]:
        """The judge's input for each answer: the template filled with the question and the answer."""
        return [judge_prompt(self.template, self.as_chat, prompt=text_of(p), response=text_of(c))
                for p, c in zip(prompts, completions, strict=True)]  # fmt: skip

    def __call__(
        self, prompts: list[str | Messages], completions: list[str | Messages], **_: object
    ) -> list[float | None]:
        """The mean readable score of each answer's verdicts (None where none could be read), or its expected label."""
        if self.score_by == "probabilities":
            return self.expected(prompts, completions)
        out: list[float | None] = []
        for verdicts in self.verdicts(prompts, completions):
            scores = [s for s in (read_score(self.pattern, v, self.labels) for v in verdicts) if s is not None]
            out.append(sum(scores) / len(scores) if scores else None)
        return out

    def expected(self, prompts: list[str | Messages], completions: list[str | Messages]) -> list[float | None]:
        """Each answer's label value weighted by the judge's probabilities of the labels (distinct questions once)."""
        assert self.labels is not None
        keys = [json.dumps(p) for p in self.prompts(prompts, completions)]
        distinct = list(dict.fromkeys(keys))
        asked = [json.loads(k) for k in distinct]
        columns = []
        for label in self.labels:
            verdict: Any = [{"role": "assistant", "content": label}] if self.as_chat else label
            columns.append([total for total, _ in self.judge.logps(asked, [verdict] * len(asked))])
        values = torch.tensor(list(self.labels.values()))
        scores = expected_label_value(torch.tensor(columns).T, values).tolist()  # (questions,)
        by_prompt = dict(zip(distinct, scores, strict=True))
        return [by_prompt[k] for k in keys]


class PairwiseJudge:
    """A model says which of two answers is better, asked in both orders to cancel position bias.

    :meth:`compare` judges given pairs; called as a scorer (``lit-align generate --scorer
    lit_align.rewards.judges:PairwiseJudge``), it ranks the answers of each prompt by a round-robin of comparisons.

    Args:
        path: The judge model; ``$model`` inside ``lit-align generate``: the model that wrote the answers.
        template: Prompt with ``{prompt}``, ``{first}`` and ``{second}``.
        pattern: Regex whose first group names the better answer.
        labels: Which matched value means the first answer is better (1.0) or the second (0.0).
        max_new_tokens: Tokens per verdict at most.
        as_chat: Send the filled template as a user message through the chat template.
        batch_size: Verdicts generated per batch.
        device: Where the judge runs.
        trust_remote_code: Allow model code from the hub.

    """

    def __init__(
        self,
        path: str,
        template: str = PAIRWISE,
        pattern: str = r"([12])",
        labels: dict[str, float] | None = None,
        max_new_tokens: int = 16,
        as_chat: bool = True,
        batch_size: int = 64,
        device: str = "cpu",
        trust_remote_code: bool = False,
    ) -> None:
        """See the class docstring."""
        if "{first}" not in template or "{second}" not in template:
            raise ConfigError("PairwiseJudge.template", "needs both {first} and {second}")
        self.template, self.pattern, self.as_chat = template, re.compile(pattern), as_chat
        self.labels = {"1": 1.0, "2": 0.0} if labels is None else {k.lower(): float(v) for k, v in labels.items()}
        self.sampling = SamplingConfig(temperature=0.0, max_new_tokens=max_new_tokens)
        self.judge = JudgeModel(path, batch_size, device, trust_remote_code, "PairwiseJudge")

    def verdicts(self, prompts: list, firsts: list, seconds: list) -> tuple[list[str], list[str]]:
        """The judge's verdicts with the answers in the given order and swapped."""

        def ask(a: list, b: list) -> list[str]:
            asked = [judge_prompt(self.template, self.as_chat, prompt=text_of(p), first=text_of(x), second=text_of(y))
                     for p, x, y in zip(prompts, a, b, strict=True)]  # fmt: skip
            return [row[0] for row in self.judge.ask(asked, self.sampling, 1, 0)]

        return ask(firsts, seconds), ask(seconds, firsts)

    def compare(self, prompts: list, firsts: list, seconds: list) -> list[float | None]:
        """P(first better) per pair: the mean of the two orders' readable verdicts (1, 0.5 when they disagree)."""
        straight, swapped = self.verdicts(prompts, firsts, seconds)
        out: list[float | None] = []
        for a, b in zip(straight, swapped, strict=True):
            first = read_score(self.pattern, a, self.labels)  # 1: the first shown (ours) is better
            second = read_score(self.pattern, b, self.labels)  # 1: the first shown (theirs) is better
            votes = [v for v in (first, None if second is None else 1.0 - second) if v is not None]
            out.append(sum(votes) / len(votes) if votes else None)
        return out

    def __call__(
        self, prompts: list[str | Messages], completions: list[str | Messages], **_: object
    ) -> list[float | None]:
        """Score every answer by a round-robin among the answers to the same prompt (a scorer for ``generate``).

        Each two distinct answers of a prompt are compared (:meth:`compare`, both orders); an answer's score is its
        mean preference over the others (:func:`~lit_align.ops.pairs.round_robin_scores`), so the best answer of a
        prompt scores highest. Costs G(G-1) verdicts for G distinct answers. An answer with no other distinct answer
        to meet scores 0.5 (a tie: it makes no pair); one whose comparisons were all unreadable, None.
        """
        groups: dict[str, list[int]] = {}
        for k, prompt in enumerate(prompts):
            groups.setdefault(json.dumps(prompt), []).append(k)
        distinct = {key: list(dict.fromkeys(text_of(completions[k]) for k in rows)) for key, rows in groups.items()}
        matches = [(key, a, b) for key, texts in distinct.items() for a in range(len(texts)) for b in range(a)]
        first = {key: prompts[rows[0]] for key, rows in groups.items()}
        won = self.compare([first[key] for key, _, _ in matches], [distinct[key][a] for key, a, _ in matches],
                           [distinct[key][b] for key, _, b in matches]) if matches else []  # fmt: skip
        tables = {key: torch.full((len(texts), len(texts)), torch.nan) for key, texts in distinct.items()}
        for (key, a, b), p in zip(matches, won, strict=True):
            if p is not None:
                tables[key][a, b], tables[key][b, a] = p, 1.0 - p
        out: list[float | None] = [None] * len(prompts)
        for key, rows in groups.items():
            texts = distinct[key]
            scores = round_robin_scores(tables[key][None])[0].tolist() if len(texts) > 1 else [0.5]
            by_text = dict(zip(texts, scores, strict=True))
            for k in rows:
                score = by_text[text_of(completions[k])]
                out[k] = None if score != score else score  # NaN: every comparison unreadable
        return out
