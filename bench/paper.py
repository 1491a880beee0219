"""The paper's tables 2 and 3 and its figure 3, measured on this machine, and the
application scaling figures of the other benchmarks.

Tables 2 and 3 (Nytko et al., section 3.2) time the forward pass and the
backward pass (the op's vector-Jacobian product alone, as ``bench/ops.py``
measures it) of five ops on the 1D Poisson matrix ``A_N = tridiag(-1, 2, -1)``
of eq. 29, N = 32 768, float64:

* SpMV ``A @ x``, differentiable in A and x;
* SpSpMM ``A @ A``, in A;
* SpDMM ``A @ X``, in A and X;
* Sp + Sp ``A + B`` with B a second matrix of A's pattern, in both;
* SpTRSV ``spsolve_triangular(tril(A), b)``, in the triangle and b.

Table 2 sets learnsolve beside scipy.sparse (the paper's "BLAS" column) on the
CPU and, where a GPU is present, learnsolve's CUDA kernels beside torch.sparse
(cuSPARSE; the paper used CuPy, which has no autograd, for the same role).
Table 3 sets each sparse op beside the same op on dense torch tensors (dense
matrix-vector product, dense-dense product, dense sum, dense triangular solve).
As in the paper, a figure is the total time of ``Iter.`` calls (1000 for SpMV,
100 for the others): here the median time of one call, measured after a
warm-up, times ``Iter.``. The CPU runs on ``--threads`` threads (default 1: the
paper's CPU figures are single-threaded, dense torch limited to one thread).
The paper's own figures (one core of an AMD EPYC 7413, one NVIDIA A100) stand
in the last columns.

Two departures, forced by memory, are marked in the tables:

* The paper's SpDMM multiplies by a dense N x N matrix X: at N = 32 768 that is
  8 GiB per dense operand in float64. Table 2 uses X with ``--spdmm-columns``
  columns (default 1024); figure 3 shows SpDMM with the square X up to
  N = ``--spdmm-largest``.
* A dense N x N float64 matrix at N = 32 768 takes 8 GiB. A dense figure is
  measured where the op's dense arrays (1 to 6 of them, table ``DENSE_ARRAYS``)
  fit in ``--dense-memory`` GiB and its time, predicted from the dense scaling
  run at smaller N, is below ``--dense-budget`` seconds a call; otherwise it is
  that prediction, marked ``≈``: the time at the largest size the scaling run
  measured times ``(N / size)^p``, with ``p`` the power of N in the op's work
  (3 for the dense product, whose backward is two more products; 2 for the
  others, each a product with, an outer product into or a solve with an N x N
  array; ``DENSE_ORDER``). The scaling table gives the measured slopes beside
  ``p``: between sizes that fit in cache and sizes that do not, a memory-bound
  dense op can look steeper than it is, and a fitted slope would carry that
  over to N = 32 768 many times over. The scaling run skips a size whose
  predicted call exceeds a third of ``--dense-budget``.

Figure 3: forward and backward time of SpMV, SpSpMM and SpDMM (X square) of
learnsolve against nnz(A_N), on the CPU (blue) and the GPU (green, where
present), circles forward and triangles backward; the slope of each curve is
that of log time against log nnz over its three largest sizes (below, the
time of a call is mostly fixed overhead).

The applications: ``bench/applications.py`` (figs. 5, 9, 12, 20),
``bench/gcn.py`` (fig. 16) and ``bench/dd.py`` (fig. 18) are run as they are,
writing their tables and plots to the results folder (on a GPU,
``applications.py --device cuda``; the other two have CPU figures only).

Examples
--------
Everything, into ``bench/results`` (tens of minutes on two cores)::

    python bench/paper.py

Tables and figure only::

    python bench/paper.py --part tables figure

Smoke test (small N, short budgets, into a temporary folder)::

    python bench/paper.py --quick --out /tmp/paper
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import scipy.sparse.linalg
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ops import (FAILED, NOT_RUN, Case, Timing, attempt, fit, format_time,  # noqa: E402
                 leaf, machine_info, markdown_table, poisson_1d, text_table)

import learnsolve as ls  # noqa: E402
from learnsolve.linalg import spsolve_triangular  # noqa: E402

BENCH = Path(__file__).resolve().parent
F64 = torch.float64
PASSES = ("fwd", "bwd")
SLOPE_POINTS = 3  # figure 3's slopes: over the three largest sizes (small ones are overhead)


@dataclass(frozen=True)
class Test:
    """One row pair of the paper's tables: the op's key, its name in table 2 and
    table 3 (None: not in that table), the calls per figure and the paper's
    figures (total seconds over ``iterations`` calls)."""

    op: str
    table2: str
    table3: str | None
    iterations: int
    paper: dict


# The paper's tables 2 and 3: {(column, pass): seconds for `iterations` calls}.
TESTS = [
    Test("spmv", "SpMV", "Mat-vec", 1000,
         {("cpu", "fwd"): 0.14, ("scipy", "fwd"): 0.09, ("gpu", "fwd"): 0.05,
          ("gpu peer", "fwd"): 0.05, ("cpu", "bwd"): 0.60, ("gpu", "bwd"): 0.20,
          ("dense", "fwd"): 143.44, ("dense", "bwd"): 1509.09,
          ("gpu dense", "fwd"): 2.99, ("gpu dense", "bwd"): 21.81}),
    Test("spspmm", "SpSpMM", "Mat-mat", 100,
         {("cpu", "fwd"): 0.37, ("scipy", "fwd"): 0.12, ("gpu", "fwd"): 0.07,
          ("gpu peer", "fwd"): 0.04, ("cpu", "bwd"): 4.89, ("gpu", "bwd"): 0.17,
          ("dense", "fwd"): 1455.16, ("dense", "bwd"): 4306.14,
          ("gpu dense", "fwd"): 7.67, ("gpu dense", "bwd"): 23.26}),
    Test("spdmm", "SpDMM", None, 100,
         {("cpu", "fwd"): 567.08, ("scipy", "fwd"): 415.88, ("gpu", "fwd"): 4.23,
          ("gpu peer", "fwd"): 2.77, ("cpu", "bwd"): 1203.33, ("gpu", "bwd"): 11.19}),
    Test("add", "Sp + Sp", "Mat add", 100,
         {("cpu", "fwd"): 0.07, ("scipy", "fwd"): 0.03, ("gpu", "fwd"): 0.01,
          ("gpu peer", "fwd"): 0.01, ("cpu", "bwd"): 0.13, ("gpu", "bwd"): 0.03,
          ("dense", "fwd"): 60.98, ("dense", "bwd"): 123.52,
          ("gpu dense", "fwd"): 0.94, ("gpu dense", "bwd"): 2.60}),
    Test("trsv", "SpTRSV", "Tri solve", 100,
         {("cpu", "fwd"): 0.03, ("scipy", "fwd"): 32.75, ("gpu", "fwd"): 4.71,
          ("gpu peer", "fwd"): 0.77, ("cpu", "bwd"): 13.46, ("gpu", "bwd"): 11.00,
          ("dense", "fwd"): 35.09, ("dense", "bwd"): 863.78,
          ("gpu dense", "fwd"): 0.70, ("gpu dense", "bwd"): 3.50}),
]
# N x N arrays alive while the dense op runs: (forward, backward).
DENSE_ARRAYS = {"spmv": (1, 2), "spspmm": (2, 5), "add": (3, 6), "trsv": (1, 3)}
# The power of N in the work of each dense op, forward and backward alike: N^3 for the
# product (its backward is two more), N^2 for the others (a product with or an outer
# product into an N x N array, a triangular solve).
DENSE_ORDER = {"spmv": 2, "spspmm": 3, "add": 2, "trsv": 2}

Factory = Callable[[], Case]


@dataclass(frozen=True)
class Predicted:
    """A dense time not measured: ``seconds`` predicted as the time at the largest
    size ``base`` of the dense scaling run times ``(N / base) ** order``."""

    seconds: float
    base: int
    order: int


def predict(op: str, sizes: list[int], times: list, n: int) -> Predicted | None:
    """The time of dense ``op`` at ``n`` from its largest measured size (None if none)."""
    measured = [(size, t) for size, t in zip(sizes, times) if isinstance(t, float)]
    if not measured:
        return None
    base, seconds = measured[-1]
    return Predicted(seconds * (n / base) ** DENSE_ORDER[op], base, DENSE_ORDER[op])


# ----------------------------------------------------------------------------- inputs

def _random(shape, device, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=generator, dtype=F64).to(device)


# ----------------------------------------------------------------------------- cases

def learnsolve_cases(A: ls.CSRMatrix, columns: int) -> dict[str, Factory]:
    """learnsolve's five ops on ``A``; SpDMM with an ``n x columns`` X."""
    n, device = A.shape[0], A.device

    def spmv():
        values, x = leaf(A.values), leaf(_random(n, device, 1))
        B = A.with_values(values)
        return Case(lambda: B @ x, (values, x))

    def spspmm():
        values = leaf(A.values)
        B = A.with_values(values)
        return Case(lambda: B @ B, (values,))

    def spdmm():
        values, X = leaf(A.values), leaf(_random((n, columns), device, 2))
        B = A.with_values(values)
        return Case(lambda: B @ X, (values, X))

    def add():
        first, second = leaf(A.values), leaf(_random(A.nnz, device, 3))
        B, C = A.with_values(first), A.with_values(second)
        return Case(lambda: B + C, (first, second))

    def trsv():
        lower = A.tril()
        values, b = leaf(lower.values), leaf(_random(n, device, 4))
        L = lower.with_values(values)
        return Case(lambda: spsolve_triangular(L, b, lower=True), (values, b))

    return {"spmv": spmv, "spspmm": spspmm, "spdmm": spdmm, "add": add, "trsv": trsv}


