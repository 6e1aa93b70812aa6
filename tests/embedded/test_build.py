from safetensors.torch import load_file

from lit_align.embedded import EMBEDDED_MODELS
from lit_align.embedded.build import build_model, build_tokenizer


def test_build_reproduces_shipped_base_model_exactly():
    tokenizer = build_tokenizer()
    model = build_model(tokenizer, seed=0)
    shipped = load_file(EMBEDDED_MODELS["lit-align/tiny-base"] / "model.safetensors")
    built = model.state_dict()
    assert set(shipped) <= set(built)
    assert all(built[k].equal(v) for k, v in shipped.items())


def test_tokenizer_round_trips_text_one_token_per_character():
    tokenizer = build_tokenizer()
    text = "What is 47 * 8? Compute it!"
    ids = tokenizer(text, add_special_tokens=False).input_ids
    assert len(ids) == len(text)
    assert tokenizer.decode(ids) == text
    assert tokenizer.unk_token_id not in ids


def test_shipped_models_are_small():
    total = sum(f.stat().st_size for d in EMBEDDED_MODELS.values() for f in d.iterdir())
    assert total < 10 * 2**20
