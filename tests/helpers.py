"""Helpers shared by tests."""

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def run_lit_align(*args: str, cwd: Path = REPO, timeout: int = 300) -> subprocess.CompletedProcess:
    """Run the console script as a user would and capture its output."""
    return subprocess.run(
        [sys.executable, "-m", "lit_align.cli", *args], cwd=cwd, capture_output=True, text=True, timeout=timeout
    )
