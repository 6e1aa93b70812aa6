"""Fixtures shared by the command tests."""

import pytest
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from tests.helpers import REPO

TINY = REPO / "lit_align" / "embedded" / "tiny-sft"


@pytest.fixture(scope="module")
def random_reward_model(tmp_path_factory):
    """The tiny backbone with a randomly initialised scalar head: scores are arbitrary but deterministic."""
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("rm")
    AutoModelForSequenceClassification.from_pretrained(TINY, num_labels=1).save_pretrained(folder)
    AutoTokenizer.from_pretrained(TINY).save_pretrained(folder)
    return folder
