"""DPO training throughput and peak memory on this machine, per reference mode.

Builds a randomly initialised Llama of the stated size with the embedded character tokenizer (no downloads),
writes synthetic pairs of a fixed length, and times real ``DPO`` training steps through a Lightning Trainer,
one subprocess per mode so each peak is its own:

    python benchmarks/dpo_throughput.py                       # all modes, default size
    python benchmarks/dpo_throughput.py --hidden 512 --layers 8 --seq-len 256 --steps 8
    python benchmarks/dpo_throughput.py --model lit-align/smollm2-135m-instruct   # a real model on word problems

``--model`` takes any model path instead (its own tokenizer) with pairs of ``--data`` (default: the embedded word
problems, whose pairs are ~90 tokens long in SmolLM2's chat template).

Printed per mode: pairs/s, tokens/s (non-padding tokens of chosen + rejected, policy forward and backward),
and the process's peak resident memory (ru_maxrss, includes Python and torch, about 0.5 GB on its own).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MODES = {
    "reference held (full FT, frozen copy)": {"finetune": "full", "reference": "copy"},
    "LoRA (reference = adapter disabled)": {"finetune": "lora", "reference": "adapter"},
    "precomputed reference (full FT)": {"finetune": "full", "reference": "precomputed"},
    "QLoRA nf4 (reference = adapter disabled)": {"finetune": "qlora", "reference": "adapter"},
}


def _write_model(out: Path, hidden: int, layers: int, seq_len: int) -> int:
    from transformers import LlamaConfig, LlamaForCausalLM

    from lit_align.embedded.build import build_tokenizer

    tokenizer = build_tokenizer()
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=hidden * 8 // 3 // 16 * 16,
        num_hidden_layers=layers,
        num_attention_heads=max(hidden // 64, 1),
        max_position_embeddings=seq_len + 8,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    model = LlamaForCausalLM(config)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return sum(p.numel() for p in model.parameters())


def _write_pairs(path: Path, n: int, seq_len: int) -> None:
    prompt_len = seq_len // 2
    rows = [
        {
            "prompt": "q" * (prompt_len - 1),
            "chosen": "a" * (seq_len - prompt_len - 1),
            "rejected": "b" * (seq_len - prompt_len - 1),
        }
        for _ in range(n)
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def run_mode(model: str, data: str, mode: dict, batch: int, steps: int) -> dict:
    import torch
    from lightning import Callback, Trainer

    from lit_align.data import DataSource, PairwiseDataModule
    from lit_align.objectives import DPO
    from lit_align.roles.models import ModelSpec

    class Timer(Callback):
        def __init__(self) -> None:
            self.times: list[float] = []

        def on_train_batch_start(self, *args) -> None:
            self.start = time.perf_counter()

        def on_train_batch_end(self, *args) -> None:
            self.times.append(time.perf_counter() - self.start)

    module = DPO(
        policy=ModelSpec(name_or_path=model, finetune=mode["finetune"], lora_r=16),
        reference=mode["reference"],
        optimizer=lambda p: torch.optim.AdamW(p, lr=1e-5),
    )
    source = DataSource(path=data, num_rows=batch * (steps + 1), num_val_rows=1)
    dm = PairwiseDataModule(tokenizer=model, source=source, batch_size=batch, max_length=10_000)
    timer = Timer()
    trainer = Trainer(
        max_steps=steps,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[timer],
        limit_val_batches=0,
    )
    trainer.fit(module, dm)
    rows = dm.rows["train"][:batch]
    tokens = sum(len(r["prompt_ids"]) * 2 + len(r["chosen_ids"]) + len(r["rejected_ids"]) for r in rows)
    timed = timer.times[1:]  # the first step includes one-off setup
    per_step = sum(timed) / len(timed)
    return {
        "pairs_per_s": batch / per_step,
        "tokens_per_s": tokens / per_step,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hidden", type=int, default=384)
    parser.add_argument("--layers", type=int, default=6)
    parser.add_argument("--seq-len", type=int, default=256, help="tokens of prompt + completion")
    parser.add_argument("--batch", type=int, default=4, help="pairs per step")
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--model", help="a model path or name instead of the random Llama")
    parser.add_argument("--data", default="lit-align/word-problems", help="pairs for --model")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        model, data, name = json.loads(args.child)
        print(json.dumps(run_mode(model, data, MODES[name], args.batch, args.steps)))
        return
    import torch

    with tempfile.TemporaryDirectory() as tmp:
        if args.model:
            model, data = args.model, args.data
            print(f"DPO, {model} on {data}, {args.batch} pairs/step, {torch.get_num_threads()} CPU threads, torch "
                  f"{torch.__version__}")  # fmt: skip
        else:
            model, data = str(Path(tmp) / "model"), str(Path(tmp) / "pairs.jsonl")
            n_params = _write_model(Path(model), args.hidden, args.layers, args.seq_len)
            _write_pairs(Path(data), args.batch * (args.steps + 1), args.seq_len)
            print(
                f"DPO, Llama {n_params / 1e6:.1f}M parameters (hidden {args.hidden}, {args.layers} layers), "
                f"sequence {args.seq_len} tokens, {args.batch} pairs/step, {torch.get_num_threads()} CPU threads, "
                f"torch {torch.__version__}"
            )
        for name in MODES:
            child = json.dumps([model, data, name])
            cmd = [sys.executable, __file__, "--child", child, "--batch", str(args.batch), "--steps", str(args.steps)]
            out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
            r = json.loads(out)
            print(
                f"  {name:40s} {r['pairs_per_s']:7.2f} pairs/s {r['tokens_per_s']:9.0f} tokens/s "
                f"peak RSS {r['peak_rss_mb']:7.0f} MB"
            )


if __name__ == "__main__":
    main()
