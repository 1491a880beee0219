"""bench/distributed.py at a tiny size: it runs, two processes train as one, and it writes
its table."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch.distributed as dist

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))


@pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(),
                    reason="needs torch.distributed with gloo")
def test_bench_distributed_quick(tmp_path):
    import distributed
    out = tmp_path / "distributed.md"
    results = distributed.main(["--problems", "8", "--epochs", "2", "--problems-per-step", "4", "--repeat", "1",
                                "--markdown", str(out)])
    assert set(results) == {(4, 1), (4, 2)}
    assert distributed.max_difference(results[4, 2]["parameters"],
                                      results[4, 1]["parameters"]) < 1e-10
    rows = [line for line in out.read_text().splitlines() if line.startswith("| 4 |")]
    assert len(rows) == 2
