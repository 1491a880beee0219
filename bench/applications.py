"""One training epoch of each application of the paper's section 4, sparse against
dense, over growing N (paper figs. 5, 9, 12 and 20).

An epoch is one optimiser step (Adam): the loss, its backward and the update.

* ``jacobi`` (section 4.1): per-node weights on the 1D Poisson matrix, the
  one-sweep loss of eq. 36 over J random unit vectors;
* ``heavyball`` (4.2): learnable (alpha, beta) on the 1D Poisson matrix, the
  loss of eq. 40 after t iterations. The paper's t = 3N/4 makes any epoch
  O(N nnz), sparse or dense; for the scaling t is held at 12;
* ``pcg`` (4.3): M = L L^T with L lower bidiagonal learned on the 2D Poisson
  matrix, the weighted residual loss of eq. 42 (4 iterations, gamma 0.6);
* ``spai`` (4.6): M with mask(M) = mask(A) on the 2D Poisson matrix, the
  Frobenius loss ||I - MA||_F^2 of eq. 50.

``sparse`` is learnsolve's module and loss; ``dense`` is the same computation
with every sparse matrix a dense torch tensor, written as the paper's dense
listings are (fig. 4: diagonal matrices as dense matrices, products as dense
products; M = L L^T formed densely). The dense column runs while its matrices
fit in ``--dense-memory`` GiB and its previous size took less than
``--dense-budget`` seconds (it grows like N^3: the next size would take ~8x).
float64. Each figure is the median of several epochs after a warm-up one.

Large N on Linux: every epoch allocates and frees blocks of tens of MB, which
glibc's malloc returns to the system each time (blocks over 32 MB are always
mmap-ed), so each epoch page-faults them in again. At N = 2^20 that is most
of the heavy-ball epoch (5.2 s, against 1.6 s with
``MALLOC_MMAP_THRESHOLD_=17179869184 MALLOC_TRIM_THRESHOLD_=17179869184``
in the environment). The tables are taken without such settings.
The slope column is the least-squares slope of log(time) against log(N) over
the sizes from N = 4096 up: 1 is linear.

Examples
--------
Full run, writing the table and the plot::

    python bench/applications.py --markdown bench/results/applications-cpu.md \\
        --plot bench/results/applications-cpu.png

Smoke test::

    python bench/applications.py --quick
"""
from __future__ import annotations

import argparse
import math
import os
import sys
from typing import Callable

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ops import (NOT_RUN, Case, Timing, fit, format_time, machine_info, markdown_table,  # noqa: E402
                 text_table)

import learnsolve as ls  # noqa: E402
from learnsolve.problems import poisson_1d, poisson_2d  # noqa: E402
from learnsolve.solvers import (  # noqa: E402
    PCG, SPAI, Heavyball, Jacobi, LowerFactor, heavyball_loss, jacobi_loss, pcg_loss, spai_loss)

F64 = torch.float64
VECTORS = 8          # J, random vectors per epoch
HEAVYBALL_STEPS = 12
PCG_ITERATIONS, GAMMA = 4, 0.6

Epoch = Callable[[], float]


def _vectors(n: int, device, seed: int = 0) -> torch.Tensor:
    X = torch.randn(n, VECTORS, dtype=F64, generator=torch.Generator().manual_seed(seed))
    return (X / X.norm(dim=0)).to(device)


def _epoch(parameters, loss: Callable[[], torch.Tensor]) -> Epoch:
    optimizer = torch.optim.Adam(parameters, lr=1e-2)

    def run():
        optimizer.zero_grad()
        value = loss()
        value.backward()
        optimizer.step()
        return float(value.detach())
    return run


# ----------------------------------------------------------------------------- sparse

def sparse_jacobi(n: int, device) -> Epoch:
    A, X = poisson_1d(n, dtype=F64, device=device).A, _vectors(n, device)
    model = Jacobi(1.0, num_nodes=n).to(device, F64)
    return _epoch(model.parameters(), lambda: jacobi_loss(model, A, X))


def sparse_heavyball(n: int, device) -> Epoch:
    A, X = poisson_1d(n, dtype=F64, device=device).A, _vectors(n, device)
    model = Heavyball(0.3, 0.2, maxiter=HEAVYBALL_STEPS).to(device, F64)
    return _epoch(model.parameters(), lambda: heavyball_loss(model, A, X))


def sparse_pcg(n: int, device) -> Epoch:
    A, B = poisson_2d(math.isqrt(n), dtype=F64, device=device).A, _vectors(n, device)
    model = PCG(M=LowerFactor.banded(A, 1), check_spd=False).to(device, F64)
    return _epoch(model.parameters(),
                  lambda: pcg_loss(model, A, B, iterations=PCG_ITERATIONS, gamma=GAMMA))


