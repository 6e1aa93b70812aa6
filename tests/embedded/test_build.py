import torch
from safetensors.torch import load_file

from lit_align.embedded import EMBEDDED_DIR, embedded_model_path
from lit_align.embedded.build import build_model, build_tokenizer, write_base


def test_build_is_reproducible(tmp_path):
    first = write_base(tmp_path / "a").state_dict()
    second = load_file(embedded_model_path("lit-align/tiny-base") / "model.safetensors")
    assert set(second) <= set(first)
    assert all(first[k].equal(v) for k, v in second.items())
    other_seed = build_model(build_tokenizer(), seed=1).state_dict()
    assert not all(other_seed[k].equal(v) for k, v in second.items())


def test_base_is_built_on_demand_into_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("LIT_ALIGN_CACHE", str(tmp_path))
    path = embedded_model_path("lit-align/tiny-base")
    assert path.parent == tmp_path and (path / "model.safetensors").exists() and (path / "tokenizer.json").exists()


def test_tokenizer_round_trips_text_one_token_per_character():
    tokenizer = build_tokenizer()
    text = "What is 47 * 8?\nCompute it!"
    ids = tokenizer(text, add_special_tokens=False).input_ids
    assert len(ids) == len(text)
    assert tokenizer.decode(ids) == text
    assert tokenizer.unk_token_id not in ids


def test_shipped_sft_model_is_small_and_matches_the_tokenizer():
    shipped = EMBEDDED_DIR / "tiny-sft"
    assert sum(f.stat().st_size for f in shipped.iterdir()) < 10 * 2**20
    weights = load_file(shipped / "model.safetensors")
    assert weights["model.embed_tokens.weight"].shape[0] == len(build_tokenizer())
    assert all(torch.isfinite(w).all() for w in weights.values())
