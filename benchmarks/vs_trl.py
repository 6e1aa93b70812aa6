"""lit-align against TRL on the same model folder, rows, batch and optimizer, interleaved, on this machine.

Each (tool, workload, run) is its own subprocess, so every peak RSS is its own; runs alternate between the tools
so that drift of the machine hits both alike. TRL is an optional benchmark dependency (``pip install
trl==1.16.0``); without it only lit-align is measured.

    python benchmarks/vs_trl.py                                  # every workload, 3 runs per tool
    python benchmarks/vs_trl.py --workloads dpo-26m dpo-26m-mix --runs 6
    python benchmarks/vs_trl.py --workloads dpo-26m --precision bf16-mixed
    python benchmarks/vs_trl.py --workloads grpo-26m --rollout-dtype bfloat16   # lit-align samples with a bf16 copy

Both tools do the same fp32 work by default: TRL's CPU defaults (bf16 autocast, gradient checkpointing) are
turned off; the reference is a frozen copy held in memory and scored once per step in both; AdamW (torch),
gradient clipping at 1.0, dropout off (LoRA dropout too: TRL's ``disable_dropout`` zeroes it). ``--precision
bf16-mixed`` runs lit-align with Lightning's bf16 autocast and TRL with ``bf16=True``; ``--gradient-checkpointing``
and ``--optimizer adamw8bit`` (bitsandbytes) turn the memory options on in both.

Workloads (tiny Llamas are random, with a 2048-token byte-level BPE vocabulary trained here; rows are made of
single-token pseudo-words so their token lengths are exact):

- ``dpo-3.7m``, ``dpo-26m``: 8 pairs/step, fixed lengths (48 + 48 and 100 + 100 tokens);
- ``dpo-26m-mix``: 8 pairs/step, prompt and completion lengths lognormal (median 100 tokens, clipped to
  16-512 each, so 32-1024 per sequence), as in public preference data, where padding matters; lit-align with
  ``group_by_length``;
- ``grpo-3.7m``: 2 prompts x 8 completions/step, 32 new tokens; ``grpo-26m``: 64 new tokens, KL beta 0.04;
- ``dpo-smollm2-lora``: SmolLM2-135M-Instruct (vocabulary 49,152, needs the ``real`` extra), LoRA r=16 on all
  linear layers, reference = adapter disabled in both, 8 pairs/step of 48 + 48 tokens.

Printed per workload and tool: the step time, median over runs of each run's median step (the first two steps are
warm-up; with the length mix, each run's mean step over one epoch of 16 batches, since length-grouped batches
differ by design), tokens/s (non-padding tokens of the policy forward: prompt + chosen + prompt + rejected, or
prompt + completion), the share of this machine's matmul peak that whole-row passes of the step would take
(``_flops_per_step``; above 100% means the tool skips work, e.g. by running shared prompts once), and the median
peak RSS; then lit-align's speed over TRL's and TRL's RSS over lit-align's.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MODELS = {"3.7m": (256, 4), "26m": (512, 8)}  # hidden size, layers (2048-token vocabulary, tied embeddings)
WORKLOADS = {
    "dpo-3.7m": {"kind": "dpo", "model": "3.7m", "lengths": (48, 48)},
    "dpo-26m": {"kind": "dpo", "model": "26m", "lengths": (100, 100)},
    "dpo-26m-mix": {"kind": "dpo", "model": "26m", "lengths": "lognormal", "steps": 17},
    "grpo-3.7m": {"kind": "grpo", "model": "3.7m", "new_tokens": 32, "beta": 0.0},
    "grpo-26m": {"kind": "grpo", "model": "26m", "new_tokens": 64, "beta": 0.04},
    "dpo-smollm2-lora": {"kind": "dpo", "model": "smollm2", "lengths": (48, 48), "lora": True},
}
PAIRS, PROMPTS, GROUP = 8, 2, 8
SMOLLM2 = "lit-align/smollm2-135m-instruct"


def reward(prompts: list, completions: list, **_: object) -> list[float]:
    """Share of distinct words in a completion: cheap, varied, the same function for both tools."""
    texts = [c if isinstance(c, str) else "".join(m["content"] for m in c) for c in completions]
    return [len(set(t.split())) / (1 + len(t.split())) for t in texts]


# ---------------------------------------------------------------------------------------------------- setup


def _pseudo_words(n: int, rng: random.Random) -> list[str]:
    syllables = [c + v for c in "bdfgklmnprstvz" for v in "aeiou"]
    words: set[str] = set()
    while len(words) < n:
        words.add("".join(rng.choice(syllables) for _ in range(rng.randint(2, 3))))
    return sorted(words)


def write_tokenizer(out: Path) -> None:
    """A 2048-token byte-level BPE trained on pseudo-words, saved as a Hugging Face fast tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    rng = random.Random(0)
    words = _pseudo_words(1500, rng)
    corpus = [" ".join(rng.choice(words) for _ in range(40)) for _ in range(4000)]
    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=2048, special_tokens=["<pad>", "<s>", "</s>"], show_progress=False)
    core.train_from_iterator(corpus, trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, bos_token="<s>", eos_token="</s>", pad_token="<pad>")
    tokenizer.save_pretrained(out)


