"""Turn a prompt and a completion (plain text or chat messages) into token ids.

Plain text: the prompt is tokenized with the tokenizer's usual special tokens (a BOS for Llama-like models) and
the completion gets an EOS appended. Chat messages: the tokenizer's chat template renders the conversation; the
completion is whatever the full conversation adds after the prompt rendered with its generation prompt.
"""

from __future__ import annotations

from pathlib import Path

from transformers import PreTrainedTokenizerBase

from lit_align.data.validation import Messages
from lit_align.errors import LitAlignError

CHAT_TEMPLATES = {
    "chatml": (
        "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + "
        "'<|im_end|>' + '\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
    ),
}
"""Named chat templates for ``chat_template:`` (a tokenizer without one, or one to replace)."""


def chat_template(value: str) -> str:
    """A chat template from ``chat_template:``: a name in :data:`CHAT_TEMPLATES`, a Jinja file, or Jinja itself.

    Raises:
        LitAlignError: A name or a file that does not exist.

    """
    if value in CHAT_TEMPLATES:
        return CHAT_TEMPLATES[value]
    if "{%" in value or "{{" in value:
        return value
    path = Path(value).expanduser()
    if not path.is_file():
        raise LitAlignError(
            f"data.init_args.chat_template: '{value}' is not a named template ({', '.join(CHAT_TEMPLATES)}), "
            "a Jinja file or a Jinja template"
        )
    return path.read_text()


def with_chat_template(tokenizer: PreTrainedTokenizerBase, value: str | None) -> PreTrainedTokenizerBase:
    """The tokenizer with ``chat_template:`` applied (unchanged when None)."""
    if value is not None:
        tokenizer.chat_template = chat_template(value)
    return tokenizer


def is_conversational(value: object) -> bool:
    """Tell whether a prompt or completion is a message list (True) or plain text (False)."""
    return isinstance(value, list)


def render_prompt(tokenizer: PreTrainedTokenizerBase, prompt: str | Messages) -> str:
    """Text the model sees before it answers (chat template with the generation prompt for messages)."""
    if not is_conversational(prompt):
        return prompt
    _require_template(tokenizer)
    return tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)


def tokenize_prompt_completion(
    tokenizer: PreTrainedTokenizerBase, prompt: str | Messages, completion: str | Messages
) -> tuple[list[int], list[int]]:
    """Token ids of the prompt and of the completion that follows it.

    Raises:
        LitAlignError: Messages given to a tokenizer without a chat template, mixed plain/chat inputs, or a
            template that does not render the prompt as a prefix of the whole conversation.

    """
    if is_conversational(prompt) != is_conversational(completion):
        raise LitAlignError("prompt and completion must both be plain text or both be message lists")
    if not is_conversational(prompt):
        prompt_ids = tokenizer(prompt).input_ids
        completion_ids = tokenizer(completion, add_special_tokens=False).input_ids + [tokenizer.eos_token_id]
        return prompt_ids, completion_ids
    prompt_text = render_prompt(tokenizer, prompt)
    full_text = tokenizer.apply_chat_template(prompt + completion, tokenize=False)
    if not full_text.startswith(prompt_text):
        raise LitAlignError("the chat template does not render the prompt as a prefix of the full conversation")
    prompt_ids = tokenizer(prompt_text, add_special_tokens=False).input_ids
    completion_ids = tokenizer(full_text[len(prompt_text) :], add_special_tokens=False).input_ids
    return prompt_ids, completion_ids


