"""The embedded default: a tiny character-level tokenizer and Llama model that ship with the package.

``lit-align/tiny-base`` (random initialisation, rebuilt bit-for-bit by ``python -m lit_align.embedded.build``) and
``lit-align/tiny-sft`` (``tiny-base`` after ``recipes/sft.yaml``) resolve to folders inside this package, so every
recipe runs offline.
"""

from pathlib import Path

EMBEDDED_DIR = Path(__file__).parent
EMBEDDED_MODELS = {"lit-align/tiny-base": EMBEDDED_DIR / "tiny-base", "lit-align/tiny-sft": EMBEDDED_DIR / "tiny-sft"}
