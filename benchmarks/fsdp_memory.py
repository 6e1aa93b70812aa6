"""Memory each process holds for DPO under FSDP2Strategy, with 1 and 2 CPU processes (gloo), full and QLoRA.

Builds a randomly initialised Llama of the stated size (as benchmarks/dpo_throughput.py does), trains DPO for a
few steps under ``lit_align.runtime.sharding.FSDP2Strategy`` launched with
``torch.distributed.run``, and prints per process:
bytes of model weights it holds (policy + frozen reference, local shards only), bytes of optimizer state, and
peak resident memory (ru_maxrss, includes Python and torch, about 0.5 GB on its own):

    python benchmarks/fsdp_memory.py
    python benchmarks/fsdp_memory.py --hidden 512 --layers 8
    python benchmarks/fsdp_memory.py --model lit-align/smollm2-135m-instruct   # a real model on word-problem pairs

Two processes run with ``ram_efficient_loading`` (only rank 0 reads the weights; the default) and, for full
fine-tuning, without it (every process loads whole models before sharding), so the load's share of the peak shows.

Each run is made twice (``--allocator both``, the default): with glibc's default settings, and with
``MALLOC_MMAP_THRESHOLD_=65536`` (``--allocator fixed``).
By default glibc raises its mmap threshold as large blocks are freed, so freed tensors stay in the process heap and
peak RSS follows what the allocator keeps, not what is live; a fixed threshold returns every large tensor to the
system when it is freed (slower: about 26% fewer DPO pairs/s for SmolLM2 on the 2-core machine), so peak RSS
follows live memory. ``live tensors`` is what the process's tensors hold at the end (weights, gradients,
optimizer state); ``peak RSS loaded`` is the peak once the models are loaded and sharded, before the first step.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

from dpo_throughput import _write_model, _write_pairs

MODES = {"full": "copy", "qlora": "adapter"}  # finetune -> reference mode


def _local_bytes(tensors) -> int:  # noqa: ANN001 (iterable of tensors or DTensors)
    from torch.distributed.tensor import DTensor

    total = 0
    for t in tensors:
        local = t.to_local() if isinstance(t, DTensor) else t
        total += local.numel() * local.element_size()
    return total


def run_child(model: str, data: str, finetune: str, steps: int, ram_efficient: bool) -> None:
    import torch
    import torch.distributed as dist
    from lightning import Callback, Trainer

    from lit_align.data import DataSource, PairwiseDataModule
    from lit_align.objectives import DPO
    from lit_align.roles.models import ModelSpec
    from lit_align.runtime.sharding import FSDP2Strategy

    module = DPO(
        policy=ModelSpec(name_or_path=model, finetune=finetune, lora_r=16),
        reference=MODES[finetune],
        optimizer=lambda p: torch.optim.AdamW(p, lr=1e-5),
    )

    class LoadPeak(Callback):  # peak RSS once the models are loaded and sharded, before the first step
        def on_train_start(self, *args) -> None:
            self.peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    load_peak = LoadPeak()
    source = DataSource(path=data, num_rows=4 * (steps + 1), num_val_rows=1)
    dm = PairwiseDataModule(tokenizer=model, source=source, batch_size=2, max_length=10_000)
    trainer = Trainer(
        strategy=FSDP2Strategy(ram_efficient_loading=ram_efficient),
        accelerator="cpu",
        devices=int(os.environ.get("LOCAL_WORLD_SIZE", "1")),
        max_steps=steps,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        callbacks=[load_peak],
    )
    trainer.fit(module, dm)
    optimizer = trainer.optimizers[0]
    state = [v for s in optimizer.state.values() for v in s.values() if isinstance(v, torch.Tensor)]
    grads = [p.grad for p in module.parameters() if p.grad is not None]
    mine = {
        "weights_mb": _local_bytes(module.parameters()) / 2**20,
        "live_mb": (_local_bytes(module.parameters()) + _local_bytes(state) + _local_bytes(grads)) / 2**20,
        "optimizer_mb": _local_bytes(state) / 2**20,
        "load_peak_mb": load_peak.peak_mb,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    everyone = [None] * dist.get_world_size()
    dist.all_gather_object(everyone, mine)
    if dist.get_rank() == 0:
        print("RESULT " + json.dumps(everyone), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hidden", type=int, default=384)
    parser.add_argument("--layers", type=int, default=6)
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--model", help="a model path or name instead of the random Llama")
    parser.add_argument("--data", default="lit-align/word-problems", help="pairs for --model")
    parser.add_argument("--allocator", choices=["both", "default", "fixed"], default="both")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        model, data, finetune, ram_efficient = json.loads(args.child)
        run_child(model, data, finetune, args.steps, ram_efficient)
        return
    import torch

    with tempfile.TemporaryDirectory() as tmp:
        if args.model:
            model, data = args.model, args.data
            print(f"DPO under FSDP2Strategy on CPU (gloo), {model} on {data}, torch {torch.__version__}; per process:")
        else:
            model, data = str(Path(tmp) / "model"), str(Path(tmp) / "pairs.jsonl")
            n_params = _write_model(Path(model), args.hidden, args.layers, args.seq_len)
            _write_pairs(Path(data), 4 * (args.steps + 1), args.seq_len)
            print(
                f"DPO under FSDP2Strategy on CPU (gloo), Llama {n_params / 1e6:.1f}M parameters (hidden "
                f"{args.hidden}, {args.layers} layers), sequence {args.seq_len} tokens, torch {torch.__version__}; "
                "per process:"
            )
        runs = [(f, 1, True) for f in MODES] + [(f, 2, True) for f in MODES] + [("full", 2, False)]
        allocators = {"default": {}, "fixed": {"MALLOC_MMAP_THRESHOLD_": "65536"}}
        for name, allocator in allocators.items():
            if args.allocator not in ("both", name):
                continue
            print(f"  allocator: {' '.join(f'{k}={v}' for k, v in allocator.items()) or 'glibc defaults'}")
            for finetune, procs, ram_efficient in runs:
                child = json.dumps([model, data, finetune, ram_efficient])
                cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(procs), __file__]
                cmd += ["--child", child, "--steps", str(args.steps)]
                env = {**os.environ, **allocator}
                out = subprocess.run(cmd, capture_output=True, text=True, check=True, env=env).stdout
                ranks = json.loads(out.split("RESULT ", 1)[1].splitlines()[0])
                loading = "" if procs == 1 else " rank-0 loading" if ram_efficient else " every rank loads"
                for rank, r in enumerate(ranks):
                    print(
                        f"    {finetune:5s} {procs} process(es){loading:17s} rank {rank}: weights "
                        f"{r['weights_mb']:7.1f} MB  optimizer state {r['optimizer_mb']:7.1f} MB  live tensors "
                        f"{r['live_mb']:7.1f} MB  peak RSS loaded {r['load_peak_mb']:6.0f} MB, trained "
                        f"{r['peak_rss_mb']:6.0f} MB"
                    )


if __name__ == "__main__":
    main()
