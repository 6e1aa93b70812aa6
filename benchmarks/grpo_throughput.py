"""GRPO throughput on CPU: completions per second and the generation / scoring / update split.

Runs the real ``GRPO`` module under a Lightning ``Trainer`` on the embedded task and reads the timings it logs
(``train/timing/*``), so the figures are what a ``lit-align fit`` run spends. Not a test: it prints figures.

    python benchmarks/grpo_throughput.py [--model lit-align/tiny-sft] [--prompts 16] [--group-size 8] [--steps 12]
    python benchmarks/grpo_throughput.py --model lit-align/smollm2-135m-instruct --data lit-align/word-problems \
        --reward lit_align.rewards.final_number --finetune lora --prompts 2 --max-new-tokens 40 --steps 3

Also printed: the process's peak resident memory (ru_maxrss, includes Python and torch, about 0.5 GB on its own).
"""

from __future__ import annotations

import argparse
import csv
import resource
import tempfile
import time
from pathlib import Path

import torch
from lightning import Trainer
from lightning.pytorch.loggers import CSVLogger

from lit_align.data import DataSource, PromptDataModule
from lit_align.objectives import GRPO
from lit_align.rewards import RewardSpec
from lit_align.roles.models import ModelSpec
from lit_align.rollout import SamplingConfig

PHASES = ("generation", "scoring", "update")


def main() -> None:
    """Run the benchmark and print one line per figure."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="lit-align/tiny-sft")
    parser.add_argument("--data", default="lit-align/arithmetic", help="prompts (the embedded task by default)")
    parser.add_argument("--reward", default="lit_align.rewards.arithmetic_answer", help="import path")
    parser.add_argument("--finetune", default="full", choices=["full", "lora", "qlora"])
    parser.add_argument("--prompts", type=int, default=16, help="prompts per step")
    parser.add_argument("--group-size", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=8)
    parser.add_argument("--steps", type=int, default=12, help="steps timed after the first (warm-up) step")
    args = parser.parse_args()
    torch.manual_seed(0)
    module = GRPO(
        policy=ModelSpec(name_or_path=args.model, finetune=args.finetune),
        rewards=[RewardSpec(args.reward)],
        completions_per_prompt=args.group_size,
        sampling=SamplingConfig(max_new_tokens=args.max_new_tokens),
        log_samples_every_n_steps=0,
        optimizer=lambda p: torch.optim.AdamW(p, lr=1e-5),
    )
    data = PromptDataModule(
        tokenizer=args.model,
        source=DataSource(path=args.data, num_rows=args.prompts * (args.steps + 2)),
        batch_size=args.prompts,
    )
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(
            max_steps=args.steps + 1,
            logger=CSVLogger(tmp),
            log_every_n_steps=1,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            limit_val_batches=0,
        )
        start = time.perf_counter()
        trainer.fit(module, data)
        wall = time.perf_counter() - start
        with open(next(Path(tmp).rglob("metrics.csv"))) as f:
            rows = [r for r in csv.DictReader(f) if r.get("train/timing/generation")][1:]  # drop the warm-up step
    per_phase = {p: sum(float(r[f"train/timing/{p}"]) for r in rows) / len(rows) for p in PHASES}
    step = sum(per_phase.values())
    completions = args.prompts * args.group_size
    params = sum(p.numel() for p in module.policy.parameters())
    print(
        f"GRPO, {args.model} ({params / 1e6:.2f}M parameters, {args.finetune}), {args.prompts} prompts x "
        f"{args.group_size} completions, max {args.max_new_tokens} new tokens, {torch.get_num_threads()} CPU threads, "
        f"torch {torch.__version__}; mean of {len(rows)} steps after a warm-up step"
    )
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"  completions/s {completions / step:8.1f}   step {step:6.3f} s   (fit wall {wall:.1f} s)", end="")
    print(f"   peak RSS {peak:.0f} MB")
    for p in PHASES:
        print(f"  {p:10s} {per_phase[p]:6.3f} s  {100 * per_phase[p] / step:5.1f}%")


if __name__ == "__main__":
    main()
