"""PCG: the forward solve against scipy and pyamg, and the time and memory of each way
of differentiating it.

On the 2D Poisson matrix (``--sizes``: grids of 128² and 512² by default;
1000² takes about half an hour on two cores), float64, CPU:

* forward, no gradient, to a relative residual of 1e-6: learnsolve's
  :class:`~learnsolve.solvers.PCG` on 1 and on 2 threads against
  ``scipy.sparse.linalg.cg`` (one thread), without a preconditioner and with
  8 right-hand sides (one block solve against 8 scipy solves); with pyamg's
  smoothed aggregation, ``PCG(M=AMG())`` against pyamg's own
  ``ml.solve(accel="cg")`` (the hierarchy built beforehand for both);
* forward + backward of ``x.sum()`` through ``maxiter`` = 100 iterations
  (``rtol`` 0, so every mode runs all of them, the implicit mode's adjoint
  solve too) with gradients for A's values and b, in the three modes of
  differentiation: ``unrolled``, ``checkpoint`` (default segments of 1, 2,
  3, ... iterations: 14 for 100 iterations) and ``implicit``; the memory
  column is what autograd saves in the forward for the backward (bytes of the
  tensors packed by ``torch.autograd.graph.saved_tensors_hooks``), in units of
  one vector of n float64. A checkpointed segment's own tensors, saved again
  while the backward recomputes it (at most 14 iterations' worth here), are
  not counted.

Each figure is the median of ``--repeat`` runs (default 3) after a warm-up.
On a machine with few cores, torch's OpenMP threads spinning after a
parallel region compete with numpy's BLAS threads inside pyamg: the AMG row
at 2 threads then takes several times longer. Run with
``OPENBLAS_NUM_THREADS=1`` (or ``OMP_WAIT_POLICY=passive``), as the results
file was.

Examples
--------
::

    python bench/pcg.py --markdown bench/results/pcg-cpu.md
    python bench/pcg.py --sizes 64 128      # quick
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import warnings

import scipy.sparse.linalg as sla
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ops import format_time, machine_info, markdown_table, text_table  # noqa: E402

from learnsolve.problems import poisson_2d  # noqa: E402
from learnsolve.solvers import AMG, PCG  # noqa: E402

RTOL = 1e-6
BLOCK = 8
ITERATIONS = 100


def median(run, repeat: int) -> float:
    run()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def threads(count: int, run):
    def wrapped():
        before = torch.get_num_threads()
        torch.set_num_threads(count)
        try:
            return run()
        finally:
            torch.set_num_threads(before)
    return wrapped


def forward_rows(A, repeat: int) -> list[list[str]]:
    n = A.shape[0]
    generator = torch.Generator().manual_seed(0)
    b = torch.randn(n, dtype=torch.float64, generator=generator)
    B = torch.randn(n, BLOCK, dtype=torch.float64, generator=generator)
    S, bn, Bn = A.to_scipy(), b.numpy(), B.numpy()
    rows = []

    def ours(M, rhs):
        solver = PCG(M=M, rtol=RTOL)
        return lambda: solver(A, rhs)  # nothing requires grad: no graph is built

    iterations = PCG(rtol=RTOL)(A, b).iterations
    scipy_one = median(lambda: sla.cg(S, bn, rtol=RTOL, maxiter=10 * n), repeat)
    one = [median(threads(t, ours(None, b)), repeat) for t in (1, 2)]
    rows.append(["CG, 1 rhs", str(iterations), *map(format_time, one), format_time(scipy_one),
                 f"{one[0] / scipy_one:.2f}", f"{one[1] / scipy_one:.2f}"])

    def scipy_block():
        for j in range(BLOCK):
            sla.cg(S, Bn[:, j], rtol=RTOL, maxiter=10 * n)
    scipy_many = median(scipy_block, repeat)
    many = [median(threads(t, ours(None, B)), repeat) for t in (1, 2)]
    rows.append([f"CG, {BLOCK} rhs", str(PCG(rtol=RTOL)(A, B).iterations), *map(format_time, many),
                 format_time(scipy_many), f"{many[0] / scipy_many:.2f}",
                 f"{many[1] / scipy_many:.2f}"])

    amg = AMG()
    amg.setup(A)  # the hierarchy, built once (for pyamg below too)
    ml = amg.hierarchy(A)
    pyamg_time = median(lambda: ml.solve(bn, tol=RTOL, accel="cg", maxiter=10 * n), repeat)
    with_amg = [median(threads(t, ours(amg, b)), repeat) for t in (1, 2)]
    rows.append(["CG + SA-AMG, 1 rhs", str(PCG(M=amg, rtol=RTOL)(A, b).iterations),
                 *map(format_time, with_amg), format_time(pyamg_time),
                 f"{with_amg[0] / pyamg_time:.2f}", f"{with_amg[1] / pyamg_time:.2f}"])
    return rows


def saved_bytes(run) -> int:
    """Bytes of the distinct tensors autograd saves while ``run()`` builds its graph."""
    seen = {}

    def pack(tensor):
        seen[(tensor.data_ptr(), tensor.shape)] = tensor.numel() * tensor.element_size()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        run()
    return sum(seen.values())


def gradient_rows(A, repeat: int) -> list[list[str]]:
    n = A.shape[0]
    b = torch.randn(n, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    rows = []
    for mode in ("unrolled", "checkpoint", "implicit"):
        solver = PCG(maxiter=ITERATIONS, rtol=0.0, differentiation=mode, check_spd=False)
        values = A.values.detach().clone().requires_grad_()
        rhs = b.clone().requires_grad_()

        def forward():
            return solver(A.with_values(values), rhs).x.sum()

        def both():
            with warnings.catch_warnings():  # implicit: the adjoint stops at maxiter too
                warnings.simplefilter("ignore", RuntimeWarning)
                forward().backward()
            values.grad = rhs.grad = None

        memory = saved_bytes(forward) / (8 * n)
        rows.append([mode, format_time(median(forward, repeat)), format_time(median(both, repeat)),
                     f"{memory:.1f}"])
    return rows


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[128, 512],
                        help="grid sides of the 2D Poisson matrices")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--markdown", metavar="PATH")
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    info = machine_info("cpu")
    print("\n".join(info), end="\n\n")
    markdown = ["# learnsolve PCG against scipy and pyamg", "", *[f"- {line}" for line in info],
                "", "See `bench/pcg.py` for what is measured. float64, CPU; the ratios are "
                "learnsolve / peer (below 1: learnsolve faster). Environment: "
                f"OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS', 'unset')}."]
    for side in args.sizes:
        A = poisson_2d(side, dtype=torch.float64).A
        title = f"2D Poisson {side}x{side}, n = {A.shape[0]:,}"
        header = ["solve", "iterations", "ls 1t", "ls 2t", "peer", "ls/peer 1t", "ls/peer 2t"]
        rows = forward_rows(A, args.repeat)
        grad_header = [f"mode ({ITERATIONS} it.)", "forward", "forward + backward",
                       "saved (vectors of n)"]
        grad_rows = gradient_rows(A, args.repeat)
        print(title, text_table(header, rows), "", text_table(grad_header, grad_rows), "",
              sep="\n")
        markdown += ["", f"## {title}", "", markdown_table(header, rows), "",
                     markdown_table(grad_header, grad_rows)]
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write("\n".join(markdown) + "\n")


if __name__ == "__main__":
    main()