def scipy_cases(A: ls.CSRMatrix, columns: int) -> dict[str, Factory]:
    """scipy.sparse (int32 indices, as scipy builds them), forward only."""
    S = A.to_scipy()
    S.indices, S.indptr = S.indices.astype(np.int32), S.indptr.astype(np.int32)
    L = scipy.sparse.tril(S, format="csr")
    n = S.shape[0]
    x, X, b = _random(n, "cpu", 1).numpy(), _random((n, columns), "cpu", 2).numpy(), \
        _random(n, "cpu", 4).numpy()
    C = S.copy()
    C.data = _random(S.nnz, "cpu", 3).numpy()
    return {"spmv": lambda: Case(lambda: S @ x), "spspmm": lambda: Case(lambda: S @ S),
            "spdmm": lambda: Case(lambda: S @ X), "add": lambda: Case(lambda: S + C),
            "trsv": lambda: Case(lambda: scipy.sparse.linalg.spsolve_triangular(L, b,
                                                                                 lower=True))}


def torch_sparse_cases(A: ls.CSRMatrix, columns: int) -> dict[str, Factory]:
    """torch.sparse CSR tensors (cuSPARSE on a GPU)."""
    n, device = A.shape[0], A.device

    def spmv():
        S, x = leaf(A.to_torch()), leaf(_random(n, device, 1))
        return Case(lambda: torch.sparse.mm(S, x.unsqueeze(1)).squeeze(1), (S, x))

    def spspmm():
        S = leaf(A.to_torch())
        return Case(lambda: S @ S, (S,))

    def spdmm():
        S, X = leaf(A.to_torch()), leaf(_random((n, columns), device, 2))
        return Case(lambda: torch.sparse.mm(S, X), (S, X))

    def add():
        S = leaf(A.to_torch())
        C = leaf(A.with_values(_random(A.nnz, device, 3)).to_torch())
        return Case(lambda: S + C, (S, C))

    def trsv():
        L, b = leaf(A.tril().to_torch()), leaf(_random((n, 1), device, 4))
        return Case(lambda: torch.triangular_solve(b, L, upper=False).solution, (L, b))

    return {"spmv": spmv, "spspmm": spspmm, "spdmm": spdmm, "add": add, "trsv": trsv}


