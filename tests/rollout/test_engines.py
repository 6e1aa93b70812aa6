"""Rollout engines: the same tokens as transformers ``generate``, a synced low-precision copy, plug-in engines, and
the vLLM adapter against a recording stand-in."""

import copy
import json
import sys

import pytest
import torch

from lit_align.data import PromptDataModule
from lit_align.data.sources import DataSource
from lit_align.errors import ConfigError
from lit_align.objectives import GRPO
from lit_align.roles.models import ModelSpec, load_policy
from lit_align.roles.tokenizer import load_tokenizer
from lit_align.rollout import (
    RolloutSpec,
    SamplingConfig,
    TransformersEngine,
    build_engine,
    repeat_prompts,
    stop_token_ids,
)
from tests.rollout import fakes

SAMPLED = SamplingConfig(temperature=0.8, top_p=0.9, max_new_tokens=8)
GREEDY = SamplingConfig(temperature=0.0, max_new_tokens=8)
HOT = SamplingConfig(temperature=1.5, top_p=1.0, max_new_tokens=8)  # the whole distribution: no top-k cut


@pytest.fixture(scope="module")
def setup():
    tokenizer = load_tokenizer("lit-align/tiny-sft")
    model = load_policy(ModelSpec())
    dm = PromptDataModule(source=DataSource(num_rows=4, num_val_rows=4), batch_size=2)
    dm.setup("fit")
    batch = repeat_prompts(next(iter(dm.val_dataloader())), 3)
    return model, batch, stop_token_ids(model, tokenizer)


def _generate(model, batch, sampling, stops, seed):
    """transformers ``generate`` called directly, as a user would, with the engine's sampling settings."""
    torch.manual_seed(seed)
    args = {} if sampling.temperature == 0 else {"temperature": sampling.temperature, "top_p": sampling.top_p}
    out = model.generate(
        input_ids=batch["input_ids"],
        attention_mask=batch["attention_mask"],
        do_sample=sampling.temperature > 0,
        top_k=0,
        max_new_tokens=sampling.max_new_tokens,
        pad_token_id=0,
        eos_token_id=stops,
        **args,
    )
    return out[:, batch["input_ids"].shape[1] :]


def _engine_ids(engine, model, batch, sampling, stops, seed, version=None):
    torch.manual_seed(seed)
    rollout = engine.rollout(model, batch, sampling, pad_token_id=0, stop_ids=stops, version=version)
    return rollout.completion_ids


def _counted(ids, stops):
    """Tokens up to and including the first stop token: what a rollout keeps (the rest is padding)."""
    out = []
    for row in ids.tolist():
        kept = []
        for t in row:
            kept.append(t)
            if t in stops:
                break
        out.append(kept)
    return out


@pytest.mark.parametrize("sampling", [GREEDY, SAMPLED, HOT], ids=["greedy", "top-p", "temperature"])
def test_default_engine_gives_generates_tokens(setup, sampling):
    model, batch, stops = setup
    engine = build_engine(RolloutSpec())
    for seed in (0, 1):
        expected = _counted(_generate(model, batch, sampling, stops, seed), stops)
        assert _counted(_engine_ids(engine, model, batch, sampling, stops, seed), stops) == expected
    if sampling.temperature:  # the seed matters: another seed samples other tokens
        assert _counted(_engine_ids(engine, model, batch, sampling, stops, 1), stops) != _counted(
            _generate(model, batch, sampling, stops, 0), stops
        )


def test_bf16_copy_samples_like_generate_on_cast_weights_and_resyncs_after_a_step(setup):
    model, batch, stops = setup
    policy = copy.deepcopy(model)
    engine = TransformersEngine(RolloutSpec(dtype="bfloat16"))

    def cast(m):
        out = copy.deepcopy(m)
        for p in out.parameters():
            p.data = p.data.to(torch.bfloat16)
        return out

    got = _engine_ids(engine, policy, batch, SAMPLED, stops, 3, version=0)
    assert engine.copy is not None and next(engine.copy.parameters()).dtype == torch.bfloat16
    assert all(not b.is_floating_point() or b.dtype == torch.float32 for b in engine.copy.buffers())  # rotary freqs
    assert _counted(got, stops) == _counted(_generate(cast(policy), batch, SAMPLED, stops, 3), stops)
    with torch.no_grad():  # an optimizer step that changes what the model says
        for p in policy.parameters():
            p.add_(torch.randn_like(p) * 0.5)
    fresh = _counted(_generate(cast(policy), batch, GREEDY, stops, 0), stops)
    stale = _counted(_engine_ids(engine, policy, batch, GREEDY, stops, 0, version=0), stops)  # same version: no sync
    assert stale != fresh
    assert _counted(_engine_ids(engine, policy, batch, GREEDY, stops, 0, version=1), stops) == fresh


