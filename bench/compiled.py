"""Compiled PCG: a fixed-iteration PCG forward and backward under torch.compile against eager.

One thread (``torch.set_num_threads(1)``), float64, CPU. For each 2D Poisson
matrix (``--sizes``: grids of 32² and 64² by default) and preconditioner (none,
and Jacobi with one learnable weight per node), one training step of the PCG
loss of the paper's eq. 42 over ``--iterations`` (20) iterations
(:func:`~learnsolve.solvers.pcg_loss`: ``rtol = atol = 0``, no early stop),
for one random right-hand side: the loss from A's values (which require grad,
as a learned matrix's) and its backward, to A's values and the weights. Eager
runs PCG's graph-recording path, which reads the residual norms and the
curvatures on the host every iteration; compiled,
``torch.compile(backend=--backend, fullgraph=True)`` (inductor by default) traces
its fixed-iteration path into one graph, forward and backward. ``check_spd=False``
for both: the check is a host read of its own (made once per matrix eagerly,
skipped under compile), not PCG's iterations. The compiled loss and gradients
are checked against eager's (to 1e-9 relative).

The two run in turns, ``--repeat`` times (default 7), after a warm-up: the
table gives the fastest time of each (the least disturbed by other work on the
machine) and the median of the paired ratios compiled / eager (below 1:
compiled faster). Compile time, apart: the first compiled call, forward and
backward (dynamo, AOTAutograd, inductor's code generation and C++ compilation),
less a later call; the run starts from an empty inductor cache (a temporary one,
removed after it), as a first run pays it.

Examples
--------
::

    python bench/compiled.py --markdown compiled-cpu.md
    python bench/compiled.py --sizes 8 --iterations 3 --repeat 2 --backend aot_eager  # quick
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import torch
from torch._inductor.runtime.cache_dir_utils import temporary_cache_dir

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ops import format_time, machine_info, markdown_table, paired, text_table  # noqa: E402

from learnsolve.problems import poisson_2d  # noqa: E402
from learnsolve.solvers import PCG, Jacobi, pcg_loss  # noqa: E402

F64 = torch.float64
HEADER = ["problem", "M", "eager", "compiled", "compiled/eager (fastest)",
          "compiled/eager (median)", "compile time"]


class Step:
    """One training step of the PCG loss (forward and backward) for the matrix ``A`` with
    learnable values, through ``loss`` (eager, or compiled): the loss and the gradients it
    leaves are kept for the comparison."""

    def __init__(self, A, b: torch.Tensor, M: Jacobi | None, iterations: int, loss=None):
        self.A, self.b, self.M = A, b, M
        self.model = PCG(M, check_spd=False)
        self.iterations = iterations
        self.values = A.values.detach().clone().requires_grad_()
        self.loss = self.eager if loss is None else loss

    def eager(self, values: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return pcg_loss(self.model, self.A.with_values(values), b, iterations=self.iterations)

    def __call__(self) -> list[torch.Tensor]:
        self.values.grad = None
        if self.M is not None:
            self.M.zero_grad(set_to_none=True)
        loss = self.loss(self.values, self.b)
        loss.backward()
        return [loss.detach(), self.values.grad] + ([] if self.M is None else [self.M.omega.grad])


def row(side: int, name: str, iterations: int, backend: str, repeat: int) -> list[str]:
    """The row of one matrix and preconditioner."""
    A = poisson_2d(side, dtype=F64).A
    n = A.shape[0]
    b = torch.randn(n, dtype=F64, generator=torch.Generator().manual_seed(0))
    M = None if name == "none" else Jacobi(1.0, num_nodes=n).double()
    eager = Step(A, b, M, iterations)
    expected = eager()          # also what the products cache on A's pattern (A^T)
    compiled = Step(A, b, M, iterations,
                    torch.compile(eager.eager, backend=backend, fullgraph=True))
    start = time.perf_counter()
    first = compiled()
    first_call = time.perf_counter() - start
    for got, wanted in zip(first, expected):
        torch.testing.assert_close(got, wanted, rtol=1e-9, atol=1e-12)
    fast_compiled, fast_eager, ratio = paired(compiled, eager, repeat)
    return [f"2D Poisson {side}², n = {n:,}", name, format_time(fast_eager),
            format_time(fast_compiled), f"{fast_compiled / fast_eager:.2f}", f"{ratio:.2f}",
            format_time(first_call - fast_compiled)]


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[32, 64],
                        help="grid sides of the 2D Poisson matrices")
    parser.add_argument("--iterations", type=int, default=20,
                        help="PCG iterations of the loss (unrolled into the compiled graph)")
    parser.add_argument("--backend", default="inductor", help="torch.compile's backend")
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--markdown", metavar="PATH")
    args = parser.parse_args(argv)
    if min(args.sizes) < 2 or args.iterations < 1 or args.repeat < 1:
        parser.error("--sizes: expected grid sides >= 2, --iterations and --repeat >= 1")
    return args


def main(argv=None) -> list[list[str]]:
    args = parse_args(argv)
    torch.set_num_threads(1)
    info = machine_info("cpu")
    with tempfile.TemporaryDirectory(prefix="inductor-") as cache, temporary_cache_dir(cache):
        rows = [row(side, name, args.iterations, args.backend, args.repeat)
                for side in args.sizes for name in ("none", "Jacobi")]
    print("\n".join(info), "", text_table(HEADER, rows), sep="\n")
    if args.markdown:
        command = " ".join(["python bench/compiled.py", *(argv if argv is not None
                                                         else sys.argv[1:])])
        markdown = [f"# Compiled PCG: {args.iterations} iterations, forward and backward, "
                    f"torch.compile ({args.backend}, fullgraph) against eager", "",
                    *[f"- {line}" for line in info], "",
                    f"Command: `{command}`. One thread, float64, CPU. The training step of "
                    f"pcg_loss (eq. 42, {args.iterations} iterations, one right-hand side; "
                    "gradients to A's values and the Jacobi weights). See `bench/compiled.py` "
                    f"for what is measured: fastest of {args.repeat} runs in turns, and the "
                    "median of the paired ratios; compile time from an empty inductor cache.",
                    "",
                    markdown_table(HEADER, rows)]
        with open(args.markdown, "w") as f:
            f.write("\n".join(markdown) + "\n")
    return rows


if __name__ == "__main__":
    main()
