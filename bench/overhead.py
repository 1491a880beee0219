"""Overhead: small problems beside scipy, and the Python and dispatch cost of the table-2 ops.

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
* Python and dispatch (the issue's target: within 1.3x of the kernels): the five
  ops of the paper's table 2 (``bench/paper.py``: SpMV, SpSpMM, SpDMM, Sp + Sp,
  SpTRSV on the 1D Poisson matrix, N = ``--dispatch-n``, 32,768 by default),
  forward + backward through the public API as ``bench/paper.py`` builds them
  (its ``learnsolve_cases``: the values and the dense operand require grad;
  ``torch.autograd.backward`` of the output's values with a fixed random
  gradient, as its backward pass), against the same native kernels called
  directly (``torch.ops.learnsolve``, below the autograd keys, on inputs computed
  once): the op's forward kernel, then those its backward calls (the C++
  autograd kernels of ``cuda/autograd/``; listed in the table). Both give the same output and gradients, checked before timing.
  SpDMM multiplies by an N x ``--dispatch-columns`` X (64 by default, to keep
  the run short; with the paper's 1024 its kernels take 16 times as long, and
  the same fixed cost of Python and dispatch weighs less).
* Where the time of SpMV forward + backward at the first of ``--spmv-sizes``
  goes (the issue's target: 40 us at N = 1,000): ours with ``y.backward(g)``,
  with ``torch.autograd.grad``, and with torch's engine called without
  ``torch.autograd.backward``'s Python checks; our forward alone; the native
  kernels alone (``spmv``, ``spmv_backward``); and torch's floor, the same
  backward through a 30 x 30 dense ``D @ x`` and through ``x * u`` (one node of
  two leaves, as ours).

learnsolve and its peer (scipy, or the native kernels) run in turns, ``--repeat``
times (default 7), after a warm-up: the tables give the fastest time of each
(the least disturbed by other work on the machine) and the median of the paired
ratios learnsolve / peer (below 1: learnsolve faster). The rows of the SpMV
breakdown run in turns likewise: the fastest time and the median of each.

Examples
--------
::

    python bench/overhead.py --markdown bench/results/overhead-cpu.md
    python bench/overhead.py --sizes 16 32 --spmv-sizes 100 1000 --repeat 2    # quick
    python bench/overhead.py --dispatch-n 4096 --dispatch-columns 16           # smaller table 2
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
import paper  # noqa: E402
from ops import (_fixed_random, _values, format_time, in_turns, machine_info,  # noqa: E402
                 markdown_table, paired, text_table)

from learnsolve.problems import poisson_1d, poisson_2d  # noqa: E402
from learnsolve.solvers import PCG, Jacobi  # noqa: E402

F64 = torch.float64
PCG_HEADER = ["problem", "M", "iterations ls / scipy / diff.", "ls per it.", "scipy per it.",
              "ls/scipy (fastest)", "ls/scipy (median)"]
SPMV_HEADER = ["SpMV", "N", "ls", "scipy", "ls/scipy (fastest)", "ls/scipy (median)"]
DISPATCH_HEADER = ["op (table 2)", "N", "native kernels: forward; backward", "ours fwd + bwd",
                   "kernels alone", "ours/kernels (fastest)", "ours/kernels (median)"]
BREAKDOWN_HEADER = ["SpMV forward + backward", "N", "fastest", "median"]
#: The issue's targets: an op of table 2 within this factor of its native kernels, and
#: SpMV forward + backward at N = 1,000 within this many seconds.
DISPATCH_TARGET = 1.3
SPMV_TARGET = 40e-6


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


# ----------------------------------------------------------------------------- table 2's ops
# The native kernels of each op, called as its forward and its backward call them, on
# the inputs the public API gives them (computed once here, before timing). Called
# through torch.ops.learnsolve, not learnsolve.core.native's wrappers, and below the
# autograd keys, as the C++ backward kernels call them: no autograd, no Python on top
# (an op whose formula is registered from Python with torch.library would otherwise go
# through torch.library's Python on every call). Each builder takes the matrix, the
# op's leaves (detached) and the upstream gradient, and returns a call that returns
# the op's output values and the leaves' gradients.
KERNELS = torch.ops.learnsolve


def below_autograd(run):
    """``run`` under the dispatch keys below autograd (the native kernels alone)."""
    def call():
        with torch._C._AutoDispatchBelowADInplaceOrView():
            return run()
    return call


def spmv_kernels(A, values, x, grad):
    """``y = A x``: forward ``spmv``; backward (both gradients) ``spmv_backward``."""
    crow, col, transposed = A.crow_indices, A.pattern.kernel_col(), A.pattern.transpose_arrays()
    return lambda: (KERNELS.spmv(crow, col, values, x, *transposed, False),
                    KERNELS.spmv_backward(crow, col, values, x, grad))


def spspmm_kernels(A, values, grad):
    """``C = A A`` (A's values one leaf): forward ``spgemm_numeric``; backward
    ``spgemm_masked`` (as A) and ``spgemm_grad_b`` (as B), summed by autograd."""
    crow, col, n = A.crow_indices, A.col_indices, A.shape[1]
    product = A.pattern.product(A.pattern)

    def run():
        out = KERNELS.spgemm_numeric(crow, col, values, crow, col, values, product.crow,
                                     product.col, n)
        as_a = KERNELS.spgemm_masked(crow, col, product.crow, product.col, grad, crow, col,
                                     values, n)
        as_b = KERNELS.spgemm_grad_b(crow, col, values, product.crow, product.col, grad, crow,
                                     col, n)
        return out, (as_a.add_(as_b),)
    return run


def spdmm_kernels(A, values, X, grad):
    """``Y = A X``: forward ``spmm``; backward ``sampled_matmul`` (values) and ``spmm``
    with the transpose (X)."""
    crow, col, transposed = A.crow_indices, A.pattern.kernel_col(), A.pattern.transpose_arrays()
    return lambda: (KERNELS.spmm(crow, col, values, X, *transposed, False),
                    (KERNELS.sampled_matmul(crow, col, grad, X, None, None, None),
                     KERNELS.spmm(crow, col, values, grad, *transposed, True)))


def add_kernels(A, first, second, grad):
    """``A + B`` (one pattern): forward ``csr_add_values``; backward ``gather_scaled``
    for each."""
    union, map_a, map_b = A.pattern.union(A.pattern)
    one = torch.scalar_tensor(1.0, dtype=first.dtype)  # alpha = beta = 1, as arith.add has them
    return lambda: (KERNELS.csr_add_values(first, map_a, second, map_b, union.nnz, one, one),
                    (KERNELS.gather_scaled(grad, map_a, one),
                     KERNELS.gather_scaled(grad, map_b, one)))


def trsv_kernels(A, values, b, grad):
    """``x = tril(A)^{-1} b``: forward ``sptrsv``; backward (both gradients)
    ``sptrsv_backward``."""
    pattern = A.tril().pattern          # the case's triangle: tril is cached on A's pattern
    crow, col = pattern.crow, pattern.col
    levels, transposed = pattern.triangular_levels(True), pattern.transpose_arrays()

    def run():
        x = KERNELS.sptrsv(crow, col, values, b, *levels, True, False, *transposed, False)
        return x, KERNELS.sptrsv_backward(crow, col, values, x, grad, *levels, True, False,
                                          *transposed, False)
    return run


#: ``{op: (its kernels, forward; backward, builder)}`` for the ops of ``paper.TESTS``.
NATIVE = {"spmv": ("spmv; spmv_backward", spmv_kernels),
          "spspmm": ("spgemm_numeric; spgemm_masked, spgemm_grad_b, add_", spspmm_kernels),
          "spdmm": ("spmm; sampled_matmul, spmm (transposed)", spdmm_kernels),
          "add": ("csr_add_values; gather_scaled x 2", add_kernels),
          "trsv": ("sptrsv; sptrsv_backward", trsv_kernels)}


def check_same(name: str, output, leaves, native) -> None:
    """RuntimeError unless the native kernels give the API's output and gradients."""
    out, grads = native()
    if not (torch.equal(out, output) and len(grads) == len(leaves)
            and all(torch.equal(grad, leaf.grad) for grad, leaf in zip(grads, leaves))):
        raise RuntimeError(f"{name}: the native kernels do not give the output and gradients "
                           f"of the public API: the comparison would not be fair")


def dispatch_rows(n: int, columns: int, repeat: int) -> list[list[str]]:
    """Forward + backward of each op of table 2 through the public API against its
    native kernels alone."""
    A = paper.poisson_1d(n, "cpu")
    cases = paper.learnsolve_cases(A, columns)
    rows = []
    for test in paper.TESTS:
        kernels, build = NATIVE[test.op]
        case = cases[test.op]()
        output = _values(case.forward())
        weight = _fixed_random(output.shape, output)    # paper.py's backward: bench/ops.py
        torch.autograd.backward(output, grad_tensors=weight)
        native = below_autograd(build(A, *(leaf.detach() for leaf in case.leaves), weight))
        check_same(test.table2, output.detach(), case.leaves, native)

        def ours(case=case, weight=weight):
            torch.autograd.backward(_values(case.forward()), grad_tensors=weight)
            for leaf in case.leaves:
                leaf.grad = None

        for leaf in case.leaves:
            leaf.grad = None
        fast, alone, ratio = paired(ours, native, repeat, calls_for(ours))
        name = test.table2 + (f" (X: N x {columns})" if test.op == "spdmm" else "")
        rows.append([name, f"{n:,}", kernels, format_time(fast), format_time(alone),
                     f"{fast / alone:.2f}", f"{ratio:.2f}"])
    return rows


def spmv_breakdown_rows(n: int, repeat: int) -> list[list[str]]:
    """Where the time of SpMV forward + backward goes: ours, our parts, torch's floor."""
    A = poisson_1d(n, dtype=F64).A
    generator = torch.Generator().manual_seed(3)

    def random(*shape, requires_grad=False):
        return torch.randn(shape, dtype=F64, generator=generator).requires_grad_(requires_grad)

    values, x, g = A.values.detach().clone().requires_grad_(), random(n, requires_grad=True), \
        random(n)
    B = A.with_values(values)
    D, x_small, g_small = random(30, 30, requires_grad=True), random(30, requires_grad=True), \
        random(30)
    u = random(n, requires_grad=True)
    kernels = below_autograd(spmv_kernels(A, values.detach(), x.detach(), g))
    engine = torch.autograd.Variable._execution_engine

    def clear(*leaves):
        for leaf in leaves:
            leaf.grad = None

    def backward():
        (B @ x).backward(g)
        clear(values, x)

    def grad():
        return torch.autograd.grad(B @ x, (values, x), g)

    def engine_only():
        # What torch.autograd.backward does after its Python checks of the arguments.
        engine.run_backward((B @ x,), (g,), False, False, (), allow_unreachable=True,
                            accumulate_grad=True)
        clear(values, x)

    def dense():
        (D @ x_small).backward(g_small)
        clear(D, x_small)

    def product():
        (x * u).backward(g)
        clear(x, u)

    runs = {"ours: y = A @ x; y.backward(g)": backward,
            "ours: torch.autograd.grad(y, (values, x), g)": grad,
            "ours: y = A @ x, backward by torch's engine without its Python checks":
                engine_only,
            "ours: y = A @ x alone (recording the graph)": lambda: B @ x,
            "native kernels alone: spmv; spmv_backward": kernels,
            "torch: D @ x, D dense 30 x 30; .backward(g)": dense,
            "torch: x * u, u requiring grad; .backward(g)": product}
    calls = [calls_for(run) for run in runs.values()]
    times = in_turns(list(runs.values()), repeat, calls)
    return [[name, "30" if name.startswith("torch: D") else f"{n:,}", format_time(min(spent)),
             format_time(statistics.median(spent))] for name, spent in zip(runs, times)]


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 512],
                        help="grid sides of the 2D Poisson matrices of the PCG rows")
    parser.add_argument("--spmv-sizes", type=int, nargs="+", default=[1_000, 1_000_000],
                        help="N of the 1D Poisson matrices of the SpMV rows (forward + "
                             "backward at the first)")
    parser.add_argument("--dispatch-n", type=int, default=32_768,
                        help="N of table 2's ops against their native kernels (the paper's)")
    parser.add_argument("--dispatch-columns", type=int, default=64,
                        help="columns of X in that SpDMM (the paper's 1024 take 16x longer)")
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
    breakdown = spmv_breakdown_rows(args.spmv_sizes[0], args.repeat)
    dispatch = dispatch_rows(args.dispatch_n, args.dispatch_columns, args.repeat)
    print("\n".join(info), "", text_table(PCG_HEADER, pcg), "", text_table(SPMV_HEADER, spmv),
          "", f"SpMV forward + backward: where the time goes (target "
          f"{format_time(SPMV_TARGET)} at N = 1,000)", text_table(BREAKDOWN_HEADER, breakdown),
          "",
          f"Table 2's ops, forward + backward, against their native kernels (target: "
          f"ours/kernels <= {DISPATCH_TARGET}; SpDMM with X of {args.dispatch_columns} columns, "
          f"the paper's 1024)", text_table(DISPATCH_HEADER, dispatch), sep="\n")
    if args.markdown:
        command = " ".join(["python bench/overhead.py", *(argv if argv is not None
                                                         else sys.argv[1:])])
        markdown = ["# Overhead: PCG and SpMV against scipy, table 2's ops against their "
                    "native kernels", "",
                    *[f"- {line}" for line in info], "",
                    f"Command: `{command}`. One thread (torch; OPENBLAS_NUM_THREADS="
                    f"{os.environ.get('OPENBLAS_NUM_THREADS')}), float64, CPU. See "
                    "`bench/overhead.py` for what is measured: fastest of "
                    f"{args.repeat} runs in turns, and the median of the paired ratios.", "",
                    f"## PCG, rtol {args.rtol:g}: time per iteration", "",
                    markdown_table(PCG_HEADER, pcg), "", "## SpMV", "",
                    markdown_table(SPMV_HEADER, spmv), "",
                    f"## SpMV forward + backward at N = {args.spmv_sizes[0]:,}: where the time "
                    f"goes (target {format_time(SPMV_TARGET)} at N = 1,000)", "",
                    markdown_table(BREAKDOWN_HEADER, breakdown), "",
                    "## Table 2's ops: forward + backward against their native kernels alone",
                    "", f"N = {args.dispatch_n:,}; target: ours/kernels <= {DISPATCH_TARGET} "
                    "(Python and dispatch at most 30%). SpDMM multiplies by X of "
                    f"{args.dispatch_columns} columns (the paper's table 2: 1024).", "",
                    markdown_table(DISPATCH_HEADER, dispatch)]
        with open(args.markdown, "w") as f:
            f.write("\n".join(markdown) + "\n")
    return {"pcg": pcg, "spmv": spmv, "breakdown": breakdown, "dispatch": dispatch}


if __name__ == "__main__":
    main()