def test_copy_refuses_quantized_parameters(setup):
    model, batch, stops = setup

    class Params4bit(torch.nn.Parameter):  # named like bitsandbytes' 4-bit parameter
        pass

    quantized = torch.nn.Linear(2, 2)
    quantized.weight = Params4bit(quantized.weight.data)
    with pytest.raises(ConfigError, match=r"model.init_args.rollout.dtype.*quantized"):
        TransformersEngine(RolloutSpec(dtype="bfloat16")).sync(quantized)


def test_engine_by_import_path_and_bad_names():
    assert isinstance(build_engine(RolloutSpec(engine="tests.rollout.fakes.FixedEngine")), fakes.FixedEngine)
    with pytest.raises(ConfigError, match="rollout.engine.*RolloutEngine subclass"):
        build_engine(RolloutSpec(engine="torch.nn.Linear"))
    with pytest.raises(ConfigError, match="rollout.max_model_len: is a vLLM setting"):
        RolloutSpec(max_model_len=512)
    with pytest.raises(ConfigError, match="rollout.engine.*cannot import"):
        build_engine(RolloutSpec(engine="no_such_package.Engine"))
    if "vllm" not in sys.modules:
        with pytest.raises(ConfigError, match="vllm is not installed"):
            build_engine(RolloutSpec(engine="vllm"), "lit-align/tiny-sft")


def test_grpo_samples_with_a_plugged_in_engine_synced_at_each_step(tmp_path):
    """The objective is unchanged: its rollouts come from the engine, which is asked to sync after every step."""
    from lightning import Trainer

    fakes.FixedEngine.versions, fakes.FixedEngine.syncs = [], 0
    module = GRPO(
        completions_per_prompt=2,
        sampling=SamplingConfig(max_new_tokens=4),
        rollout=RolloutSpec(engine="tests.rollout.fakes.FixedEngine"),
        log_samples_every_n_steps=1,
        no_signal_patience=0,
    )
    dm = PromptDataModule(source=DataSource(num_rows=8, num_val_rows=2), batch_size=2)
    trainer = Trainer(
        max_steps=3,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        default_root_dir=tmp_path,
    )
    trainer.fit(module, dm)
    assert fakes.FixedEngine.versions == [0, 1, 2] and fakes.FixedEngine.syncs == 3
    samples = [json.loads(line) for line in (tmp_path / "samples.jsonl").read_text().splitlines()]
    assert samples and all(s["completion"][0]["content"] == fakes.FIXED_TEXT for s in samples)


def test_vllm_adapter_requests_unpadded_prompts_pads_completions_and_syncs_merged_lora(setup, monkeypatch):
    model, batch, stops = setup
    monkeypatch.setitem(sys.modules, "vllm", fakes.fake_vllm)
    engine = build_engine(RolloutSpec(engine="vllm", dtype="bfloat16", gpu_memory_utilization=0.5), "/models/x")
    llm = fakes.FakeLLM.last
    assert llm.kwargs["model"] == "/models/x" and llm.kwargs["dtype"] == "bfloat16"
    assert llm.kwargs["gpu_memory_utilization"] == 0.5
    policy = load_policy(ModelSpec(finetune="lora", lora_r=4))
    with torch.no_grad():
        for name, p in policy.named_parameters():
            if "lora_B" in name:
                p.normal_()  # a trained adapter: merged weights differ from the base
    before = {n: p.clone() for n, p in policy.named_parameters()}
    rollout = engine.rollout(policy, batch, SAMPLED, pad_token_id=0, stop_ids=stops, version=0)
    # Sync: Hugging Face names of the base model, LoRA merged in, the policy itself untouched (bit for bit).
    base_names = set(policy.get_base_model().state_dict()) - {"lm_head.weight"}
    names = {n.replace(".base_layer", "") for n in base_names if "lora_" not in n}
    assert set(llm.loaded) == names and llm.resets == 1
    q = "model.layers.0.self_attn.q_proj"
    layer = policy.get_base_model().model.layers[0].self_attn.q_proj
    merged = (
        layer.base_layer.weight
        + layer.scaling["default"] * layer.lora_B["default"].weight @ layer.lora_A["default"].weight
    )
    torch.testing.assert_close(llm.loaded[q + ".weight"], merged)
    assert all(torch.equal(p, before[n]) for n, p in policy.named_parameters())
    # Requests: one per row without its left padding; the sampling settings passed through.
    prompts, params = llm.requests[0]
    for request, ids, mask in zip(prompts, batch["input_ids"], batch["attention_mask"], strict=True):
        assert request["prompt_token_ids"] == ids[mask.bool()].tolist()
    assert params[0]["temperature"] == 0.8 and params[0]["top_p"] == 0.9 and params[0]["max_tokens"] == 8
    assert params[0]["stop_token_ids"] == stops
    # Completions: row i got i tokens and a stop, right-padded to the longest.
    n = len(prompts)
    assert rollout.completion_ids.shape == (n, n)
    assert rollout.completion_mask.sum(-1).tolist() == list(range(1, n + 1))
    engine.rollout(policy, batch, SAMPLED, pad_token_id=0, stop_ids=stops, version=0)
    assert llm.resets == 1  # no optimizer step since the last sync: weights not sent again