def dense_cases(A: ls.CSRMatrix, columns: int) -> dict[str, Factory]:
    """The dense counterparts of table 3; each factory builds its N x N matrices
    only when called, so one op's arrays are freed before the next op's."""
    n, device = A.shape[0], A.device

    def matrix() -> torch.Tensor:
        return A.to_dense().requires_grad_()

    def spmv():
        D, x = matrix(), leaf(_random(n, device, 1))
        return Case(lambda: D @ x, (D, x))

    def spspmm():
        D = matrix()
        return Case(lambda: D @ D, (D,))

    def add():
        D = matrix()
        C = A.with_values(_random(A.nnz, device, 3)).to_dense().requires_grad_()
        return Case(lambda: D + C, (D, C))

    def trsv():
        L, b = A.tril().to_dense().requires_grad_(), leaf(_random((n, 1), device, 4))
        return Case(lambda: torch.linalg.solve_triangular(L, b, upper=False), (L, b))

    return {"spmv": spmv, "spspmm": spspmm, "add": add, "trsv": trsv}


# ----------------------------------------------------------------------------- measuring

def timing_for(device: str, quick: bool) -> Timing:
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    return Timing(sync, budget=0.05 if quick else 0.5, max_reps=3 if quick else 20)


def measure(factory: Factory, timing: Timing, passes, label: str, notes: list[str]) -> dict:
    """``{pass: seconds per call}`` of one op (FAILED with a note if it fails)."""
    case = attempt(factory, f"{label} setup", notes)
    if case == FAILED:
        return dict.fromkeys(passes, FAILED)
    figures = {}
    for kind in passes:
        run = timing.forward if kind == "fwd" else timing.backward
        figures[kind] = attempt(lambda: run(case), f"{label} {kind}", notes)
    return figures


