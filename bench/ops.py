"""Forward and backward time of learnsolve's sparse ops beside scipy.sparse,
torch.sparse and dense torch.

For each test matrix (the 1D Poisson matrix ``tridiag(-1, 2, -1)`` built with
``learnsolve.diags`` and the 2D Poisson matrix ``kron(I, T) + kron(T, I)`` of
a square grid, float64) the script times

* SpMV ``A @ x`` and SpMM ``A @ X`` (16 columns), differentiable in ``A`` and
  in ``x`` / ``X``;
* SpGEMM ``A @ A``: the first call on a pattern (with the symbolic phase) and
  the repeated call (symbolic pattern cached on the matrix);
* add ``A + B`` with ``B`` a matrix of the pattern of ``A^T`` (pattern union;
  first call and repeated call, whose union is cached);
* transpose ``A.T``: first call (builds the permutation) and repeated call
  (one gather);
* the sampled dense-dense product ``sampled_matmul(A, X, Y)``, 16 columns,
  differentiable in ``X`` and ``Y``;

with learnsolve at each requested thread count, and, at the first thread
count, the same ops with torch.sparse (the CSR tensor of ``A.to_torch()``) and
with dense torch where the dense matrix takes at most 2 GiB. scipy.sparse
(single-threaded; numpy for the sampled product) gives forward times.

Examples
--------
Full run (a few minutes on two cores), also writing the tables as markdown::

    python bench/ops.py --markdown /tmp/ops_bench.md

Smoke test with small matrices and few repetitions::

    python bench/ops.py --quick

Other options: ``--device cuda`` (synchronises before reading the clock; no
scipy column) and ``--threads 1 2 4``.

Notes
-----
*Forward* is the time of the op with autograd recording (the inputs require
grad, as in training). *Backward* is the time of the op's vector-Jacobian
product alone: ``torch.autograd.backward(out, grad_tensors=w)`` with a fixed
random ``w`` shaped like the output (its stored values for a sparse output),
so no loss function's own backward is counted; every repetition builds a
fresh graph, untimed. Each figure is the median over repetitions after one warm-up
call; the number of repetitions adapts to the cost of the call. The peers
have no pattern caches: their figure is shown on both the first and the
repeated row of an op. After the tables, the sizes of the gradients of one
SpMV and one SpGEMM backward on the last matrix are compared with ``nnz(A)``.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
import warnings
from dataclasses import dataclass
from typing import Callable

import numpy as np
import scipy
import torch

import learnsolve as ls

DENSE_LIMIT_BYTES = 2 * 2**30
COLUMNS = 16
NOT_RUN = "-"
FAILED = "n/a"

# (row label, learnsolve case, peer case)
ROWS = [
    ("SpMV A@x", "spmv", "spmv"),
    ("SpMM A@X", "spmm", "spmm"),
    ("SpGEMM A@A first", "spgemm_first", "spgemm"),
    ("SpGEMM A@A repeated", "spgemm", "spgemm"),
    ("add A+B first", "add_first", "add"),
    ("add A+B repeated", "add", "add"),
    ("transpose A.T first", "transpose_first", "transpose"),
    ("transpose A.T repeated", "transpose", "transpose"),
    ("sampled (XY^T)*mask(A)", "sampled", "sampled"),
]
PEERS = ("torch.sparse", "dense")


@dataclass
class Case:
    """One op of one implementation: ``forward()`` builds the output (and its
    graph); ``leaves`` are the tensors the backward fills (none: forward only)."""

    forward: Callable
    leaves: tuple = ()


@dataclass
class Timing:
    """How to time: the clock barrier, a time budget per figure (seconds) and
    the most repetitions of one figure."""

    sync: Callable[[], None]
    budget: float
    max_reps: int

    def median(self, once: Callable[[], float]) -> float:
        """Median of ``once()`` (which returns its timed seconds) after a warm-up call:
        at least 3 repetitions, or a single one for a call over the budget."""
        start = time.perf_counter()
        once()
        cost = max(time.perf_counter() - start, 1e-9)
        reps = 1 if cost > self.budget else int(min(self.max_reps, max(3, self.budget // cost)))
        return statistics.median(once() for _ in range(reps))

    def forward(self, case: Case) -> float:
        def once():
            self.sync()
            start = time.perf_counter()
            case.forward()
            self.sync()
            return time.perf_counter() - start
        return self.median(once)

    def backward(self, case: Case) -> float:
        weight = None

        def once():
            nonlocal weight
            values = _values(case.forward())
            if weight is None:
                weight = _fixed_random(values.shape, values)
            self.sync()
            start = time.perf_counter()
            torch.autograd.backward(values, grad_tensors=weight)
            self.sync()
            elapsed = time.perf_counter() - start
            for leaf in case.leaves:
                leaf.grad = None
            return elapsed
        return self.median(once)


# ----------------------------------------------------------------------------- inputs

def _fixed_random(shape, like: torch.Tensor, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=generator, dtype=like.dtype).to(like.device)


def _values(out) -> torch.Tensor:
    """The differentiable entries of an output: its stored values if sparse."""
    if isinstance(out, ls.CSRMatrix):
        return out.values
    if out.layout == torch.sparse_csr:
        return out.values()
    return out


def leaf(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.detach().clone().requires_grad_()


def _fresh(A: ls.CSRMatrix) -> ls.CSRMatrix:
    """A with the same arrays and values but a new, empty pattern cache."""
    return ls.CSRMatrix(A.crow_indices, A.col_indices, A.values, A.shape, check=False)


def poisson_1d(n: int, device) -> ls.CSRMatrix:
    return ls.diags([-1.0, 2.0, -1.0], [-1, 0, 1], shape=(n, n), dtype=torch.float64,
                    device=device)


def poisson_2d(m: int, device) -> ls.CSRMatrix:
    T = poisson_1d(m, device)
    I = ls.eye(m, dtype=torch.float64, device=device)
    return ls.kron(I, T) + ls.kron(T, I)


def dense_inputs(n: int, device) -> dict[str, torch.Tensor]:
    """The dense operands x (n), X and Y (n x COLUMNS), fixed by a seed."""
    like = torch.empty(0, dtype=torch.float64, device=device)
    return {"x": _fixed_random(n, like, 1), "X": _fixed_random((n, COLUMNS), like, 2),
            "Y": _fixed_random((n, COLUMNS), like, 3)}


# ----------------------------------------------------------------------------- cases

def learnsolve_cases(A: ls.CSRMatrix, inputs: dict) -> dict[str, Case]:
    values = leaf(A.values)
    A = A.with_values(values)
    values_t = leaf(A.T.values)
    B = A.T.with_values(values_t)
    x, X, Y = (leaf(inputs[k]) for k in ("x", "X", "Y"))

    def spgemm_first():
        F = _fresh(A)
        return F @ F

    return {
        "spmv": Case(lambda: A @ x, (values, x)),
        "spmm": Case(lambda: A @ X, (values, X)),
        "spgemm_first": Case(spgemm_first, (values,)),
        "spgemm": Case(lambda: A @ A, (values,)),
        "add_first": Case(lambda: _fresh(A) + _fresh(B), (values, values_t)),
        "add": Case(lambda: A + B, (values, values_t)),
        "transpose_first": Case(lambda: _fresh(A).T, (values,)),
        "transpose": Case(lambda: A.T, (values,)),
        "sampled": Case(lambda: ls.sampled_matmul(A, X, Y), (X, Y)),
    }


def torch_sparse_cases(A: ls.CSRMatrix, inputs: dict) -> dict[str, Case]:
    """torch.sparse CSR tensors; ``torch.sparse.mm`` for SpMV/SpMM keeps the
    gradient of ``A`` sparse (``S @ x`` would give a dense one)."""
    S = leaf(A.to_torch())
    S_t = leaf(A.T.to_torch())
    mask = A.to_torch().detach()
    x, X, Y = (leaf(inputs[k]) for k in ("x", "X", "Y"))
    return {
        "spmv": Case(lambda: torch.sparse.mm(S, x.unsqueeze(1)).squeeze(1), (S, x)),
        "spmm": Case(lambda: torch.sparse.mm(S, X), (S, X)),
        "spgemm": Case(lambda: S @ S, (S,)),
        "add": Case(lambda: S + S_t, (S, S_t)),
        "transpose": Case(lambda: S.t().to_sparse_csr(), (S,)),
        "sampled": Case(lambda: torch.sparse.sampled_addmm(mask, X, Y.T, beta=0.0), (X, Y)),
    }


def dense_cases(A: ls.CSRMatrix, inputs: dict) -> dict[str, Case]:
    D = leaf(A.to_dense())
    D_t = leaf(D.T.contiguous())
    mask = (D.detach() != 0).to(D.dtype)
    x, X, Y = (leaf(inputs[k]) for k in ("x", "X", "Y"))
    return {
        "spmv": Case(lambda: D @ x, (D, x)),
        "spmm": Case(lambda: D @ X, (D, X)),
        "spgemm": Case(lambda: D @ D, (D,)),
        "add": Case(lambda: D + D_t, (D, D_t)),
        "transpose": Case(lambda: D.T.contiguous(), (D,)),
        "sampled": Case(lambda: (X @ Y.T) * mask, (X, Y)),
    }


def scipy_cases(A: ls.CSRMatrix, inputs: dict) -> dict[str, Case]:
    """scipy.sparse, forward only; the sampled product is vectorised numpy.

    The matrix has int32 indices where they fit, as scipy's own constructors
    give it (learnsolve always stores int64)."""
    S = A.to_scipy()
    if S.nnz < 2**31 and max(S.shape) < 2**31:
        S.indices, S.indptr = S.indices.astype(np.int32), S.indptr.astype(np.int32)
    S_t = S.T.tocsr()
    row, col = A.row_indices().numpy(), A.col_indices.numpy()
    x, X, Y = (inputs[k].numpy() for k in ("x", "X", "Y"))
    return {
        "spmv": Case(lambda: S @ x),
        "spmm": Case(lambda: S @ X),
        "spgemm": Case(lambda: S @ S),
        "add": Case(lambda: S + S_t),
        "transpose": Case(lambda: S.T.tocsr()),
        "sampled": Case(lambda: np.einsum("ij,ij->i", X[row], Y[col])),
    }


# ----------------------------------------------------------------------------- measuring

def attempt(measure: Callable[[], float], label: str, notes: list[str]):
    """``measure()``, or FAILED with the reason added to ``notes``."""
    try:
        return measure()
    except Exception as error:  # a peer that cannot do an op must not stop the run
        notes.append(f"{label}: {type(error).__name__}: {str(error).splitlines()[0][:160]}")
        return FAILED


def implementations(A: ls.CSRMatrix, inputs: dict, threads: list[int], with_scipy: bool,
                    notes: list[str]) -> list[tuple]:
    """``(result key, thread count, cases, with backward)`` of every implementation:
    learnsolve at each thread count, the peers at the first one, scipy (forward only)."""
    impls = [(("learnsolve", count), count, learnsolve_cases(A, inputs), True)
             for count in threads]
    peers = [("torch.sparse", torch_sparse_cases)]
    if A.shape[0] * A.shape[1] * 8 <= DENSE_LIMIT_BYTES:
        peers.append(("dense", dense_cases))
    for name, make in peers:
        cases = attempt(lambda: make(A, inputs), f"{name} setup", notes)
        if cases != FAILED:
            impls.append(((name, threads[0]), threads[0], cases, True))
    if with_scipy:
        impls.append((("scipy", 1), 1, scipy_cases(A, inputs), False))
    return impls


def bench_matrix(A: ls.CSRMatrix, threads: list[int], timing: Timing, with_scipy: bool):
    """All figures for one matrix: ``{(impl, threads): {(case, kind): value}}`` and notes.

    Op by op, each implementation in turn: the figures compared in one row are
    taken minutes closer together than implementation by implementation, so
    drift in the machine's state (other load, memory fragmentation) weighs
    less on their ratios.
    """
    notes: list[str] = []
    impls = implementations(A, dense_inputs(A.shape[0], A.device), threads, with_scipy, notes)
    results = {key: {} for key, *_ in impls}
    ops_in_order = dict.fromkeys(case for _, ls_case, peer_case in ROWS
                                 for case in (ls_case, peer_case))
    for case in ops_in_order:
        for key, count, cases, backward in impls:
            if case not in cases:
                continue
            torch.set_num_threads(count)
            label = f"{key[0]} {case}"
            results[key][case, "fwd"] = attempt(lambda: timing.forward(cases[case]),
                                                f"{label} fwd", notes)
            if backward:
                results[key][case, "bwd"] = attempt(lambda: timing.backward(cases[case]),
                                                    f"{label} bwd", notes)
    torch.set_num_threads(threads[0])
    return results, notes


def gradient_sizes(A: ls.CSRMatrix) -> list[list[str]]:
    """Rows (op, implementation, layout, stored entries, entries / nnz(A), MiB) of
    the gradient of A after one backward of SpMV and of SpGEMM."""
    inputs = dense_inputs(A.shape[0], A.device)
    rows = []
    for op in ("spmv", "spgemm"):
        for name, make in (("learnsolve", learnsolve_cases), ("torch.sparse", torch_sparse_cases)):
            try:
                case = make(A, inputs)[op]
                _values(case.forward()).sum().backward()
                grad = case.leaves[0].grad
                if grad.layout == torch.sparse_csr:
                    stored, layout = grad.values().numel(), "sparse_csr"
                    arrays = (grad.values(), grad.col_indices(), grad.crow_indices())
                else:
                    stored, layout, arrays = grad.numel(), "values over A's pattern", (grad,)
                size = sum(t.numel() * t.element_size() for t in arrays) / 2**20
                rows.append([op, name, layout, f"{stored:,}", f"{stored / A.nnz:.2f}",
                             f"{size:.1f}"])
            except Exception as error:
                rows.append([op, name, f"{FAILED} ({type(error).__name__})", FAILED, FAILED,
                             FAILED])
    return rows


# ----------------------------------------------------------------------------- tables

def fit(sizes: list[int], seconds: list, smallest: int = 0,
        last: int | None = None) -> tuple[float, float] | None:
    """Least-squares ``(slope, intercept)`` of log(seconds) against log(size) over the
    sizes from ``smallest`` up, the ``last`` largest of them measured (all by
    default); None with fewer than two measured."""
    points = [(n, t) for n, t in zip(sizes, seconds)
              if n >= smallest and isinstance(t, float) and t > 0]
    points = points[-last:] if last else points
    if len(points) < 2:
        return None
    x, y = np.log([p[0] for p in points]), np.log([p[1] for p in points])
    slope, intercept = np.polyfit(x, y, 1)
    return float(slope), float(intercept)


def in_turns(runs, repeat: int, calls) -> list[list[float]]:
    """Each of ``runs`` in turns, ``repeat`` times after a warm-up call of each, timed
    over its number of ``calls``: the seconds per call of every turn, run by run."""
    for run in runs:
        run()
    times = [[] for _ in runs]
    for _ in range(repeat):
        for run, count, spent in zip(runs, calls, times):
            start = time.perf_counter()
            for _ in range(count):
                run()
            spent.append((time.perf_counter() - start) / count)
    return times


def paired(ours, peer, repeat: int, calls: int = 1) -> tuple[float, float, float]:
    """``ours()`` and ``peer()`` in turns, ``repeat`` times after a warm-up, each timed
    over ``calls`` calls: the fastest time of a call of each, and the median of the
    paired ratios."""
    mine, theirs = in_turns((ours, peer), repeat, (calls, calls))
    return min(mine), min(theirs), statistics.median(a / b for a, b in zip(mine, theirs))


def format_time(seconds) -> str:
    if isinstance(seconds, str):
        return seconds
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6)):
        if seconds >= scale:
            return f"{seconds / scale:.3g} {unit}"
    return f"{seconds * 1e9:.3g} ns"


def ratio(numerator, denominator) -> str:
    if isinstance(numerator, float) and isinstance(denominator, float) and denominator > 0:
        return f"{numerator / denominator:.2f}"
    return NOT_RUN


def table_rows(results: dict, threads: list[int]) -> tuple[list[str], list[list[str]]]:
    """Header and rows of one matrix's table."""
    first, last = threads[0], threads[-1]
    header = (["op"] + [f"ls fwd {t}t" for t in threads] + [f"ls bwd {t}t" for t in threads]
              + ["scipy fwd 1t"]
              + [f"{peer} {kind} {first}t" for peer in PEERS for kind in ("fwd", "bwd")]
              + ["ls/scipy fwd", f"fwd {first}t/{last}t", f"bwd/fwd {first}t"])

    def get(impl, count, case, kind):
        figures = results.get((impl, count), NOT_RUN)
        return figures if isinstance(figures, str) else figures.get((case, kind), NOT_RUN)

    rows = []
    for label, ls_case, peer_case in ROWS:
        fwd = {t: get("learnsolve", t, ls_case, "fwd") for t in threads}
        bwd = {t: get("learnsolve", t, ls_case, "bwd") for t in threads}
        scipy_fwd = get("scipy", 1, peer_case, "fwd")
        peers = [get(peer, first, peer_case, kind) for peer in PEERS for kind in ("fwd", "bwd")]
        speedup = ratio(fwd[first], fwd[last]) if last != first else NOT_RUN
        rows.append([label] + [format_time(v) for v in [*fwd.values(), *bwd.values(), scipy_fwd,
                                                          *peers]]
                    + [ratio(fwd[first], scipy_fwd), speedup, ratio(bwd[first], fwd[first])])
    return header, rows


