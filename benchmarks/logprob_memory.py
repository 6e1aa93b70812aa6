"""Peak memory of the per-token log-prob gather at a real vocabulary, against B x T x V x 4 bytes.

The logits of a batch, (B, T, V) in float32, are what a causal LM's forward returns; what matters is what the
gather adds on top. Each variant runs in its own process (peak RSS, ru_maxrss, is per process), on logits that
already exist and require grad:

- ``row-wise``: :func:`lit_align.ops.logprobs.token_logps` (one row's normaliser alive at a time);
- ``whole-batch``: ``log_softmax(logits).gather(...)``, the plain formula, for comparison.

    python benchmarks/logprob_memory.py                     # SmolLM2's vocabulary (49,152), 8 rows of 256 tokens
    python benchmarks/logprob_memory.py --batch 16 --seq-len 512 --vocab 151936
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_child(variant: str, batch: int, seq_len: int, vocab: int) -> dict:
    import torch

    from lit_align.ops.logprobs import token_logps

    torch.manual_seed(0)
    logits = torch.randn(batch, seq_len, vocab, requires_grad=True)
    targets = torch.randint(vocab, (batch, seq_len))
    base = _peak_mb()
    if variant == "row-wise":
        logps = token_logps(logits, targets)
    else:
        logps = torch.log_softmax(logits, dim=-1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    forward = _peak_mb() - base
    logps.sum().backward()  # the gradient of the logits, (B, T, V), is allocated in both variants
    return {"forward_mb": forward, "forward_backward_mb": _peak_mb() - base}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=8, help="rows (a DPO step of 4 pairs stacks 8)")
    parser.add_argument("--seq-len", type=int, default=256)
    parser.add_argument("--vocab", type=int, default=49152)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run_child(args.child, args.batch, args.seq_len, args.vocab)))
        return
    full = args.batch * args.seq_len * args.vocab * 4 / 2**20
    print(
        f"log-prob gather on float32 logits ({args.batch}, {args.seq_len}, {args.vocab}): "
        f"B x T x V x 4 = {full:.0f} MB; peak RSS added on top of the logits:"
    )
    for variant in ("row-wise", "whole-batch"):
        cmd = [sys.executable, __file__, "--child", variant, "--batch", str(args.batch)]
        cmd += ["--seq-len", str(args.seq_len), "--vocab", str(args.vocab)]
        r = json.loads(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1])
        print(
            f"  {variant:12s} forward {r['forward_mb']:6.0f} MB ({r['forward_mb'] / full:4.2f} x BTV4)   "
            f"forward + backward {r['forward_backward_mb']:6.0f} MB ({r['forward_backward_mb'] / full:4.2f} x BTV4)"
        )


if __name__ == "__main__":
    main()
