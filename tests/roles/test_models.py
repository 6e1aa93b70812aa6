import json

import pytest
import torch
from transformers import AutoModelForCausalLM

from lit_align.embedded import embedded_model_path
from lit_align.errors import ModelLoadError
from lit_align.roles.models import ModelSpec, load_frozen, load_policy, save_hf
from lit_align.roles.paths import resolve_model_path

BASE = "lit-align/tiny-sft"


def _batch():
    torch.manual_seed(0)
    ids = torch.randint(8, 100, (2, 12))
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}


def _train_steps(model, steps=3, lr=1e-2):
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)
    batch = _batch()
    for _ in range(steps):
        loss = model(**batch, labels=batch["input_ids"]).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
    return loss


def test_qlora_loads_4bit_and_trains_adapters_on_cpu():
    bnb = pytest.importorskip("bitsandbytes")
    spec = ModelSpec(name_or_path=BASE, finetune="qlora", lora_r=4)
    policy = load_policy(spec)
    assert any(isinstance(m, bnb.nn.Linear4bit) for m in policy.modules())
    lora_before = {n: p.detach().clone() for n, p in policy.named_parameters() if p.requires_grad}
    loss = _train_steps(policy)
    assert torch.isfinite(loss)
    assert any(not p.equal(lora_before[n]) for n, p in policy.named_parameters() if p.requires_grad)


@pytest.mark.parametrize("merge", [True, False])
def test_save_hf_round_trips_lora_policy(tmp_path, tiny_tokenizer, merge):
    spec = ModelSpec(name_or_path=BASE, finetune="lora", lora_r=4, lora_dropout=0.0)
    policy = load_policy(spec)
    _train_steps(policy)
    policy.eval()
    out = save_hf(policy, tiny_tokenizer, tmp_path / "hf", spec=spec, merge_adapter=merge)
    assert (out / ("model.safetensors" if merge else "adapter_model.safetensors")).exists()
    assert (out / "tokenizer.json").exists()
    if merge:
        reloaded = AutoModelForCausalLM.from_pretrained(out).eval()
    else:  # the adapter names its embedded base by name, not by its folder inside this install
        assert json.loads((out / "adapter_config.json").read_text())["base_model_name_or_path"] == BASE
        assert str(embedded_model_path(BASE)) not in (out / "README.md").read_text()
        reloaded = load_frozen(ModelSpec(name_or_path=str(out)))
    batch = _batch()
    assert torch.allclose(reloaded(**batch).logits, policy(**batch).logits, atol=1e-5)


def test_an_adapter_of_a_local_folder_records_its_absolute_path(tmp_path, tiny_tokenizer, monkeypatch):
    folder = tmp_path / "my-base"
    AutoModelForCausalLM.from_pretrained(embedded_model_path(BASE)).save_pretrained(folder)
    monkeypatch.chdir(tmp_path)
    spec = ModelSpec(name_or_path="my-base", finetune="lora", lora_r=4, lora_dropout=0.0)  # relative, as typed
    policy = load_policy(spec)
    _train_steps(policy)
    out = save_hf(policy.eval(), tiny_tokenizer, tmp_path / "adapter", spec=spec, merge_adapter=False)
    assert json.loads((out / "adapter_config.json").read_text())["base_model_name_or_path"] == str(folder)
    monkeypatch.chdir(out)  # elsewhere, plain transformers finds the base
    reloaded = AutoModelForCausalLM.from_pretrained(out).eval()
    batch = _batch()
    assert torch.allclose(reloaded(**batch).logits, policy(**batch).logits, atol=1e-5)


def test_missing_local_path_is_a_one_line_error(monkeypatch):
    with pytest.raises(
        ModelLoadError, match=r"^model.init_args.policy.name_or_path: model path './nope' does not exist$"
    ):
        resolve_model_path("./nope")
    assert resolve_model_path(BASE) == str(embedded_model_path(BASE))
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    assert resolve_model_path("Qwen/Qwen2.5-0.5B") == "Qwen/Qwen2.5-0.5B"  # online, hub ids pass through
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # offline, one that is not in the cache cannot load: say so now
    with pytest.raises(ModelLoadError, match=r"'Qwen/Qwen2.5-0.5B' is not a local folder and not in the Hugging Face"):
        resolve_model_path("Qwen/Qwen2.5-0.5B")


def test_dtype_attention_and_gradient_checkpointing_options_apply():
    spec = ModelSpec(name_or_path=BASE, dtype="bfloat16", attn_implementation="eager", gradient_checkpointing=True)
    policy = load_policy(spec)
    assert policy.dtype == torch.bfloat16
    assert policy.config._attn_implementation == "eager"
    assert policy.is_gradient_checkpointing and policy.training
    assert torch.isfinite(_train_steps(policy, steps=1))


@pytest.mark.parametrize("finetune", ["full", "lora"])
def test_gradient_checkpointing_recomputes_each_block_and_keeps_every_gradient(finetune):
    """Per-block recomputation (non-reentrant) gives the gradients of the plain pass, with and without LoRA."""
    from lit_align.roles.scoring import token_scores

    def grads(checkpointing: bool) -> tuple[dict, int]:
        torch.manual_seed(0)  # the same LoRA initialisation in both
        policy = load_policy(
            ModelSpec(name_or_path=BASE, finetune=finetune, lora_dropout=0.0, gradient_checkpointing=checkpointing)
        )
        with torch.no_grad():
            for name, p in policy.named_parameters():
                if "lora_B" in name:
                    p.normal_(std=0.1)  # a trained adapter, so every LoRA weight gets a gradient
        blocks = policy.get_base_model().model.layers if finetune == "lora" else policy.model.layers
        calls = []
        hooks = [block.mlp.register_forward_pre_hook(lambda *_: calls.append(1)) for block in blocks]
        batch = _batch()
        targets = batch["input_ids"].roll(-1, dims=1)
        scores = token_scores(
            policy, batch["input_ids"], batch["attention_mask"], targets, torch.ones_like(targets).bool()
        )
        scores.logps.sum().backward()
        for hook in hooks:
            hook.remove()
        return {n: p.grad for n, p in policy.named_parameters() if p.grad is not None}, len(calls) // len(blocks)

    plain, plain_calls = grads(False)
    checkpointed, checkpointed_calls = grads(True)
    assert (plain_calls, checkpointed_calls) == (1, 2)  # each block runs again in the backward pass
    assert plain.keys() == checkpointed.keys() and plain
    for name, grad in plain.items():
        torch.testing.assert_close(checkpointed[name], grad, rtol=0, atol=1e-6, msg=name)


def test_a_gguf_file_is_a_model_path_and_other_files_are_not(tmp_path):
    from lit_align.roles.paths import hf_location

    gguf, other = tmp_path / "m.Q4_1.gguf", tmp_path / "weights.bin"
    gguf.write_bytes(b"GGUF"), other.write_bytes(b"x")
    assert hf_location(resolve_model_path(str(gguf))) == (str(tmp_path), {"gguf_file": "m.Q4_1.gguf"})
    assert hf_location(resolve_model_path(BASE)) == (str(embedded_model_path(BASE)), {})
    with pytest.raises(ModelLoadError, match=r"'.*weights.bin' is a file; a model path must be a folder \(or a .gguf"):
        resolve_model_path(str(other))
    with pytest.raises(ModelLoadError, match=r"finetune: qlora cannot quantize a .gguf file as it loads"):
        load_policy(ModelSpec(name_or_path=str(gguf), finetune="qlora"))