def dense_scaling(device: str, sizes: list[int], timing: Timing, budget: float,
                  notes: list[str]) -> dict:
    """``{(op, pass): [seconds at each size]}`` of the dense ops at small N; a size
    whose predicted call exceeds ``budget`` seconds is not run (NOT_RUN)."""
    times = {(op, kind): [] for op in DENSE_ARRAYS for kind in PASSES}
    for n in sizes:
        cases = dense_cases(poisson_1d(n, device), 0)
        for op, factory in cases.items():
            passes = []
            for kind in PASSES:
                guess = predict(op, sizes, times[op, kind], n)
                if guess is None or guess.seconds <= budget:
                    passes.append(kind)
                else:
                    times[op, kind].append(NOT_RUN)
            if passes:
                for kind, seconds in measure(factory, timing, passes, f"dense {op} N={n}",
                                             notes).items():
                    times[op, kind].append(seconds)
    return times


def free_memory(device: str) -> float:
    """Bytes of memory free for the dense arrays."""
    if device == "cuda":
        return float(torch.cuda.mem_get_info()[0])
    with open("/proc/meminfo") as meminfo:
        fields = dict(line.split(":", 1) for line in meminfo)
    return float(fields["MemAvailable"].split()[0]) * 1024


def table_figures(device: str, n: int, args, notes: list[str], scaling_sizes: list[int]) -> dict:
    """All figures of tables 2 and 3 on one device: ``{(impl, op, pass): value}``,
    seconds per call, a :class:`Predicted` dense figure, or a marker string."""
    timing = timing_for(device, args.quick)
    A = poisson_1d(n, device)
    impls = [("ours", learnsolve_cases(A, args.spdmm_columns), PASSES)]
    if device == "cpu":
        impls.append(("scipy", scipy_cases(A, args.spdmm_columns), ("fwd",)))
    else:
        impls.append(("peer", torch_sparse_cases(A, args.spdmm_columns), PASSES))
    # The first op a process times runs slow for a while after its warm-up call (its
    # first backward measured ~2.5x the steady time): one throwaway measurement first.
    measure(impls[0][1]["spmv"], timing, PASSES, f"{device} warm-up", notes)
    figures = {}
    for test in TESTS:  # op by op, so that the figures of a row are taken close together
        for name, cases, passes in impls:
            for kind, value in measure(cases[test.op], timing, passes,
                                       f"{device} {name} {test.op}", notes).items():
                figures[name, test.op, kind] = value
    scaling = dense_scaling(device, scaling_sizes, timing, args.dense_budget / 3, notes)
    budget = args.dense_memory * 2**30 if args.dense_memory else 0.5 * free_memory(device)
    dense = dense_cases(A, args.spdmm_columns)
    for op, arrays in DENSE_ARRAYS.items():
        runnable = []
        for kind, count in zip(PASSES, arrays):
            guess = predict(op, scaling_sizes, scaling[op, kind], n)
            if guess and count * n * n * 8 <= budget and guess.seconds <= args.dense_budget:
                runnable.append(kind)
            else:
                figures["dense", op, kind] = guess or NOT_RUN
        if runnable:
            figures.update({("dense", op, kind): value for kind, value in
                            measure(dense[op], timing, runnable, f"{device} dense {op}",
                                    notes).items()})
    return {"figures": figures, "scaling": scaling}


