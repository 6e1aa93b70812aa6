"""``lit-align export``: a LoRA checkpoint becomes a Hugging Face folder that reproduces the module's greedy tokens."""

import json

import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM, AutoTokenizer

from lit_align.commands.export import load_module
from lit_align.embedded import embedded_model_path
from tests.helpers import run_lit_align

FAST = ["--trainer.max_steps", "3", "--trainer.val_check_interval", "2", "--trainer.enable_progress_bar", "false"]


def _greedy(model, ids):
    return model.generate(
        input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=False, max_new_tokens=6, pad_token_id=0
    )


def test_export_merged_and_adapter_reproduce_the_module(tmp_path):
    run = tmp_path / "run"
    fit = run_lit_align(
        "fit",
        "--config",
        "recipes/sft.yaml",
        "--config",
        "configs/strategy/lora.yaml",
        "--model.init_args.policy.name_or_path",
        "lit-align/tiny-sft",
        "--model.init_args.optimizer.init_args.lr",
        "0.01",  # large enough that the weights visibly move
        "--data.init_args.source.num_rows",
        "64",
        "--trainer.default_root_dir",
        str(run),
        *FAST,
    )
    assert fit.returncode == 0, fit.stderr[-2000:]
    config = run / "logs/version_0/config.yaml"
    ckpt = next(run.rglob("*.ckpt"))
    merged, adapter = tmp_path / "merged", tmp_path / "adapter"
    for out, merge in ((merged, "true"), (adapter, "false")):
        result = run_lit_align(
            "export", "--run_config", str(config), "--ckpt_path", str(ckpt), "--out", str(out), "--merge_adapter", merge
        )
        assert result.returncode == 0, result.stderr[-2000:]
        assert json.loads(result.stdout.strip().splitlines()[-1])["merged"] == (merge == "true")

    module = load_module(str(config), str(ckpt)).eval()
    tokenizer = AutoTokenizer.from_pretrained(merged)
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": "What is 23 + 45?"}], tokenize=False, add_generation_prompt=True
    )
    ids = tokenizer(text, add_special_tokens=False, return_tensors="pt").input_ids
    exported = AutoModelForCausalLM.from_pretrained(merged).eval()
    base = AutoModelForCausalLM.from_pretrained(embedded_model_path("lit-align/tiny-sft")).eval()
    with torch.no_grad():
        trained_logits = module.policy(input_ids=ids).logits
        assert torch.allclose(exported(input_ids=ids).logits, trained_logits, atol=1e-4)
        assert not torch.allclose(base(input_ids=ids).logits, trained_logits, atol=1e-3)  # the checkpoint was used
        assert torch.equal(_greedy(exported, ids), _greedy(module.policy, ids))
        with_adapter = PeftModel.from_pretrained(base, adapter).eval()
        assert torch.allclose(with_adapter(input_ids=ids).logits, trained_logits, atol=1e-4)
