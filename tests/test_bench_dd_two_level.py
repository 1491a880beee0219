"""bench/dd_two_level.py runs end to end (trains, evaluates, reports) at a tiny size."""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import dd_two_level  # noqa: E402


def test_two_level_benchmark_reports(tmp_path):
    path = tmp_path / "dd.md"
    report = dd_two_level.main(["--quick", "--markdown", str(path)])
    text = path.read_text()
    assert text.count("nodes |") == 2 * 3          # one row per mesh, in each of two tables
    for solver in ("pcg", "gmres"):
        counts = report["counts"][solver]
        assert len(counts) == 3 * 7 and all(v is not None for v in counts.values())
        for (mesh, method), value in counts.items():              # two levels beat one
            if method != "one-level":
                assert value < counts[mesh, "one-level"], (mesh, method)
    assert all(factor < 1 for factor in report["factors"].values())
    assert any(line.startswith("GMRES, linear / nicolaides: median") for line in
               report["summary"])
    assert any(line.startswith("PCG, learned (seed 0) / quadratic (its start): median") for line
               in report["summary"])
    baselines = report["baselines"]                              # none, Jacobi, IC(0), AMG
    assert len(baselines) == 3 * 4 and all(v is not None for v in baselines.values())
    for (mesh, method), value in report["counts"]["pcg"].items():
        if method == "quadratic":
            assert value < baselines[mesh, "none"], mesh
    assert any(line.startswith("PCG, quadratic / IC(0): median") for line in report["summary"])