# ----------------------------------------------------------------------------- tables

def total(value, iterations: int) -> str:
    """A per-call figure as the paper's total over ``iterations`` calls, in seconds."""
    if isinstance(value, Predicted):
        return f"≈ {value.seconds * iterations:.3g}"
    if isinstance(value, float):
        return f"{value * iterations:.3g}"
    return value


def speedup(slow, fast) -> str:
    def seconds(value):
        return value.seconds if isinstance(value, Predicted) else value
    slow, fast = seconds(slow), seconds(fast)
    if isinstance(slow, float) and isinstance(fast, float) and fast > 0:
        return f"{slow / fast:.3g}x"
    return NOT_RUN


def paper_total(test: Test, column: str, kind: str) -> str:
    value = test.paper.get((column, kind))
    return NOT_RUN if value is None else f"{value:g}"


def table2(cpu: dict, gpu: dict | None, spdmm_columns: int) -> tuple[list[str], list[list[str]]]:
    header = ["test", "pass", "iter.", "CPU ours", "CPU scipy", "ours / scipy"]
    if gpu is not None:
        header += ["GPU ours", "GPU torch.sparse", "CPU / GPU"]
    header += ["paper CPU ours", "paper BLAS", "paper GPU ours", "paper CuPy"]
    rows = []
    for test in TESTS:
        for kind in PASSES:
            ours = cpu.get(("ours", test.op, kind), NOT_RUN)
            scipy_ = cpu.get(("scipy", test.op, kind), NOT_RUN)
            name = test.table2 + (f" (X: N x {spdmm_columns})" if test.op == "spdmm" else "")
            row = [name, kind, str(test.iterations), total(ours, test.iterations),
                   total(scipy_, test.iterations), speedup(ours, scipy_).rstrip("x")]
            if gpu is not None:
                gpu_ours = gpu.get(("ours", test.op, kind), NOT_RUN)
                row += [total(gpu_ours, test.iterations),
                        total(gpu.get(("peer", test.op, kind), NOT_RUN), test.iterations),
                        speedup(ours, gpu_ours)]
            row += [paper_total(test, column, kind)
                    for column in ("cpu", "scipy", "gpu", "gpu peer")]
            rows.append(row)
    return header, rows


