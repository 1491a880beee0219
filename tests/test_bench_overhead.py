"""bench/overhead.py runs end to end at tiny sizes and writes its rows."""
from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import overhead  # noqa: E402

TIME = re.compile(r"^[\d.]+ (?:ns|us|ms|s)$")
RATIO = re.compile(r"^\d+\.\d\d$")


def test_overhead_benchmark_reports(tmp_path):
    path = tmp_path / "overhead.md"
    report = overhead.main(["--sizes", "8", "16", "--spmv-sizes", "100", "400", "--repeat", "2",
                            "--dispatch-n", "64", "--dispatch-columns", "3",
                            "--markdown", str(path)])
    text = path.read_text()
    assert text.startswith("# Overhead: PCG and SpMV against scipy") and "torch " in text
    assert "One thread" in text and "OPENBLAS_NUM_THREADS=" in text
    assert "N = 64; target: ours/kernels <= 1.3" in text and "X of 3 columns" in text
    lines = text.splitlines()
    rows = [line.strip("| ").split(" | ") for line, below in zip(lines, lines[1:] + [""])
            if line.startswith("| ") and not below.startswith("|:--")]     # no header
    assert rows == report["pcg"] + report["spmv"] + report["breakdown"] + report["dispatch"]
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
    breakdown = report["breakdown"]
    assert [row[0].split(":")[0] for row in breakdown] == ["ours"] * 4 + ["native kernels alone",
                                                            "torch", "torch"]
    assert [row[1] for row in breakdown] == ["100"] * 5 + ["30", "100"]
    assert all(TIME.match(row[2]) and TIME.match(row[3]) for row in breakdown)
    assert [(row[0], row[1]) for row in report["dispatch"]] == [
        ("SpMV", "64"), ("SpSpMM", "64"), ("SpDMM (X: N x 3)", "64"), ("Sp + Sp", "64"),
        ("SpTRSV", "64")]
    assert [row[2] for row in report["dispatch"]] == [kernels for kernels, _ in
                                                      overhead.NATIVE.values()]
    for row in report["dispatch"]:
        assert TIME.match(row[3]) and TIME.match(row[4])
        assert RATIO.match(row[5]) and RATIO.match(row[6])


def test_native_kernels_must_give_the_api_gradients():
    """The comparison with the native kernels is refused where they compute something
    else than the public API (here: SpMV's backward without the gradient of x)."""
    A = overhead.paper.poisson_1d(20, "cpu")
    case = overhead.paper.learnsolve_cases(A, 1)["spmv"]()
    output = case.forward()
    weight = torch.ones_like(output)
    output.backward(weight)
    values, x = (leaf.detach() for leaf in case.leaves)
    native = overhead.below_autograd(overhead.spmv_kernels(A, values, x, weight))
    overhead.check_same("SpMV", output.detach(), case.leaves, native)

    def values_gradient_only():
        out, grads = native()
        return out, grads[:1]

    with pytest.raises(RuntimeError, match="SpMV: the native kernels do not give"):
        overhead.check_same("SpMV", output.detach(), case.leaves, values_gradient_only)