def write_model(out: Path, hidden: int, layers: int) -> int:
    """A random tiny Llama with the benchmark tokenizer; returns its parameter count."""
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    write_tokenizer(out)
    tokenizer = AutoTokenizer.from_pretrained(out)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=hidden * 8 // 3 // 16 * 16,
        num_hidden_layers=layers,
        num_attention_heads=max(hidden // 64, 1),
        max_position_embeddings=2048,
        tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    model = LlamaForCausalLM(config)
    model.save_pretrained(out)
    return sum(p.numel() for p in model.parameters())


def single_token_words(tokenizer: object) -> list[str]:
    """Words that the tokenizer encodes as exactly one token after a space."""
    candidates = [t for t in tokenizer.get_vocab() if t.startswith("\u0120") and t[1:].isalpha()]
    words = [t[1:] for t in candidates]
    return [w for w in words if len(tokenizer(" " + w, add_special_tokens=False)["input_ids"]) == 1][:2000]


def _text(words: list[str], n: int, rng: random.Random) -> str:
    return "".join(" " + rng.choice(words) for _ in range(n))


def _lognormal(rng: random.Random) -> int:
    return min(512, max(16, int(rng.lognormvariate(4.6, 0.8))))  # median ~100 tokens


def write_rows(path: Path, model: str, workload: dict, n: int) -> float:
    """Pairs (DPO) or prompts (GRPO) of exact token lengths in ``model``'s tokenizer; returns tokens per step."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model)
    words, rng = single_token_words(tokenizer), random.Random(1)
    rows = []
    for _ in range(n):
        if workload["kind"] == "grpo":
            rows.append({"prompt": _text(words, 16, rng)})
            continue
        if workload["lengths"] == "lognormal":
            p, c, r = _lognormal(rng), _lognormal(rng), _lognormal(rng)
        else:
            p, (c, r) = workload["lengths"][0], (workload["lengths"][1],) * 2
        rows.append({"prompt": _text(words, p, rng), "chosen": _text(words, c, rng), "rejected": _text(words, r, rng)})
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    if workload["kind"] == "grpo":
        return (
            PROMPTS * GROUP * (16 + workload["new_tokens"])
        )  # prompt + completion (at most; random models rarely stop)
    count = sum(2 * len(r["prompt"].split()) + len(r["chosen"].split()) + len(r["rejected"].split()) + 2 for r in rows)
    return count / n * PAIRS  # + EOS after each completion


def matmul_peak_gflops(dtype: str = "float32", size: int = 2048, repeats: int = 6) -> float:
    """This machine's dense matmul rate (best of ``repeats``)."""
    import torch

    a = torch.randn(size, size, dtype=getattr(torch, dtype))
    b = torch.randn(size, size, dtype=getattr(torch, dtype))
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best / 1e9


# ---------------------------------------------------------------------------------------------------- children


def _optimizer_class(name: str) -> type:
    import torch

    if name == "adamw8bit":
        import bitsandbytes

        return bitsandbytes.optim.AdamW8bit
    return torch.optim.AdamW


class _Peak:
    @staticmethod
    def rss_mb() -> float:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_lit_align(model: str, data: str, workload: dict, steps: int, precision: str, options: dict) -> dict:
    """Step times of lit-align's DPO or GRPO under a Lightning Trainer."""
    import torch
    from lightning import Callback, Trainer

    from lit_align.data import DataSource, PairwiseDataModule, PromptDataModule
    from lit_align.objectives import DPO, GRPO
    from lit_align.rewards import RewardSpec
    from lit_align.roles.models import ModelSpec
    from lit_align.rollout import RolloutSpec, SamplingConfig

    class Timer(Callback):
        def __init__(self) -> None:
            self.times: list[float] = []

        def on_train_batch_start(self, *_) -> None:
            self.start = time.perf_counter()

        def on_train_batch_end(self, *_) -> None:
            self.times.append(time.perf_counter() - self.start)

    torch.manual_seed(0)
    # LoRA dropout 0: TRL's disable_dropout sets every nn.Dropout, the LoRA ones included, to p = 0.
    lora = {"finetune": "lora", "lora_r": 16, "lora_dropout": 0.0} if workload.get("lora") else {}
    policy = ModelSpec(name_or_path=model, gradient_checkpointing=options["gradient_checkpointing"], **lora)
    optimizer = lambda p: _optimizer_class(options["optimizer"])(p, lr=1e-6)  # noqa: E731
    if workload["kind"] == "dpo":
        module = DPO(policy=policy, reference="adapter" if lora else "copy", optimizer=optimizer)
        source = DataSource(path=data, num_rows=PAIRS * (steps + 1), num_val_rows=1)
        grouped = workload["lengths"] == "lognormal"
        dm = PairwiseDataModule(
            tokenizer=model, source=source, batch_size=PAIRS, max_length=2048, group_by_length=grouped
        )
        clip = {"gradient_clip_val": 1.0}
    else:
        module = GRPO(
            policy=policy,
            rewards=[RewardSpec("vs_trl.reward")],
            completions_per_prompt=GROUP,
            sampling=SamplingConfig(max_new_tokens=workload["new_tokens"], temperature=1.0),
            kl_coef=workload["beta"],
            rollout=RolloutSpec(dtype=options["rollout_dtype"]),
            log_samples_every_n_steps=0,
            optimizer=optimizer,
        )
        dm = PromptDataModule(
            tokenizer=model,
            source=DataSource(path=data, num_rows=PROMPTS * (steps + 1), num_val_rows=1),
            batch_size=PROMPTS,
        )
        clip = {}  # GRPO clips inside its own (manual) optimisation step, at max_grad_norm=1.0
    timer = Timer()
    trainer = Trainer(
        max_steps=steps,
        precision=precision,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[timer],
        limit_val_batches=0,
        **clip,
    )
    trainer.fit(module, dm)
    return {"times": timer.times, "peak_rss_mb": _Peak.rss_mb()}


def run_trl(model: str, data: str, workload: dict, steps: int, precision: str, options: dict) -> dict:
    """Step times of TRL's DPOTrainer or GRPOTrainer with the same work."""
    import datasets
    import torch
    from transformers import AutoTokenizer, TrainerCallback

    class Timer(TrainerCallback):
        def __init__(self) -> None:
            self.times: list[float] = []

        def on_step_begin(self, *_, **__) -> None:
            self.start = time.perf_counter()

        def on_step_end(self, *_, **__) -> None:
            self.times.append(time.perf_counter() - self.start)

    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(model)
    rows = datasets.load_dataset("json", data_files=data, split="train")
    timer = Timer()
    common = {
        "output_dir": tempfile.mkdtemp(),
        "max_steps": steps,
        "learning_rate": 1e-6,
        "lr_scheduler_type": "constant",
        "optim": "adamw_bnb_8bit" if options["optimizer"] == "adamw8bit" else "adamw_torch",
        "max_grad_norm": 1.0,
        "bf16": precision == "bf16-mixed",
        "gradient_checkpointing": options["gradient_checkpointing"],
        "use_cpu": True,
        "report_to": [],
        "logging_steps": 10_000,
        "save_strategy": "no",
        "disable_dropout": True,
        "dataloader_num_workers": 0,
        "seed": 0,
    }
    peft_config = None
    if workload.get("lora"):
        from peft import LoraConfig

        peft_config = LoraConfig(
            r=16, lora_alpha=32, lora_dropout=0.05, target_modules="all-linear", task_type="CAUSAL_LM"
        )
    if workload["kind"] == "dpo":
        from trl import DPOConfig, DPOTrainer

        rows = rows.select(range(PAIRS * (steps + 1)))
        args = DPOConfig(per_device_train_batch_size=PAIRS, max_length=2048, precompute_ref_log_probs=False, **common)
        trainer = DPOTrainer(
            model, args=args, train_dataset=rows, processing_class=tokenizer, callbacks=[timer], peft_config=peft_config
        )
    else:
        from trl import GRPOConfig, GRPOTrainer

        args = GRPOConfig(
            per_device_train_batch_size=PROMPTS * GROUP,
            num_generations=GROUP,
            max_completion_length=workload["new_tokens"],
            temperature=1.0,
            beta=workload["beta"],
            **common,
        )
        trainer = GRPOTrainer(
            model,
            reward_funcs=reward,
            args=args,
            train_dataset=rows,
            processing_class=tokenizer,
            callbacks=[timer],
            peft_config=peft_config,
        )
    trainer.train()
    return {"times": timer.times, "peak_rss_mb": _Peak.rss_mb()}


# ---------------------------------------------------------------------------------------------------- parent


def _flops_per_step(params: int, tokens: float, workload: dict) -> float:
    """Model matmul FLOPs of one step of whole-row passes.

    Per policy token 6 N (forward + backward; 4 N under LoRA, which computes no base-weight gradient), 2 N per
    reference token (DPO; GRPO when its KL weight is not 0), and for GRPO 2 N per token of generation (one
    cached forward per token; prompt and completion counted alike, an upper bound).
    """
    policy = 4 if workload.get("lora") else 6
    if workload["kind"] == "dpo":
        return (policy + 2) * params * tokens
    return (policy + (2 if workload["beta"] else 0) + 2) * params * tokens


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workloads", nargs="+", default=list(WORKLOADS), choices=list(WORKLOADS))
    parser.add_argument("--runs", type=int, default=3, help="runs per tool and workload")
    parser.add_argument("--steps", type=int, default=6, help="steps per run; the first two are warm-up")
    parser.add_argument("--precision", default="32-true", choices=["32-true", "bf16-mixed"])
    parser.add_argument(
        "--rollout-dtype",
        default="auto",
        choices=["auto", "bfloat16"],
        help="lit-align GRPO only: sample with the policy (auto) or a bf16 copy of it (model.init_args.rollout.dtype)",
    )
    parser.add_argument(
        "--gradient-checkpointing",
        action="store_true",
        help="both tools recompute each block in the backward pass (lit-align: policy.gradient_checkpointing)",
    )
    parser.add_argument(
        "--optimizer",
        default="adamw",
        choices=["adamw", "adamw8bit"],
        help="torch AdamW, or bitsandbytes' 8-bit AdamW in both (TRL: optim=adamw_bnb_8bit)",
    )
    parser.add_argument("--tools", nargs="+", default=["lit-align", "trl"], choices=["lit-align", "trl"])
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        tool, model, data, name = json.loads(args.child)
        run = run_lit_align if tool == "lit-align" else run_trl
        options = {k: getattr(args, k) for k in ("rollout_dtype", "gradient_checkpointing", "optimizer")}
        print("RESULT " + json.dumps(run(model, data, WORKLOADS[name], args.steps, args.precision, options)))
        return
    import torch
    import transformers

    try:
        import trl

        tools, trl_version = args.tools, trl.__version__
    except ImportError:
        tools, trl_version = ["lit-align"], "not installed"
    peak = matmul_peak_gflops("bfloat16" if args.precision == "bf16-mixed" else "float32")
    print(
        f"{os.cpu_count()} CPUs, {torch.get_num_threads()} torch threads, torch {torch.__version__}, transformers "
        f"{transformers.__version__}, TRL {trl_version}, precision {args.precision}, optimizer {args.optimizer}, "
        f"gradient checkpointing {args.gradient_checkpointing}, lit-align rollout dtype {args.rollout_dtype}, "
        f"matmul peak {peak:.0f} GFLOP/s"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")])}
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.workloads:
            workload = WORKLOADS[name]
            if workload["model"] == "smollm2":
                from lit_align.roles.paths import resolve_model_path

                model = str(resolve_model_path(SMOLLM2))
                params = 134_515_008  # SmolLM2-135M (tied embeddings)
            else:
                model = str(Path(tmp) / workload["model"])
                if not Path(model).exists():
                    params = write_model(Path(model), *MODELS[workload["model"]])
                    (Path(model) / "params.txt").write_text(str(params))
                params = int((Path(model) / "params.txt").read_text())
            data = str(Path(tmp) / f"{name}.jsonl")
            steps = workload.get("steps", args.steps)
            rows = (PAIRS if workload["kind"] == "dpo" else PROMPTS) * (steps + 1)
            tokens = write_rows(Path(data), model, workload, rows)
            results: dict[str, list[dict]] = {tool: [] for tool in tools}
            for _ in range(args.runs):
                for tool in tools:  # interleaved
                    child = json.dumps([tool, model, data, name])
                    cmd = [
                        sys.executable,
                        __file__,
                        "--child",
                        child,
                        "--steps",
                        str(steps),
                        "--precision",
                        args.precision,
                        "--rollout-dtype",
                        args.rollout_dtype,
                        "--optimizer",
                        args.optimizer,
                        *(["--gradient-checkpointing"] if args.gradient_checkpointing else []),
                    ]
                    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
                    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
                    if done.returncode or not lines:
                        raise SystemExit(f"{tool} {name} failed:\n{done.stderr[-3000:]}")
                    results[tool].append(json.loads(lines[-1][len("RESULT ") :]))
            warm = 1 if "steps" in workload else 2
            summary = statistics.mean if "steps" in workload else statistics.median
            print(f"{name} ({params / 1e6:.1f}M parameters, {args.runs} runs x {steps - warm} timed steps)")
            step = {}
            for tool, runs in results.items():
                step[tool] = statistics.median(summary(r["times"][warm:]) for r in runs)
                rss = statistics.median(r["peak_rss_mb"] for r in runs)
                share = _flops_per_step(params, tokens, workload) / step[tool] / (peak * 1e9)
                spread = [round(summary(r["times"][warm:]), 3) for r in runs]
                print(
                    f"  {tool:9s} step {step[tool]:7.3f} s (runs {spread})  {tokens / step[tool]:8.0f} tokens/s  "
                    f"{share:5.0%} of matmul peak  peak RSS {rss:6.0f} MB"
                )
                results[tool] = rss
            if "trl" in step:
                print(
                    f"  lit-align speed / TRL {step['trl'] / step['lit-align']:.2f}x, "
                    f"peak RSS TRL / lit-align {results['trl']:.0f} / {results['lit-align']:.0f} MB"
                )


if __name__ == "__main__":
    main()
