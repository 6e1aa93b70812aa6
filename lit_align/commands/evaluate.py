"""Held-out exact-match accuracy of a model on prompt/answer rows (``lit-align evaluate``)."""

from __future__ import annotations

import json
import sys
from typing import Literal

import torch
from jsonargparse import auto_cli

from lit_align.data.sources import DataSource, load_splits, readable_rows
from lit_align.data.templates import render_prompt
from lit_align.data.validation import text_field, text_or_messages
from lit_align.domains import PositiveInt, check_args
from lit_align.rewards.verifiable import final_number
from lit_align.roles.models import ModelSpec, load_policy
from lit_align.roles.tokenizer import load_tokenizer
from lit_align.tasks.arithmetic import is_correct
from lit_align.types import Shape

Match = Literal["leading", "final"]


@torch.no_grad()
def exact_match(
    model: torch.nn.Module,
    tokenizer,
    prompts: list,
    answers: list[str],
    *,  # noqa: ANN001
    batch_size: int = 64,
    max_new_tokens: int = 8,
    match: Match = "leading",
) -> tuple[float, list[str]]:
    """Greedy-decode every prompt and compare the completion's leading (or final) number with the answer.

    Returns:
        ``(accuracy, completions)``.

    """
    model.eval()
    tokenizer.padding_side = "left"
    completions: list[str] = []
    for start in range(0, len(prompts), batch_size):
        texts = [render_prompt(tokenizer, p) for p in prompts[start : start + batch_size]]
        add_special = not isinstance(prompts[start], list)  # chat templates already hold their special tokens
        enc = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=add_special).to(model.device)
        out = model.generate(**enc, do_sample=False, max_new_tokens=max_new_tokens, pad_token_id=tokenizer.pad_token_id)
        completions += tokenizer.batch_decode(out[:, enc["input_ids"].shape[1] :], skip_special_tokens=True)
    if match == "final":
        hits = sum(score == 1.0 for score in final_number(prompts, completions, answer=answers))
    else:
        hits = sum(is_correct(c, a) for c, a in zip(completions, answers, strict=True))
    return hits / max(len(answers), 1), completions


def evaluate(
    model: str = "lit-align/tiny-sft",
    source: DataSource = DataSource(split="test", val_split=None, num_rows=500),  # noqa: B008
    prompt_field: str = "prompt",
    answer_field: str = "answer",
    batch_size: PositiveInt = 64,
    max_new_tokens: PositiveInt = 8,
    match: Match = "leading",
    trust_remote_code: bool = False,
) -> dict:
    """Print held-out exact-match accuracy of a model (JSON on one line) and return it.

    Args:
        model: Model name or path (a Hugging Face folder, e.g. a run's ``hf_model``).
        source: Prompt-only rows with reference answers; defaults to 500 problems of the embedded task's test split.
        prompt_field: Column holding the prompt (text or messages).
        answer_field: Column holding the reference answer (the completion's leading integer must equal it).
        batch_size: Prompts per generation batch.
        max_new_tokens: Tokens generated per prompt.
        match: ``leading``: the completion's first integer must equal the answer (the embedded arithmetic task);
            ``final``: its last number must (GSM8K-style, as the ``final_number`` reward; for worked answers).
        trust_remote_code: Allow model code from the hub.

    """
    check_args(evaluate, locals(), "--")
    tokenizer = load_tokenizer(model, trust_remote_code=trust_remote_code, key="--model")
    policy = load_policy(ModelSpec(name_or_path=model, trust_remote_code=trust_remote_code))
    rows, _ = load_splits(source, Shape.PROMPT)
    prompts, answers = [], []
    for i, r in readable_rows(rows):
        prompts.append(text_or_messages(r, prompt_field, rows.origin, i))
        answers.append(text_field(r, answer_field, rows.origin, i))
    accuracy, _ = exact_match(
        policy, tokenizer, prompts, answers, batch_size=batch_size, max_new_tokens=max_new_tokens, match=match
    )
    result = {"model": model, "data": rows.origin, "rows": len(answers), "exact_match": round(accuracy, 4)}
    print(json.dumps(result))
    return result


def evaluate_cli(args: list[str] | None = None) -> None:
    """``lit-align evaluate --help``."""
    auto_cli(evaluate, args=sys.argv[2:] if args is None else args, prog="lit-align evaluate", exit_on_error=False)
