"""A GGUF file is a model path like any other: it trains, checkpoints and exports (SmolLM2's own GGUF file)."""

import json

import torch
from transformers import AutoModelForCausalLM

from lit_align.embedded.smollm2 import gguf_path
from lit_align.roles.tokenizer import load_tokenizer
from tests.helpers import REPO, run_in_process, write_jsonl


def test_fit_on_a_gguf_file_trains_checkpoints_and_exports(tmp_path, smollm2):
    gguf = str(gguf_path())
    rows = [{"prompt": [{"role": "user", "content": f"What is {i} + 1?"}], "completion": [
        {"role": "assistant", "content": str(i + 1)}]} for i in range(4)]  # fmt: skip
    run_dir = tmp_path / "run"
    run = run_in_process(
        "fit", "--config", str(REPO / "recipes/sft.yaml"), "--model.init_args.policy.name_or_path", gguf,
        "--data.init_args.source.path", str(write_jsonl(tmp_path / "sft.jsonl", rows)),
        "--data.init_args.batch_size", "2", "--trainer.max_steps", "1", "--trainer.enable_progress_bar", "false",
        "--trainer.default_root_dir", str(run_dir),
    )  # fmt: skip
    assert run.code == 0, run.stderr[-3000:]
    assert (run_dir / "checkpoints/last.ckpt").is_file()
    exported = run_dir / "hf_model"
    assert "quantization_config" not in json.loads((exported / "config.json").read_text())
    model = AutoModelForCausalLM.from_pretrained(exported).eval()
    base = AutoModelForCausalLM.from_pretrained(smollm2).eval()  # the same weights, de-quantized once
    ids = load_tokenizer(gguf)("What is 2 + 2?", return_tensors="pt").input_ids
    assert load_tokenizer(str(exported))("What is 2 + 2?").input_ids == ids[0].tolist()
    with torch.no_grad():
        moved = (model(input_ids=ids).logits - base(input_ids=ids).logits).abs().max()
    assert 0 < moved < 5  # one step moved the de-quantized weights, a little
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()  # still tied
