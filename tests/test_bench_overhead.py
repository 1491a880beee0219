"""bench/overhead.py runs end to end at tiny sizes and writes its rows."""
from __future__ import annotations

import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import overhead  # noqa: E402

TIME = re.compile(r"^[\d.]+ (?:ns|us|ms|s)$")
RATIO = re.compile(r"^\d+\.\d\d$")


def test_overhead_benchmark_reports(tmp_path):
    path = tmp_path / "overhead.md"
    report = overhead.main(["--sizes", "8", "16", "--spmv-sizes", "100", "400", "--repeat", "2",
                            "--markdown", str(path)])
    text = path.read_text()
    assert text.startswith("# Overhead of small problems") and "torch " in text
    assert "One thread" in text and "OPENBLAS_NUM_THREADS=" in text
    rows = [line.strip("| ").split(" | ") for line in text.splitlines()
            if line.startswith("| 2D Poisson") or line.startswith("| forward")]
    assert rows == report["pcg"] + report["spmv"]
    assert [(row[0], row[1]) for row in report["pcg"]] == [
        ("2D Poisson 8², n = 64", "none"), ("2D Poisson 8², n = 64", "Jacobi"),
        ("2D Poisson 16², n = 256", "none"), ("2D Poisson 16², n = 256", "Jacobi")]
    for row in report["pcg"]:
        ours, scipy, differentiable = map(int, row[2].split(" / "))
        assert ours == scipy == differentiable > 1               # the same iterations
        assert TIME.match(row[3]) and TIME.match(row[4])
        assert RATIO.match(row[5]) and RATIO.match(row[6])
    assert [(row[0], row[1]) for row in report["spmv"]] == [
        ("forward, no grad", "100"), ("forward, no grad", "400"), ("forward + backward", "100")]
    for row in report["spmv"]:
        assert TIME.match(row[2]) and TIME.match(row[3])
        assert RATIO.match(row[4]) and RATIO.match(row[5])
