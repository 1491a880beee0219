"""Small problems at native speed: the cost of a PCG iteration and of an SpMV beside scipy.

One thread (``torch.set_num_threads(1)``; numpy's BLAS is held to one thread by
``OPENBLAS_NUM_THREADS=1``, set here unless given), float64, CPU:

* PCG on the 2D Poisson matrix (``--sizes``: grids of 64² and 512² by default),
  one random right-hand side, to a relative residual of ``--rtol`` (1e-6): the
  time of a solve divided by its iterations, learnsolve's
  :class:`~learnsolve.solvers.PCG` (nothing requires grad: its lean path)
  against ``scipy.sparse.linalg.cg`` with the same ``rtol``, without a
  preconditioner and with Jacobi (learnsolve's ``Jacobi(1.0, learnable=False)``;
  for scipy a ``LinearOperator`` multiplying by ``1 / diag(A)``). The iteration
  columns are learnsolve's, scipy's (counted by its callback) and those of the
  differentiable path (the same solve with ``b`` requiring grad, checkpointed);
  they should agree.
* SpMV ``A @ x`` without gradient (neither requires grad; no ``no_grad`` context) at
  ``--spmv-sizes`` (1D Poisson, N = 1,000 and
  1,000,000 by default) against scipy's ``A @ x``, and forward + backward at the
  first of them (``A``'s values and ``x`` require grad; the backward of
  ``(A @ x) @ w``) against the same three products by hand in scipy and numpy
  (``A x``, ``A^T w``, and ``w_i x_j`` over the stored entries): for the record.

learnsolve and its peer run in turns, ``--repeat`` times (default 7), after a
warm-up: the tables give the fastest time of each (the least disturbed by
other work on the machine) and the median of the paired ratios
learnsolve / peer (below 1: learnsolve faster).

Examples
--------
::

    python bench/overhead.py --markdown bench/results/overhead-cpu.md
    python bench/overhead.py --sizes 16 32 --spmv-sizes 100 1000 --repeat 2    # quick
"""
from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
import scipy.sparse.linalg as sla  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ops import format_time, machine_info, markdown_table, text_table  # noqa: E402

from learnsolve.problems import poisson_1d, poisson_2d  # noqa: E402
from learnsolve.solvers import PCG, Jacobi  # noqa: E402

F64 = torch.float64
PCG_HEADER = ["problem", "M", "iterations ls / scipy / diff.", "ls per it.", "scipy per it.",
              "ls/scipy (fastest)", "ls/scipy (median)"]
SPMV_HEADER = ["SpMV", "N", "ls", "scipy", "ls/scipy (fastest)", "ls/scipy (median)"]


def paired(ours, peer, repeat: int, calls: int = 1) -> tuple[float, float, float]:
    """``ours()`` and ``peer()`` in turns, ``repeat`` times after a warm-up, each timed
    over ``calls`` calls: the fastest time of a call of each, and the median of the
    paired ratios."""
    ours(), peer()
    times = ([], [])
    for _ in range(repeat):
        for run, spent in zip((ours, peer), times):
            start = time.perf_counter()
            for _ in range(calls):
                run()
            spent.append((time.perf_counter() - start) / calls)
    ratios = [a / b for a, b in zip(*times)]
    return min(times[0]), min(times[1]), statistics.median(ratios)


def calls_for(run, budget: float = 0.02) -> int:
    """How many calls of ``run`` take about ``budget`` seconds (at least 1)."""
    start = time.perf_counter()
    run()
    return max(1, int(budget / max(time.perf_counter() - start, 1e-7)))


def scipy_iterations(S, b, rtol: float, M) -> int:
    count = []
    sla.cg(S, b, rtol=rtol, M=M, maxiter=10 * S.shape[0], callback=lambda xk: count.append(1))
    return len(count)


def differentiable_iterations(A, b: torch.Tensor, M, rtol: float) -> int:
    """The iterations of the differentiable path (``b`` requires grad; checkpointed, so
    that the graph of a long solve stays small)."""
    solver = PCG(M, rtol=rtol, differentiation="checkpoint")
    return solver(A, b.clone().requires_grad_()).iterations


