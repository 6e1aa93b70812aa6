"""Shared fixtures: every test runs offline."""

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture
def tiny_tokenizer():
    from lit_align.roles.models import load_tokenizer

    return load_tokenizer("lit-align/tiny-sft")