def tokenize_conversation(
    tokenizer: PreTrainedTokenizerBase, messages: Messages, train_on: str = "all"
) -> tuple[list[int], list[bool]]:
    """Token ids of a whole conversation and which of them are trained on (every assistant turn, or the last).

    The conversation is rendered with the chat template in pieces: before each trained assistant turn, the text up
    to it with the generation prompt; the turn itself is what the conversation up to and including it adds. Each
    piece is tokenized on its own, as prompt and completion are for one turn, so a one-turn conversation gets
    exactly the ids of :func:`tokenize_prompt_completion`.

    Args:
        tokenizer: A tokenizer with a chat template.
        messages: The conversation; it ends with an assistant message.
        train_on: ``all`` assistant turns or only the ``last``.

    Returns:
        ``(input_ids, trained)``: ids of the whole conversation and, per id, whether it is an assistant token that
        is trained on.

    Raises:
        LitAlignError: No chat template, or a template that does not render each part as a prefix of the next.

    """
    _require_template(tokenizer)
    turns = [i for i, m in enumerate(messages) if m["role"] == "assistant"]
    if train_on == "last":
        turns = turns[-1:]
    ids: list[int] = []
    trained: list[bool] = []
    done = ""  # text rendered so far
    for i in turns:
        before = tokenizer.apply_chat_template(messages[:i], tokenize=False, add_generation_prompt=True)
        upto = tokenizer.apply_chat_template(messages[: i + 1], tokenize=False)
        if not before.startswith(done) or not upto.startswith(before):
            raise LitAlignError(
                "the chat template does not render each turn as a prefix of the conversation that follows it"
            )
        for text, is_trained in ((before[len(done) :], False), (upto[len(before) :], True)):
            piece = tokenizer(text, add_special_tokens=False).input_ids if text else []
            ids += piece
            trained += [is_trained] * len(piece)
        done = upto
    full = tokenizer.apply_chat_template(messages, tokenize=False)
    if not full.startswith(done):
        raise LitAlignError("the chat template does not render the last turn as a prefix of the whole conversation")
    rest = tokenizer(full[len(done) :], add_special_tokens=False).input_ids if full[len(done) :] else []
    return ids + rest, trained + [False] * len(rest)


def _require_template(tokenizer: PreTrainedTokenizerBase) -> None:
    if tokenizer.chat_template is None:
        raise LitAlignError(
            f"tokenizer '{tokenizer.name_or_path}' has no chat template but the data are chat messages; "
            "use plain-text fields or a tokenizer with a chat template"
        )


def split_implicit_prompt(chosen: str | Messages, rejected: str | Messages) -> tuple:
    """Split two whole conversations that share a beginning (HH-RLHF style) into prompt, chosen and rejected.

    Message lists: the prompt is the longest run of identical leading messages. Text: the longest common prefix,
    cut back to its last whitespace so no word is split.

    Returns:
        ``(prompt, chosen_rest, rejected_rest)``; the prompt is empty when the two share nothing.

    """
    if is_conversational(chosen) and is_conversational(rejected):
        n = 0
        while n < min(len(chosen), len(rejected)) and chosen[n] == rejected[n]:
            n += 1
        return chosen[:n], chosen[n:], rejected[n:]
    n = 0
    while n < min(len(chosen), len(rejected)) and chosen[n] == rejected[n]:
        n += 1
    cut = max(chosen.rfind(" ", 0, n), chosen.rfind("\n", 0, n)) if n < max(len(chosen), len(rejected)) else n
    cut = max(cut, 0)
    return chosen[:cut], chosen[cut:], rejected[cut:]


def fit_to_length(
    prompt_ids: list[int], completions: list[list[int]], max_length: int, max_prompt_length: int | None
) -> tuple[list[int], list[list[int]], bool]:
    """Cut a prompt and its completions to ``max_length``, keeping the prompt's end and each completion's start.

    The prompt is first cut to its last ``max_prompt_length`` tokens (when set and needed); then each completion
    is cut to the room left.

    Returns:
        ``(prompt_ids, completions, truncated)``.

    Raises:
        ValueError: The prompt leaves no room for any completion token.

    """
    longest = max(len(c) for c in completions)
    if len(prompt_ids) + longest <= max_length:
        return prompt_ids, completions, False
    if max_prompt_length is not None and len(prompt_ids) > max_prompt_length:
        prompt_ids = prompt_ids[-max_prompt_length:]
    room = max_length - len(prompt_ids)
    if room <= 0:
        raise ValueError(
            f"the prompt ({len(prompt_ids)} tokens) leaves no room for the completion at max_length={max_length}"
        )
    return prompt_ids, [c[:room] for c in completions], True