def pcg_rows(side: int, rtol: float, repeat: int) -> list[list[str]]:
    A = poisson_2d(side, dtype=F64).A
    n = A.shape[0]
    b = torch.randn(n, dtype=F64, generator=torch.Generator().manual_seed(0))
    S, b_numpy = A.to_scipy(), b.numpy()
    inverse_diagonal = 1.0 / A.diagonal().numpy()
    jacobi = sla.LinearOperator(S.shape, matvec=lambda r: r * inverse_diagonal.reshape(r.shape),
                                dtype=np.float64)
    rows = []
    for name, M, M_scipy in (("none", None, None),
                             ("Jacobi", Jacobi(1.0, learnable=False).double(), jacobi)):
        solver = PCG(M, rtol=rtol)
        iterations = solver(A, b).iterations
        counts = (iterations, scipy_iterations(S, b_numpy, rtol, M_scipy),
                  differentiable_iterations(A, b, M, rtol))
        ours, peer, ratio = paired(
            lambda: solver(A, b),
            lambda: sla.cg(S, b_numpy, rtol=rtol, M=M_scipy, maxiter=10 * n), repeat)
        rows.append([f"2D Poisson {side}², n = {n:,}", name, " / ".join(map(str, counts)),
                     format_time(ours / counts[0]), format_time(peer / counts[1]),
                     f"{ours / counts[0] / (peer / counts[1]):.2f}", f"{ratio:.2f}"])
    return rows


def spmv_forward_row(n: int, repeat: int) -> list[str]:
    A = poisson_1d(n, dtype=F64).A
    x = torch.randn(n, dtype=F64, generator=torch.Generator().manual_seed(1))
    S, x_numpy = A.to_scipy(), x.numpy()

    def ours():
        return A @ x        # nothing requires grad: no graph (no no_grad context to pay for)

    calls = calls_for(ours)
    fast, peer, ratio = paired(ours, lambda: S @ x_numpy, repeat, calls)
    return ["forward, no grad", f"{n:,}", format_time(fast), format_time(peer),
            f"{fast / peer:.2f}", f"{ratio:.2f}"]


def spmv_backward_row(n: int, repeat: int) -> list[str]:
    A = poisson_1d(n, dtype=F64).A
    generator = torch.Generator().manual_seed(2)
    x = torch.randn(n, dtype=F64, generator=generator)
    w = torch.randn(n, dtype=F64, generator=generator)
    values = A.values.detach().clone().requires_grad_()
    leaf = x.clone().requires_grad_()
    S, x_numpy, w_numpy = A.to_scipy(), x.numpy(), w.numpy()
    rows, cols = A.row_indices().numpy(), A.col_indices.numpy()

    def ours():
        ((A.with_values(values) @ leaf) @ w).backward()
        values.grad = leaf.grad = None

    def peer():
        return S @ x_numpy, S.T @ w_numpy, w_numpy[rows] * x_numpy[cols]

    calls = calls_for(ours)
    fast, slow, ratio = paired(ours, peer, repeat, calls)
    return ["forward + backward", f"{n:,}", format_time(fast), format_time(slow),
            f"{fast / slow:.2f}", f"{ratio:.2f}"]


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 512],
                        help="grid sides of the 2D Poisson matrices of the PCG rows")
    parser.add_argument("--spmv-sizes", type=int, nargs="+", default=[1_000, 1_000_000],
                        help="N of the 1D Poisson matrices of the SpMV rows (forward + "
                             "backward at the first)")
    parser.add_argument("--rtol", type=float, default=1e-6)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--markdown", metavar="PATH")
    return parser.parse_args(argv)


def main(argv=None) -> dict:
    args = parse_args(argv)
    torch.set_num_threads(1)
    info = machine_info("cpu")
    pcg = [row for side in args.sizes for row in pcg_rows(side, args.rtol, args.repeat)]
    spmv = [spmv_forward_row(n, args.repeat) for n in args.spmv_sizes]
    spmv.append(spmv_backward_row(args.spmv_sizes[0], args.repeat))
    print("\n".join(info), "", text_table(PCG_HEADER, pcg), "", text_table(SPMV_HEADER, spmv),
          sep="\n")
    if args.markdown:
        command = " ".join(["python bench/overhead.py", *(argv if argv is not None
                                                         else sys.argv[1:])])
        markdown = ["# Overhead of small problems: PCG and SpMV against scipy", "",
                    *[f"- {line}" for line in info], "",
                    f"Command: `{command}`. One thread (torch; OPENBLAS_NUM_THREADS="
                    f"{os.environ.get('OPENBLAS_NUM_THREADS')}), float64, CPU. See "
                    "`bench/overhead.py` for what is measured: fastest of "
                    f"{args.repeat} runs in turns, and the median of the paired ratios.", "",
                    f"## PCG, rtol {args.rtol:g}: time per iteration", "",
                    markdown_table(PCG_HEADER, pcg), "", "## SpMV", "",
                    markdown_table(SPMV_HEADER, spmv)]
        with open(args.markdown, "w") as f:
            f.write("\n".join(markdown) + "\n")
    return {"pcg": pcg, "spmv": spmv}


if __name__ == "__main__":
    main()
