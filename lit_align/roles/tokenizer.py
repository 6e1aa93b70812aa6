"""Tokenizer loading, apart from model loading (data modules need a tokenizer, not peft or a model)."""

from __future__ import annotations

from transformers import AutoTokenizer, PreTrainedTokenizerBase

from lit_align.errors import ModelLoadError
from lit_align.roles.paths import POLICY_KEY, first_line, hf_location, resolve_model_path


def load_tokenizer(
    name_or_path: str, *, trust_remote_code: bool = False, key: str = POLICY_KEY
) -> PreTrainedTokenizerBase:
    """Load a tokenizer; give it a pad token (EOS) when it has none.

    Raises:
        ModelLoadError: The path is missing or transformers cannot load it.

    """
    location, gguf = hf_location(resolve_model_path(name_or_path, key))  # a .gguf file holds its tokenizer
    try:
        tokenizer = AutoTokenizer.from_pretrained(location, trust_remote_code=trust_remote_code, **gguf)
    except (OSError, ValueError) as error:
        raise ModelLoadError(f"{key}: cannot load tokenizer '{name_or_path}': {first_line(error)}") from error
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer
