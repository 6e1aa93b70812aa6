"""The README's figures for the embedded models are what ``evaluate`` measures now."""

import re

import pytest

from lit_align.commands.evaluate import evaluate
from tests.helpers import REPO


def _readme_figure(model: str) -> float:
    row = next(line for line in (REPO / "README.md").read_text().splitlines() if line.startswith(f"| `{model}` |"))
    return float(re.search(r"\| ([0-9.]+) ", row).group(1))


@pytest.mark.parametrize("model", ["lit-align/tiny-sft", "lit-align/tiny-base"])
def test_embedded_model_accuracy_matches_readme(model, capsys):
    result = evaluate(model=model)
    assert result["rows"] == 500
    assert result["exact_match"] == pytest.approx(_readme_figure(model), abs=1e-4)
