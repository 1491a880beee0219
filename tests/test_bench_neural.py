"""bench/neural.py runs end to end (trains, evaluates held out, reports) at a tiny size."""
from __future__ import annotations

import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import neural  # noqa: E402


def test_neural_benchmark_reports(tmp_path):
    report = neural.main(["--quick", "--seeds", "1", "--epochs", "1", "--problems", "8",
                          "--out", str(tmp_path)])
    text = (tmp_path / "neural-cpu.md").read_text()
    assert (tmp_path / "neural-scaling.png").stat().st_size > 0
    assert report["families"] == ["lognormal", "jump", "FEM l_shape", "FEM disk",
                                  "FEM square_with_holes", "FEM rectangle"]
    assert all(family in text for family in report["families"])
    ratios = report["ratios"][0]
    assert len(ratios) == 6 and all(math.isfinite(r) and 0 < r < 2 for r in ratios)
    assert report["epoch"][True] > 0 and report["epoch"][False] > 0
    (small, a), (large, b) = report["memory"]
    assert large > small and b > a > 0
    assert "| ic0_rcm |" in text and "| ic1 |" in text and "| amg |" in text
    assert "Setup time against nnz" in text