def text_table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def line(cells):
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                         for i, (c, w) in enumerate(zip(cells, widths)))
    return "\n".join([line(header), line(["-" * w for w in widths]), *map(line, rows)])


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |",
             "|" + "|".join([":---"] + ["---:"] * (len(header) - 1)) + "|"]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


LEGEND = ("ls = learnsolve, Nt = N threads (scipy and numpy are single-threaded; torch.sparse "
          "and dense at the first thread count). Forward with autograd recording; backward = "
          "the op's vector-Jacobian product alone (autograd.backward(out, w)). Median over repetitions after a warm-up. "
          f"'{NOT_RUN}': not run (dense matrix over 2 GiB, or no scipy on this device); "
          f"'{FAILED}': the implementation failed (reason below). Peers have no caches: the "
          "same figure stands on the first and repeated rows. B has the pattern of A^T. "
          "scipy's sampled product is numpy einsum over the entries.")


def machine_info(device: str) -> list[str]:
    cpu = platform.processor() or "unknown"
    if os.path.exists("/proc/cpuinfo"):
        with open("/proc/cpuinfo") as f:
            cpu = next((l.split(":", 1)[1].strip() for l in f if l.startswith("model name")),
                       cpu)
    lines = [f"torch {torch.__version__}, learnsolve {ls.__version__}, scipy {scipy.__version__},"
             f" numpy {np.__version__}, python {platform.python_version()}",
             f"CPU: {cpu}; {os.cpu_count()} logical CPUs; torch threads available: "
             f"{torch.get_num_threads()}; load average at start: "
             + " ".join(f"{load:.2f}" for load in os.getloadavg())]
    if device == "cuda":
        lines.append(f"GPU: {torch.cuda.get_device_name()}")
    return lines


