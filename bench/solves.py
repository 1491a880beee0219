"""Forward and backward time of learnsolve's sparse solves beside scipy and dense torch.

For the 2D Poisson matrix ``A = kron(I, T) + kron(T, I)`` of an m x m grid
(float64) the script times

* the triangular solve ``L x = b`` with ``L = tril(A)``: learnsolve's
  ``spsolve_triangular`` (level analysis cached; its one-off cost shown in
  its own row) at each thread count, scipy's ``spsolve_triangular`` and
  dense ``torch.linalg.solve_triangular`` where the dense matrix fits;
* the direct solve ``A x = b``: learnsolve's ``spsolve`` (a SuperLU
  factorisation and a solve) against scipy's ``splu`` + ``solve`` with the
  same ordering (COLAMD), and the solve alone with a factorisation kept
  (``splu(A).solve(b)``, the training-loop case), beside dense
  ``torch.linalg.solve``;
* many small solves: 256 subdomain-sized systems (the 2D Poisson matrix of a
  16 x 16 grid with random positive diagonal shifts), factored once with
  ``splu_batched`` and solved together, against a Python loop over scipy
  ``splu`` objects and against torch's batched dense LU.

Backward is the vector-Jacobian product alone (``autograd.backward(x, w)``
for a fixed random ``w``), with respect to the matrix values and ``b``. For
the direct solve it reuses the forward's factors: a transposed solve and a
sampled product, no new factorisation.

Examples
--------
    python bench/solves.py --markdown bench/results/solves-cpu.md
    python bench/solves.py --quick
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as sla
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ops import (DENSE_LIMIT_BYTES, NOT_RUN, Case, Timing, _fresh, _leaf,  # noqa: E402
                 format_time, machine_info, markdown_table, poisson_2d, ratio, text_table)

import learnsolve as ls  # noqa: E402
from learnsolve.linalg import splu, splu_batched, spsolve, spsolve_triangular  # noqa: E402
from learnsolve.linalg.triangular import triangular_levels  # noqa: E402

def _rhs(n: int, columns: int | None = None, seed: int = 1) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    shape = (n,) if columns is None else (n, columns)
    return torch.randn(shape, generator=generator, dtype=torch.float64)


def _fits_dense(n: int) -> bool:
    return n * n * 8 <= DENSE_LIMIT_BYTES


def _scipy_int32(S):
    S = sp.csr_array(S)
    S.indices, S.indptr = S.indices.astype(np.int32), S.indptr.astype(np.int32)
    return S


# ----------------------------------------------------------------------------- rows

def measure(timing: Timing, case: Case, backward: bool):
    forward = timing.forward(case)
    return forward, (timing.backward(case) if backward else NOT_RUN)


def triangular_rows(A: ls.CSRMatrix, threads: list[int], timing: Timing):
    L = A.tril()
    n = L.shape[0]
    b = _rhs(n)
    rows = []
    analysis = Case(lambda: triangular_levels(_fresh(L).pattern, True))
    rows.append(["level analysis (once per pattern)", format_time(timing.forward(analysis)),
                 NOT_RUN])
    values, rhs = _leaf(L.values), _leaf(b)
    Lg = L.with_values(values)
    triangular_levels(Lg.pattern, True)
    Lg.pattern.transpose_arrays()
    for count in threads:
        torch.set_num_threads(count)
        case = Case(lambda: spsolve_triangular(Lg, rhs), (values, rhs))
        rows.append([f"learnsolve {count}t", *map(format_time, measure(timing, case, True))])
    torch.set_num_threads(threads[0])
    S = _scipy_int32(L.to_scipy())
    b_np = b.numpy()
    rows.append(["scipy spsolve_triangular",
                 format_time(timing.forward(Case(lambda: sla.spsolve_triangular(S, b_np)))),
                 NOT_RUN])
    if _fits_dense(n):
        D, rhs2 = _leaf(L.to_dense()), _leaf(b.unsqueeze(1))
        case = Case(lambda: torch.linalg.solve_triangular(D, rhs2, upper=False), (D, rhs2))
        rows.append([f"dense torch {threads[0]}t", *map(format_time, measure(timing, case, True))])
    return rows


def direct_rows(A: ls.CSRMatrix, threads: list[int], timing: Timing):
    n = A.shape[0]
    b = _rhs(n)
    values, rhs = _leaf(A.values), _leaf(b)
    Ag = A.with_values(values)
    torch.set_num_threads(threads[0])
    rows = []
    case = Case(lambda: spsolve(Ag, rhs), (values, rhs))
    rows.append(["learnsolve spsolve (factor + solve)",
                 *map(format_time, measure(timing, case, True))])
    lu = splu(Ag)
    case = Case(lambda: lu.solve(rhs), (values, rhs))
    rows.append(["learnsolve solve, factors kept", *map(format_time, measure(timing, case, True))])
    S = A.to_scipy().tocsc()
    b_np = b.numpy()
    rows.append(["scipy splu + solve (COLAMD)",
                 format_time(timing.forward(Case(lambda: sla.splu(S).solve(b_np)))), NOT_RUN])
    scipy_lu = sla.splu(S)
    rows.append(["scipy solve, factors kept",
                 format_time(timing.forward(Case(lambda: scipy_lu.solve(b_np)))), NOT_RUN])
    if _fits_dense(n):
        D, rhs2 = _leaf(A.to_dense()), _leaf(b)
        case = Case(lambda: torch.linalg.solve(D, rhs2), (D, rhs2))
        rows.append([f"dense torch.linalg.solve {threads[0]}t",
                     *map(format_time, measure(timing, case, True))])
    return rows


def subdomain_blocks(count: int, side: int, seed: int = 0) -> list[ls.CSRMatrix]:
    """``count`` Poisson matrices of a side x side grid with random diagonal shifts."""
    base = poisson_2d(side, "cpu")
    generator = torch.Generator().manual_seed(seed)
    diagonal = (base.col_indices == base.row_indices()).double()
    shifts = torch.rand(count, generator=generator, dtype=torch.float64)
    return [base.with_values(base.values + float(s) * diagonal) for s in shifts]


def batched_rows(count: int, side: int, threads: list[int], timing: Timing):
    blocks = subdomain_blocks(count, side)
    n = blocks[0].shape[0]
    b = _rhs(count * n)
    torch.set_num_threads(threads[0])
    rows = []
    leaves = [_leaf(B.values) for B in blocks]
    rhs = _leaf(b)
    with_grad = [B.with_values(v) for B, v in zip(blocks, leaves)]
    case = Case(lambda: splu_batched(with_grad).solve(rhs), (*leaves, rhs))
    rows.append(["learnsolve splu_batched + solve", *map(format_time, measure(timing, case, True))])
    lu = splu_batched(with_grad)
    case = Case(lambda: lu.solve(rhs), (*leaves, rhs))
    rows.append(["learnsolve solve, factors kept", *map(format_time, measure(timing, case, True))])
    scipy_blocks = [B.to_scipy().tocsc() for B in blocks]
    parts = [p.numpy() for p in torch.split(b, n)]
    rows.append(["scipy loop: splu + solve per block",
                 format_time(timing.forward(Case(lambda: [sla.splu(S).solve(p) for S, p in
                                                          zip(scipy_blocks, parts)]))), NOT_RUN])
    factors = [sla.splu(S) for S in scipy_blocks]
    rows.append(["scipy loop: solve per block, factors kept",
                 format_time(timing.forward(Case(lambda: [f.solve(p) for f, p in
                                                          zip(factors, parts)]))), NOT_RUN])
    dense = _leaf(torch.stack([B.to_dense() for B in blocks]))
    rhs3 = _leaf(b.reshape(count, n, 1))
    case = Case(lambda: torch.linalg.solve(dense, rhs3), (dense, rhs3))
    rows.append(["dense torch batched solve (LU + solve)",
                 *map(format_time, measure(timing, case, True))])
    lu_dense = torch.linalg.lu_factor(dense.detach())
    rows.append(["dense torch batched lu_solve, factors kept",
                 format_time(timing.forward(Case(lambda: torch.linalg.lu_solve(*lu_dense,
                                                                               rhs3.detach())))),
                 NOT_RUN])
    return rows


# ----------------------------------------------------------------------------- main

HEADER = ["implementation", "forward", "backward"]


def with_ratios(rows: list[list[str]], reference: str) -> list[list[str]]:
    """Adds 'fwd / reference fwd' and 'bwd / fwd' columns (from the formatted times)."""
    def seconds(text):
        if text == NOT_RUN:
            return NOT_RUN
        value, unit = text.split()
        return float(value) * {"s": 1.0, "ms": 1e-3, "us": 1e-6, "ns": 1e-9}[unit]
    ref = next((seconds(r[1]) for r in rows if r[0] == reference), NOT_RUN)
    return [r + [ratio(seconds(r[1]), ref), ratio(seconds(r[2]), seconds(r[1]))] for r in rows]


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small grids, few repetitions")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--sides", type=int, nargs="+", help="grid sides (default 100 300 1000)")
    parser.add_argument("--markdown", metavar="PATH", help="also write the tables here")
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    sides = args.sides or ([30, 60] if args.quick else [100, 300, 1000])
    timing = Timing(lambda: None, budget=0.2 if args.quick else 1.0,
                    max_reps=5 if args.quick else 20)
    started = time.perf_counter()
    info = machine_info("cpu")
    print("\n".join(info), end="\n\n")
    markdown = ["# learnsolve solve benchmark", "", *[f"- {line}" for line in info], "",
                "Median over repetitions after a warm-up (one repetition for calls over "
                f"{timing.budget:g} s). Forward with autograd recording; backward = the "
                "vector-Jacobian product alone, for the matrix values and b. Ratios from the "
                "rounded figures. 'fwd/ref': forward over the scipy row named in the heading."]
    sections = []
    for side in sides:
        A = poisson_2d(side, "cpu")
        title = f"{side}x{side} grid, N = {A.shape[0]:,}"
        sections.append((f"Triangular solve, tril of 2D Poisson, {title}, nnz(L) = "
                         f"{A.tril().nnz:,}; ref = scipy spsolve_triangular",
                         with_ratios(triangular_rows(A, args.threads, timing),
                                     "scipy spsolve_triangular")))
        print(sections[-1][0], text_table(HEADER + ["fwd/ref", "bwd/fwd"], sections[-1][1]),
              "", sep="\n")
        sections.append((f"Direct solve, 2D Poisson, {title}, nnz = {A.nnz:,}; ref = scipy "
                         "splu + solve", with_ratios(direct_rows(A, args.threads, timing),
                                                     "scipy splu + solve (COLAMD)")))
        print(sections[-1][0], text_table(HEADER + ["fwd/ref", "bwd/fwd"], sections[-1][1]),
              "", sep="\n")
    count, side = (32, 8) if args.quick else (256, 16)
    sections.append((f"Many small solves: {count} blocks, each the 2D Poisson matrix of a "
                     f"{side}x{side} grid with a random diagonal shift; one right-hand side per "
                     "block; ref = the scipy loop with splu",
                     with_ratios(batched_rows(count, side, args.threads, timing),
                                 "scipy loop: splu + solve per block")))
    print(sections[-1][0], text_table(HEADER + ["fwd/ref", "bwd/fwd"], sections[-1][1]), "",
          sep="\n")
    loads = " ".join(f"{load:.2f}" for load in os.getloadavg())
    print(f"total time {time.perf_counter() - started:.0f} s; load average at end: {loads}")
    if args.markdown:
        for heading, rows in sections:
            markdown += ["", f"## {heading}", "",
                         markdown_table(HEADER + ["fwd/ref", "bwd/fwd"], rows)]
        with open(args.markdown, "w") as f:
            f.write("\n".join(markdown) + "\n")


if __name__ == "__main__":
    main()