def sparse_spai(n: int, device) -> Epoch:
    A = poisson_2d(math.isqrt(n), dtype=F64, device=device).A
    model = SPAI(A).to(device, F64)
    return _epoch(model.parameters(), lambda: spai_loss(model, A))


# ----------------------------------------------------------------------------- dense

def _dense(A: ls.CSRMatrix) -> torch.Tensor:
    return A.to_dense()


def dense_jacobi(n: int, device) -> Epoch:
    A, X = _dense(poisson_1d(n, dtype=F64, device=device).A), _vectors(n, device)
    I = torch.eye(n, dtype=F64, device=device)
    D_inv = torch.diag(1.0 / torch.diag(A))
    omega = torch.nn.Parameter(torch.ones(n, dtype=F64, device=device))

    def loss():
        E = (I - torch.diag(omega) @ D_inv @ A) @ X
        return (E * (A @ E)).sum(0).mean()
    return _epoch([omega], loss)


def dense_heavyball(n: int, device) -> Epoch:
    A, X = _dense(poisson_1d(n, dtype=F64, device=device).A), _vectors(n, device)
    alpha = torch.nn.Parameter(torch.tensor(0.3, dtype=F64, device=device))
    beta = torch.nn.Parameter(torch.tensor(0.2, dtype=F64, device=device))

    def loss():
        E = previous = X
        for _ in range(HEAVYBALL_STEPS):
            E, previous = E - alpha * (A @ E) + beta * (E - previous), E
        return (E * (A @ E)).sum(0).mean()
    return _epoch([alpha, beta], loss)


def dense_pcg(n: int, device) -> Epoch:
    A_sparse = poisson_2d(math.isqrt(n), dtype=F64, device=device).A
    A, B = _dense(A_sparse), _vectors(n, device)
    L0 = torch.diag(1.0 / torch.sqrt(torch.diag(A)))  # LowerFactor's "jacobi" start
    mask = (torch.eye(n, dtype=torch.bool, device=device)
            | torch.diag(torch.ones(n - 1, dtype=torch.bool, device=device), -1))
    L_values = torch.nn.Parameter(L0[mask])

    def loss():
        L = torch.zeros(n, n, dtype=F64, device=device).masked_scatter(mask, L_values)
        M = L @ L.T
        X = torch.zeros_like(B)
        R = B
        Z = M @ R
        P = Z
        rz = (R * Z).sum(0)
        b_norm = B.norm(dim=0)
        weights = GAMMA ** torch.arange(PCG_ITERATIONS - 1, -1, -1, dtype=F64, device=device)
        weights = weights / weights.sum()
        total = 0.0
        for i in range(PCG_ITERATIONS):
            AP = A @ P
            step = rz / (P * AP).sum(0)
            X = X + step * P
            R = R - step * AP
            total = total + weights[i] * R.norm(dim=0) / b_norm
            Z = M @ R
            rz_next = (R * Z).sum(0)
            P = Z + (rz_next / rz) * P
            rz = rz_next
        return total.mean()
    return _epoch([L_values], loss)


def dense_spai(n: int, device) -> Epoch:
    A_sparse = poisson_2d(math.isqrt(n), dtype=F64, device=device).A
    A = _dense(A_sparse)
    mask = A != 0
    values = torch.nn.Parameter(torch.ones(int(mask.sum()), dtype=F64, device=device))
    I = torch.eye(n, dtype=F64, device=device)

    def loss():
        M = torch.zeros(n, n, dtype=F64, device=device).masked_scatter(mask, values)
        return ((I - M @ A) ** 2).sum()
    return _epoch([values], loss)


# name: (title, sizes, sparse, dense, dense matrices of N x N held at once)
APPLICATIONS = {
    "jacobi": ("entry-wise Jacobi, 1D Poisson (fig. 5)", "1d", sparse_jacobi, dense_jacobi, 6),
    "heavyball": ("heavy ball, 1D Poisson (fig. 9)", "1d", sparse_heavyball, dense_heavyball, 2),
    "pcg": ("PCG with M = L L^T, 2D Poisson (fig. 12)", "2d", sparse_pcg, dense_pcg, 6),
    "spai": ("SPAI, 2D Poisson (fig. 20)", "2d", sparse_spai, dense_spai, 5),
}


def sizes(kind: str, quick: bool, largest: int) -> list[int]:
    if kind == "1d":
        top = min(largest, 2 ** 14 if quick else largest)
        return [2 ** k for k in range(6, 40) if 2 ** k <= top]
    top = min(largest, 128 ** 2 if quick else largest)
    return [m * m for m in (8, 16, 32, 64, 128, 256, 512, 1024, 2048) if m * m <= top]


