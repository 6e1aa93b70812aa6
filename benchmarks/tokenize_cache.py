"""Tokenization time of an SFT file: the first run, the next run (the ``datasets.map`` cache), worker processes.

Writes synthetic two-turn conversations to a temporary JSONL file (a new file each time, so nothing is cached from
an earlier run of this script) and times ``SFTDataModule.setup`` with the embedded tokenizer:

    python benchmarks/tokenize_cache.py                  # 20,000 conversations
    python benchmarks/tokenize_cache.py --rows 100000 --num-proc 2

Printed: seconds for the first setup (load + tokenize + write the cache), the second setup of the same file (reads
the cache), and, with ``--num-proc N``, a first setup of a fresh copy of the file tokenized by N processes.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import datasets

from lit_align.data.sft import SFTDataModule
from lit_align.data.sources import DataSource


def _write(path: Path, rows: int) -> None:
    with path.open("w") as f:
        for i in range(rows):
            messages = [
                {"role": "user", "content": f"what is {i} + {i}?"},
                {"role": "assistant", "content": f"It is {2 * i}."},
                {"role": "user", "content": "and times two?"},
                {"role": "assistant", "content": f"That is {4 * i}."},
            ]
            f.write(json.dumps({"messages": messages}) + "\n")


def _setup_seconds(path: Path, num_proc: int | None) -> float:
    dm = SFTDataModule(source=DataSource(path=str(path)), num_proc=num_proc)
    start = time.perf_counter()
    dm.setup("fit")
    return time.perf_counter() - start


def main() -> None:
    """Run the timings and print one line each."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--num-proc", type=int, default=None)
    args = parser.parse_args()
    datasets.disable_progress_bars()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "chat.jsonl"
        _write(path, args.rows)
        print(f"{args.rows} two-turn conversations, embedded tokenizer")
        print(f"first run (tokenize, write the cache): {_setup_seconds(path, None):.2f} s")
        print(f"next run (read the cache):             {_setup_seconds(path, None):.2f} s")
        if args.num_proc:
            copy = Path(tmp) / "copy.jsonl"
            copy.write_bytes(path.read_bytes())
            print(f"first run, num_proc={args.num_proc}:                 {_setup_seconds(copy, args.num_proc):.2f} s")


if __name__ == "__main__":
    main()
