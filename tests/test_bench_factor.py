"""bench/factor.py runs end to end (trains, evaluates, reports) at a tiny size."""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import factor  # noqa: E402


def test_factor_benchmark_reports(tmp_path):
    path = tmp_path / "factor.md"
    report = factor.main(["--quick", "--markdown", str(path)])
    text = path.read_text()
    problems = {row[0] for row in report["rows"]}
    assert len(problems) == 6 and all(name in text for name in problems)
    methods = {row[2] for row in report["rows"]}
    assert {"none", "jacobi", "amg", "IC(0)", "IC(1)", "ILU(0)", "learned IC(0), pcg",
            "learned IC(0), sketched", "learned IC(0), low-frequency", "learned IC(1), pcg",
            "learned ILU(0), gmres", "learned ILU(0), inverse"} <= methods
    assert all(row[3] != "-" for row in report["rows"] if row[2] != "none")   # all converge
    for a, b in report["scale"].values():                        # A and 441 A: same counts
        assert a == b
    assert set(report["held_out"]) == {"lognormal", "jump 100"}
    assert any(line.startswith("held out") for line in report["summary"])
