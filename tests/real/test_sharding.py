"""FSDP2 with 2 CPU processes on SmolLM2 (tied embeddings, rotary buffers, a 49,152-token vocabulary)."""

import os
import re
import subprocess
import sys

from lit_align.embedded import SMOLLM2
from tests.helpers import ONE_THREAD, REPO


def test_only_rank_zero_reads_smollm2_and_every_rank_ends_with_its_weights(tmp_path, smollm2):
    script = ["tests/runtime/sharded_objectives.py", str(tmp_path), SMOLLM2]
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", *script],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, **ONE_THREAD},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    found = re.findall(r"skeleton-loading (\S+) (.+)", result.stdout)
    for name in ("DPO", "RewardModel"):
        assert (name, "rank0 skeleton=False") in found, result.stdout
        assert (name, "rank1 skeleton=True") in found, result.stdout
        assert (name, "filled=True") in found, result.stdout
