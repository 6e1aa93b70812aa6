"""Rollout tokens/s of the online objectives' engines on the GRPO workload of ``vs_trl.py``, on this machine.

    python benchmarks/generation.py                 # 26.2M Llama, 16 rows, 16-token prompts, 64 new tokens
    python benchmarks/generation.py --model 3.7m --new-tokens 32 --runs 7

Every completion runs to ``--new-tokens`` (EOS is never sampled: ``min_new_tokens``), so each row of the table
generates the same token count. Rows, interleaved run by run, median of ``--runs`` after one warm-up:

- ``generate fp32``: transformers ``generate`` on the policy, the default engine (``rollout.dtype: auto``);
- ``engine bfloat16``: the transformers engine sampling with a bf16 copy of the weights (``rollout.dtype:
  bfloat16``), including the weight sync an optimizer step would trigger;
- ``generate fp32 + static cache``: transformers' static KV cache, for comparison;
- ``decode loop fp32``: a bare loop of cached one-token forwards with multinomial sampling and nothing else, the
  floor a hand-written decode loop could reach.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
import vs_trl


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="26m", choices=list(vs_trl.MODELS))
    parser.add_argument("--rows", type=int, default=vs_trl.PROMPTS * vs_trl.GROUP)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    from transformers import AutoModelForCausalLM, DynamicCache

    from lit_align.rollout import RolloutSpec, SamplingConfig, TransformersEngine

    with tempfile.TemporaryDirectory() as tmp:
        vs_trl.write_model(Path(tmp), *vs_trl.MODELS[args.model])
        policy = AutoModelForCausalLM.from_pretrained(tmp).eval()
    n, r = args.rows, args.new_tokens
    torch.manual_seed(0)
    ids = torch.randint(3, policy.config.vocab_size, (n, 16))
    mask = torch.ones_like(ids)
    policy.generation_config.min_new_tokens = r  # every row generates exactly r tokens
    sampling = SamplingConfig(temperature=1.0, max_new_tokens=r)
    engine = TransformersEngine(RolloutSpec(dtype="bfloat16"))

    def engine_bf16() -> None:
        engine.sync(policy)  # as after an optimizer step
        engine.copy.generation_config.min_new_tokens = r
        engine.generate_ids(policy, ids, mask, sampling, pad_token_id=0, stop_ids=[2])

    def generate(**kwargs: object) -> None:
        with torch.no_grad():
            policy.generate(
                input_ids=ids, attention_mask=mask, do_sample=True, top_k=0, max_new_tokens=r, pad_token_id=0, **kwargs
            )

    @torch.no_grad()
    def decode_loop() -> None:
        out = policy(input_ids=ids, attention_mask=mask, cache=DynamicCache(config=policy.config), logits_to_keep=1)
        attention, position = mask, mask.sum(-1, keepdim=True) - 1
        for _ in range(r - 1):
            token = torch.multinomial(torch.softmax(out.logits[:, -1].float(), -1), 1)
            attention, position = torch.cat([attention, attention.new_ones(n, 1)], 1), position + 1
            out = policy(input_ids=token, attention_mask=attention, position_ids=position, cache=out.cache)

    rows = {
        "generate fp32": generate,
        "engine bfloat16": engine_bf16,
        "generate fp32 + static cache": lambda: generate(cache_implementation="static"),
        "decode loop fp32": decode_loop,
    }
    times: dict[str, list[float]] = {name: [] for name in rows}
    for run in rows.values():
        run()  # warm-up
    for _ in range(args.runs):
        for name, run in rows.items():
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    params = sum(p.numel() for p in policy.parameters())
    print(f"{params / 1e6:.1f}M parameters, {n} rows x {r} new tokens, {args.runs} runs, torch {torch.__version__}")
    base = statistics.median(times["generate fp32"])
    for name, values in times.items():
        median = statistics.median(values)
        print(
            f"  {name:30s} {median:6.3f} s  {n * r / median:6.0f} tokens/s  {base / median:4.2f}x  "
            f"(runs {[round(v, 3) for v in values]})"
        )


if __name__ == "__main__":
    main()