# ----------------------------------------------------------------------------- main

def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="small matrices (1D N=4096, 2D 200x200) and few repetitions")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--markdown", metavar="PATH", help="also write the tables here")
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: CUDA is not available")
    if min(args.threads) < 1:
        parser.error("--threads: expected positive counts")
    return args


def matrices(quick: bool, device):
    """``(title, builder)`` of the benchmark matrices."""
    one_d = [4096] if quick else [32768, 4096]
    side = 200 if quick else 1000
    return ([(f"1D Poisson, N = {n}", lambda n=n: poisson_1d(n, device)) for n in one_d]
            + [(f"2D Poisson, {side}x{side} grid, N = {side * side}",
                lambda: poisson_2d(side, device))])


def main(argv=None) -> None:
    args = parse_args(argv)
    warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
    warnings.filterwarnings("ignore", message="Sparse invariant checks are implicitly disabled")
    sync = torch.cuda.synchronize if args.device == "cuda" else (lambda: None)
    timing = Timing(sync, budget=0.2 if args.quick else 0.6, max_reps=5 if args.quick else 30)
    started = time.perf_counter()
    info = machine_info(args.device)
    print("\n".join(info), end="\n\n")
    markdown = ["# learnsolve op benchmark", "", *[f"- {line}" for line in info], "", LEGEND]
    for title, build in matrices(args.quick, args.device):
        A = build()
        results, notes = bench_matrix(A, args.threads, timing, args.device == "cpu")
        header, rows = table_rows(results, args.threads)
        heading = f"{title}, nnz = {A.nnz:,}, float64, {args.device}"
        print(heading, text_table(header, rows), *notes, "", sep="\n")
        markdown += ["", f"## {heading}", "", markdown_table(header, rows), "",
                     *[f"- {note}" for note in notes]]
    print(LEGEND, end="\n\n")
    grad_header = ["op", "impl", "grad of A", "stored entries", "entries/nnz(A)", "MiB"]
    grad_rows = gradient_sizes(A)  # A: the last (largest) matrix
    grad_heading = f"Gradient of A after one backward, {title}, nnz(A) = {A.nnz:,}"
    print(grad_heading, text_table(grad_header, grad_rows), "", sep="\n")
    loads = " ".join(f"{load:.2f}" for load in os.getloadavg())
    print(f"total time {time.perf_counter() - started:.0f} s; load average at end: {loads}")
    if args.markdown:
        markdown += ["", f"## {grad_heading}", "", markdown_table(grad_header, grad_rows), ""]
        with open(args.markdown, "w") as f:
            f.write("\n".join(markdown))


if __name__ == "__main__":
    main()
