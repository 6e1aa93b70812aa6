"""Reward functions written the way TRL's docs write them (called by keyword), for the keyword-call tests."""


def _text(completion):
    return completion[0]["content"] if isinstance(completion, list) else completion


def brevity(completions, **kwargs):
    """TRL's documented form: only ``completions`` named, everything else in ``**kwargs``."""
    return [-float(len(_text(c))) for c in completions]


def token_count(completions, completion_ids, **kwargs):
    return [float(len(ids)) for ids in completion_ids]


def named_only(prompts, completions, answer):
    """No ``**kwargs``: gets exactly the keywords it names."""
    return [float(_text(c).strip() == a) for c, a in zip(completions, answer, strict=True)]
