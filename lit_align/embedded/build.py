"""Build the embedded tiny tokenizer and randomly initialised Llama (``lit-align/tiny-base``) reproducibly.

Usage: ``python -m lit_align.embedded.build --out DIR``. The same torch version writes the same weights; the
model is also built on demand when a config names ``lit-align/tiny-base``.
"""

from __future__ import annotations

import argparse
import string
from pathlib import Path

import torch
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

SPECIAL_TOKENS = ["<pad>", "<unk>", "<s>", "</s>", "<|system|>", "<|user|>", "<|assistant|>", "<|end|>"]
CHARACTERS = list(string.digits + string.ascii_letters + string.punctuation + " \n")
# Each message is "<|role|>content<|end|>"; an assistant turn ends with the EOS token instead, so a model
# trained on it stops generating after its answer.
CHAT_TEMPLATE = (
    "{% for message in messages %}<|{{ message['role'] }}|>{{ message['content'] }}"
    "{% if message['role'] == 'assistant' %}{{ eos_token }}{% else %}<|end|>{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)
MODEL_CONFIG = {
    "hidden_size": 192,
    "intermediate_size": 512,
    "num_hidden_layers": 4,
    "num_attention_heads": 4,
    "num_key_value_heads": 4,
    "max_position_embeddings": 128,
    "rope_theta": 10000.0,
    "tie_word_embeddings": True,
}


def build_tokenizer() -> PreTrainedTokenizerFast:
    """Return a character-level tokenizer: one token per character, special tokens for roles and padding."""
    vocab = {token: i for i, token in enumerate(SPECIAL_TOKENS + CHARACTERS)}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")  # any character, newlines too
    core.decoder = decoders.Fuse()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core,
        pad_token="<pad>",
        unk_token="<unk>",
        bos_token="<s>",
        eos_token="</s>",
        additional_special_tokens=SPECIAL_TOKENS[4:],
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def build_model(tokenizer: PreTrainedTokenizerFast, seed: int = 0) -> LlamaForCausalLM:
    """Return a randomly initialised tiny Llama sized for the tokenizer."""
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        **MODEL_CONFIG,
    )
    return LlamaForCausalLM(config)


def write_base(out: Path, seed: int = 0) -> LlamaForCausalLM:
    """Write the tokenizer and the randomly initialised model to ``out``; return the model."""
    tokenizer = build_tokenizer()
    model = build_model(tokenizer, seed=seed)
    tokenizer.save_pretrained(out)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(out)
    return model


def main() -> None:
    """Write tokenizer and model to ``--out``."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    model = write_base(args.out, seed=args.seed)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"wrote {args.out} ({n_params / 1e6:.2f}M parameters, vocab {model.config.vocab_size})")


if __name__ == "__main__":
    main()