def table3(cpu: dict, gpu: dict | None) -> tuple[list[str], list[list[str]]]:
    header = ["test", "pass", "iter.", "CPU sparse (ours)", "CPU dense torch", "speedup"]
    if gpu is not None:
        header += ["GPU sparse (ours)", "GPU dense torch", "GPU speedup"]
    header += ["paper CPU speedup", "paper GPU speedup"]
    rows = []
    for test in TESTS:
        if test.table3 is None:
            continue
        for kind in PASSES:
            row = [test.table3, kind, str(test.iterations)]
            for figures in (cpu, gpu) if gpu is not None else (cpu,):
                sparse = figures.get(("ours", test.op, kind), NOT_RUN)
                dense = figures.get(("dense", test.op, kind), NOT_RUN)
                row += [total(sparse, test.iterations), total(dense, test.iterations),
                        speedup(dense, sparse)]
            for dense, sparse in (("dense", "cpu"), ("gpu dense", "gpu")):
                row.append(speedup(test.paper[dense, kind], test.paper[sparse, kind]))
            rows.append(row)
    return header, rows


def scaling_table(sizes: list[int], scaling: dict) -> tuple[list[str], list[list[str]]]:
    header = (["dense op", "pass"] + [f"N = {n}" for n in sizes]
              + ["measured slope, 2 largest", "model order"])
    rows = []
    for (op, kind), times in scaling.items():
        line = fit(sizes, times, last=2)
        rows.append([op, kind] + [format_time(t) for t in times]
                    + [f"{line[0]:.2f}" if line else NOT_RUN, str(DENSE_ORDER[op])])
    return header, rows


# ----------------------------------------------------------------------------- figure 3

def figure3_times(device: str, args, notes: list[str]) -> dict:
    """``{(op, pass): (nnz list, seconds list)}`` of learnsolve's SpMV, SpSpMM and
    SpDMM (X square) over growing N."""
    timing = timing_for(device, args.quick)
    largest = args.largest if device == "cpu" else args.largest * 4
    sizes = {"spmv": _powers(2 ** 10 if not args.quick else 2 ** 8, largest),
             "spspmm": _powers(2 ** 10 if not args.quick else 2 ** 8, largest),
             "spdmm": _powers(2 ** 8 if not args.quick else 2 ** 6, args.spdmm_largest)}
    curves = {}
    for op, ns in sizes.items():
        nnz, times = [], {kind: [] for kind in PASSES}
        for n in ns:
            A = poisson_1d(n, device)
            figures = measure(learnsolve_cases(A, n)[op], timing, PASSES,
                              f"{device} {op} N={n}", notes)
            nnz.append(A.nnz)
            for kind in PASSES:
                times[kind].append(figures[kind])
        for kind in PASSES:
            curves[op, kind] = (nnz, times[kind])
    return curves


def _powers(smallest: int, largest: int, step: int = 4) -> list[int]:
    sizes = [smallest]
    while sizes[-1] * step <= largest:
        sizes.append(sizes[-1] * step)
    return sizes


def figure3_table(curves_by_device: dict) -> tuple[list[str], list[list[str]]]:
    header = ["device", "op", "pass", "nnz: seconds per call",
              f"slope, {SLOPE_POINTS} largest"]
    rows = []
    for device, curves in curves_by_device.items():
        for (op, kind), (nnz, times) in curves.items():
            line = fit(nnz, times, last=SLOPE_POINTS)
            points = ", ".join(f"{z:,}: {format_time(t)}" for z, t in zip(nnz, times))
            rows.append([device, op, kind, points, f"{line[0]:.2f}" if line else NOT_RUN])
    return header, rows


