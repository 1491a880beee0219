"""Construction of a CSRMatrix from outside arrays: what the index checks cost.

Times, on the 2D Poisson matrix (5-point stencil, default 1000 x 1000 grid, about
5 million stored entries, float64): ``CSRMatrix(...)`` with ``check=True`` (bounds
and order) and ``check=False`` (bounds only), ``from_scipy`` of a CSR and a COO
matrix, ``from_torch`` of a torch sparse CSR tensor; beside them scipy's own copy
of the matrix and its full format check. Median over repetitions after a warm-up,
at each thread count.

    python bench/construct.py [--n 1000] [--threads 1 2] [--markdown PATH]

Run against another checkout (the same native extension must load there) with
``PYTHONPATH=that/checkout python bench/construct.py`` to compare versions.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import scipy.sparse as sp
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ops import Timing, format_time, machine_info, markdown_table, text_table  # noqa: E402

import learnsolve as ls  # noqa: E402


def poisson(n: int) -> sp.csr_array:
    T = sp.diags_array([-1.0, 2.0, -1.0], offsets=[-1, 0, 1], shape=(n, n))
    S = sp.csr_array(sp.kronsum(T, T, format="csr"))
    S.sort_indices()
    return S


def cases(S: sp.csr_array) -> dict:
    crow = torch.from_numpy(S.indptr.astype("int64"))
    col = torch.from_numpy(S.indices.astype("int64"))
    values = torch.from_numpy(S.data.copy())
    coo = S.tocoo()
    tensor = torch.sparse_csr_tensor(crow, col, values, S.shape, check_invariants=False)
    return {
        "CSRMatrix(check=True)": lambda: ls.CSRMatrix(crow, col, values, S.shape),
        "CSRMatrix(check=False)": lambda: ls.CSRMatrix(crow, col, values, S.shape, check=False),
        "from_scipy (CSR)": lambda: ls.CSRMatrix.from_scipy(S),
        "from_scipy (COO)": lambda: ls.CSRMatrix.from_scipy(coo),
        "from_torch (CSR)": lambda: ls.CSRMatrix.from_torch(tensor),
        "scipy: csr_array(S, copy=True)": lambda: sp.csr_array(S, copy=True),
        "scipy: check_format(full_check=True)": lambda: S.check_format(full_check=True),
    }


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000, help="grid side (n^2 unknowns)")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--budget", type=float, default=1.0, help="seconds per figure")
    parser.add_argument("--markdown", metavar="PATH", help="also write the table here")
    parser.add_argument("--append", action="store_true",
                        help="add the table to --markdown's file (another version's run)")
    args = parser.parse_args(argv)
    S = poisson(args.n)
    timing = Timing(sync=lambda: None, budget=args.budget, max_reps=25)

    def seconds(run) -> float:
        def once():
            start = time.perf_counter()
            run()
            return time.perf_counter() - start
        return timing.median(once)

    rows = {name: [] for name in cases(S)}
    for threads in args.threads:
        torch.set_num_threads(threads)
        for name, run in cases(S).items():
            rows[name].append(format_time(seconds(run)))
    header = ["construction"] + [f"{t} thread{'s' if t > 1 else ''}" for t in args.threads]
    table = [[name] + times for name, times in rows.items()]
    title = (f"2D Poisson {args.n} x {args.n}, nnz = {S.nnz:,}, float64, cpu; "
             f"learnsolve from {os.path.dirname(ls.__file__)}")
    print(title)
    print(text_table(header, table))
    if args.markdown:
        with open(args.markdown, "a" if args.append else "w") as f:
            if not args.append:
                f.write("# CSRMatrix construction from outside arrays\n\n")
                f.write("\n".join(f"- {line}" for line in machine_info("cpu")) + "\n")
            f.write(f"\n## {title}\n\n" + markdown_table(header, table) + "\n")


if __name__ == "__main__":
    main()