def slope(ns: list[int], times: list) -> str:
    line = fit(ns, times, smallest=4096)
    return NOT_RUN if line is None else f"{line[0]:.2f}"


def run(name: str, args, timing: Timing) -> tuple[str, list[int], list, list]:
    title, kind, sparse, dense, matrices = APPLICATIONS[name]
    ns = sizes(kind, args.quick, args.largest)
    sparse_times, dense_times = [], []
    dense_open, reason = True, ""
    for n in ns:
        sparse_times.append(timing.forward(Case(sparse(n, args.device))))
        need = matrices * n * n * 8 / 2 ** 30
        if dense_open and need > args.dense_memory:
            dense_open, reason = False, f"dense stopped at N = {n}: {need:.1f} GiB of matrices"
        if dense_open:
            dense_times.append(timing.forward(Case(dense(n, args.device))))
            if dense_times[-1] > args.dense_budget:
                dense_open = False
                reason = (f"dense stopped after N = {n}: {format_time(dense_times[-1])} an "
                          f"epoch, the next size would take ~8x")
        else:
            dense_times.append(NOT_RUN)
        print(f"  {name} N={n}: sparse {format_time(sparse_times[-1])}, dense "
              f"{format_time(dense_times[-1])}", flush=True)
    return reason, ns, sparse_times, dense_times


def table(ns, sparse_times, dense_times) -> tuple[list[str], list[list[str]]]:
    header = ["N", "sparse epoch", "dense epoch", "dense / sparse"]
    rows = [[f"{n:,}", format_time(s), format_time(d),
             f"{d / s:.1f}" if isinstance(d, float) else NOT_RUN]
            for n, s, d in zip(ns, sparse_times, dense_times)]
    return header, rows


def plot(results: dict, path: str, device: str) -> None:
    from matplotlib.figure import Figure
    figure = Figure(figsize=(11, 8), layout="constrained")
    for axis, (name, (_, ns, sparse_times, dense_times)) in zip(
            figure.subplots(2, 2).flat, results.items()):
        axis.loglog(ns, sparse_times, "o-", label="sparse (learnsolve)")
        dense = [(n, t) for n, t in zip(ns, dense_times) if isinstance(t, float)]
        if dense:
            axis.loglog(*zip(*dense), "s--", label="dense torch")
        reference = [sparse_times[-1] * n / ns[-1] for n in ns]
        axis.loglog(ns, reference, ":", color="grey", label="O(N)")
        axis.set_title(APPLICATIONS[name][0])
        axis.set_xlabel("N (unknowns)")
        axis.set_ylabel(f"one epoch [s], {device}")
        axis.legend()
    figure.savefig(path, dpi=120)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="N up to 16 384, short budgets")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--only", nargs="+", choices=sorted(APPLICATIONS), default=None)
    parser.add_argument("--largest", type=int, default=2 ** 20, help="largest N (default 2^20)")
    parser.add_argument("--budget", type=float, default=None,
                        help="seconds of repetitions per figure")
    parser.add_argument("--dense-budget", type=float, default=None,
                        help="stop dense after an epoch longer than this (seconds)")
    parser.add_argument("--dense-memory", type=float, default=4.0,
                        help="GiB the dense matrices may take")
    parser.add_argument("--markdown", metavar="PATH")
    parser.add_argument("--plot", metavar="PATH")
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: CUDA is not available")
    args.budget = args.budget or (0.2 if args.quick else 1.0)
    args.dense_budget = args.dense_budget or (0.5 if args.quick else 10.0)
    return args


def main(argv=None) -> None:
    args = parse_args(argv)
    sync = torch.cuda.synchronize if args.device == "cuda" else (lambda: None)
    timing = Timing(sync, budget=args.budget, max_reps=20)
    info = machine_info(args.device)
    print("\n".join(info), end="\n\n")
    markdown = ["# learnsolve applications: one training epoch, sparse against dense", "",
                *[f"- {line}" for line in info], "",
                "One Adam step (loss, backward, update), float64, median of several epochs. "
                "See `bench/applications.py` for what each application computes."]
    results = {}
    for name in args.only or APPLICATIONS:
        reason, ns, sparse_times, dense_times = results[name] = run(name, args, timing)
        header, rows = table(ns, sparse_times, dense_times)
        heading = (f"{APPLICATIONS[name][0]}: slope of the sparse time (N >= 4096) "
                   f"{slope(ns, sparse_times)}")
        print(heading, text_table(header, rows), reason, "", sep="\n")
        markdown += ["", f"## {heading}", "", markdown_table(header, rows), "", reason]
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write("\n".join(markdown) + "\n")
    if args.plot:
        plot(results, args.plot, args.device)


if __name__ == "__main__":
    main()