def plot_figure3(curves_by_device: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    titles = {"spmv": "SpMV  A @ x", "spspmm": "SpSpMM  A @ A", "spdmm": "SpDMM  A @ X (N x N)"}
    colours = {"cpu": "tab:blue", "cuda": "tab:green"}
    figure, axes = plt.subplots(1, 3, figsize=(13, 4), constrained_layout=True)
    for ax, (op, title) in zip(axes, titles.items()):
        for device, curves in curves_by_device.items():
            for kind, marker in (("fwd", "o"), ("bwd", "^")):
                nnz, times = curves[op, kind]
                points = [(z, t) for z, t in zip(nnz, times) if isinstance(t, float)]
                if points:
                    line = fit(*zip(*points), last=SLOPE_POINTS)
                    label = f"{device.upper()} {'forward' if kind == 'fwd' else 'backward'}"
                    if line:
                        label += f" (slope {line[0]:.2f})"
                    ax.loglog(*zip(*points), marker=marker, color=colours[device],
                              linestyle="-" if kind == "fwd" else "--", label=label)
        ax.set(title=title, xlabel="nnz(A)", ylabel="seconds per call")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    figure.suptitle("learnsolve, 1D Poisson A_N (eq. 29), float64 (paper fig. 3)")
    figure.savefig(path, dpi=120)
    plt.close(figure)


# ----------------------------------------------------------------------------- applications

APPLICATION_BENCHMARKS = [("applications", True), ("gcn", False), ("dd", False)]


def run_applications(devices: list[str], out: Path, quick: bool) -> list[str]:
    """Run the application benchmarks; return one line per run for the report."""
    lines = []
    for name, has_device in APPLICATION_BENCHMARKS:
        for device in devices:
            if device != "cpu" and not has_device:
                continue
            command = [sys.executable, str(BENCH / f"{name}.py"),
                       "--markdown", str(out / f"{name}-{device}.md"),
                       "--plot", str(out / f"{name}-{device}.png")]
            command += ["--device", device] if has_device else []
            command += ["--quick"] if quick else []
            print("+", " ".join(command), flush=True)
            start = time.perf_counter()
            status = subprocess.run(command).returncode
            result = "ok" if status == 0 else f"FAILED (exit {status})"
            lines.append(f"`bench/{name}.py` ({device}): {result}, "
                         f"{time.perf_counter() - start:.0f} s, [{name}-{device}.md]"
                         f"({name}-{device}.md), [{name}-{device}.png]({name}-{device}.png)")
    return lines


# ----------------------------------------------------------------------------- main

LEGEND = ("Seconds for `iter.` calls (the median of one call times `iter.`, as the paper "
          "reports totals). fwd: the op with autograd recording; bwd: its vector-Jacobian "
          "product alone. `≈`: a dense figure predicted from the dense scaling run (its "
          "matrices would not fit the memory budget, or a call would exceed the time "
          "budget): the time at the largest size measured times (N / size)^p, p = 3 for the "
          "product and 2 for the others (their work); "
          f"'{NOT_RUN}': not run; '{FAILED}': failed (reason below). The paper: "
          "one core of an AMD EPYC 7413, an NVIDIA A100; its GPU peer is CuPy, ours "
          "torch.sparse (cuSPARSE).")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", nargs="+", choices=("tables", "figure", "applications"),
                        default=["tables", "figure", "applications"])
    parser.add_argument("--quick", action="store_true",
                        help="N = 4096 for the tables, small scaling runs, short budgets")
    parser.add_argument("--cpu-only", action="store_true", help="no GPU columns")
    parser.add_argument("--threads", type=int, default=1,
                        help="CPU threads (default 1, as the paper)")
    parser.add_argument("--n", type=int, default=None, help="table size (default 32768)")
    parser.add_argument("--spdmm-columns", type=int, default=None,
                        help="columns of X in table 2's SpDMM (default 1024)")
    parser.add_argument("--largest", type=int, default=None,
                        help="largest N of fig. 3's SpMV and SpSpMM (default 2^20, GPU 4x "
                             "that; N grows 4x from 1024)")
    parser.add_argument("--spdmm-largest", type=int, default=None,
                        help="largest N of fig. 3's SpDMM with X N x N (default 4096; "
                             "N grows 4x from 256)")
    parser.add_argument("--dense-sizes", type=int, nargs="+", default=None,
                        help="N of the dense scaling run (default 1024 2048 4096 8192)")
    parser.add_argument("--dense-memory", type=float, default=None,
                        help="GiB the dense arrays of one op may take (default: half the "
                             "free memory)")
    parser.add_argument("--dense-budget", type=float, default=None,
                        help="longest predicted dense call to run, seconds (default 30)")
    parser.add_argument("--out", type=Path, default=BENCH / "results")
    args = parser.parse_args(argv)
    quick = args.quick
    defaults = {"n": 4096 if quick else 32768, "spdmm_columns": 64 if quick else 1024,
                "largest": 2 ** 14 if quick else 2 ** 20,
                "spdmm_largest": 512 if quick else 4096,
                "dense_sizes": [128, 256, 512] if quick else [1024, 2048, 4096, 8192],
                "dense_budget": 1.0 if quick else 30.0}
    for name, value in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    for name in ("threads", "n", "spdmm_columns", "largest", "spdmm_largest"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')}: expected a positive integer")
    if min(args.dense_sizes) < 2 or len(args.dense_sizes) < 2:
        parser.error("--dense-sizes: expected at least two sizes of at least 2")
    return args


def main(argv=None) -> Path:
    """Run the requested parts; return the markdown report's path."""
    args = parse_args(argv)
    warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
    warnings.filterwarnings("ignore", message="Sparse invariant checks are implicitly disabled")
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() and not args.cpu_only else [])
    tag = devices[-1]
    args.out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    info = machine_info(tag) + [f"CPU threads used: {args.threads}"]
    print("\n".join(info), end="\n\n", flush=True)
    report = ["# The paper's tables and figures on this machine (`bench/paper.py`)", "",
              *[f"- {line}" for line in info], ""]
    notes: list[str] = []

    if "tables" in args.part:
        results = {device: table_figures(device, args.n, args, notes, args.dense_sizes)
                   for device in devices}
        cpu, gpu = results["cpu"]["figures"], results.get("cuda", {}).get("figures")
        sections = [(f"Table 2: learnsolve against scipy.sparse{' and torch.sparse' if gpu else ''}"
                     f", A_N of eq. 29, N = {args.n:,}, float64", table2(cpu, gpu,
                                                                         args.spdmm_columns)),
                    (f"Table 3: sparse (learnsolve) against dense torch, N = {args.n:,}, "
                     "float64", table3(cpu, gpu))]
        sections += [(f"Dense scaling ({device}), seconds per call, from which the `≈` "
                      "figures are predicted", scaling_table(args.dense_sizes,
                                                            results[device]["scaling"]))
                     for device in devices]
        for title, (header, rows) in sections:
            print(title, text_table(header, rows), "", sep="\n", flush=True)
            report += [f"## {title}", "", markdown_table(header, rows), ""]
        report += [LEGEND, ""]

    if "figure" in args.part:
        curves = {device: figure3_times(device, args, notes) for device in devices}
        path = args.out / f"paper-fig3-{tag}.png"
        plot_figure3(curves, path)
        header, rows = figure3_table(curves)
        print("Figure 3", text_table(header, rows), "", sep="\n", flush=True)
        report += ["## Figure 3: scaling with nnz(A_N)", "", f"![figure 3]({path.name})", "",
                   markdown_table(header, rows), ""]

    if "applications" in args.part:
        report += ["## Application benchmarks", "",
                   *[f"- {line}" for line in run_applications(devices, args.out, args.quick)],
                   ""]

    loads = " ".join(f"{load:.2f}" for load in os.getloadavg())
    report += [*[f"- {note}" for note in notes],
               f"- total time {time.perf_counter() - started:.0f} s; load average at end: {loads}"]
    path = args.out / f"paper-{tag}.md"
    path.write_text("\n".join(report) + "\n")
    print(*notes, f"wrote {path}", sep="\n")
    return path


if __name__ == "__main__":
    main()
