"""Restricted additive Schwarz with learned interface conditions (paper section 4.5):
one training epoch, sparse against dense, over growing N (fig. 18), and the trained
interface against classical and Robin RAS on held-out meshes.

``--part scaling`` (fig. 18). The problems are P1 finite elements of the
Poisson equation on the unit square, ``fem_problem(rectangle(h))``, with ``h``
from :func:`~learnsolve.problems.mesh_size` for N of about 500, 1k, ...,
128k unknowns, partitioned into ``round(N / 100)`` subdomains with overlap 1
(subdomains of ~100 nodes: the work per subdomain is constant, so the sparse
epoch is linear in N). The model is ``RAS(interface=InterfaceNet(hidden=32,
layers=3))``; an epoch is one Adam step (lr 1e-3) on the loss of eq. 49,
``max_j ||T^4 x_j||`` with ``T = I - M A``, over J = 8 fixed unit vectors of
uniform entries: the loss, its backward and the update. The mesh and the
partition are set-up, not timed.

* ``sparse`` is learnsolve's :func:`~learnsolve.solvers.ras_loss`: the
  subdomain matrices ``A_i + L_i`` are the blocks of one sparse
  block-diagonal matrix, factored once per epoch (SuperLU), and ``T`` is
  applied as a sparse product and the subdomain solves, never formed.
* ``two-level`` is ``sparse`` with a coarse level, ``RAS(interface=...,
  coarse="nicolaides")``: one partition-of-unity vector per subdomain, the
  coarse matrix ``Z^T A Z`` factored once per epoch, combined
  multiplicatively (see :class:`~learnsolve.solvers.RAS`); its epoch should
  stay linear in N (the coarse problem has N / 100 unknowns).
* ``dense`` is the same computation with dense torch tensors, as the original
  dense implementation (Taghibakhshi et al.) does it: ``A`` dense; the same
  network call gives the stacked ``L_i``, scattered into dense blocks; for
  each subdomain (a Python loop) ``A~_i = A[D_i][:, D_i] + L_i`` and its
  dense inverse; ``M = sum_i R~_i^T A~_i^{-1} R_i`` formed as a dense N x N
  matrix (by one ``index_put`` of the inverses' core rows, cheaper than
  products with dense restriction matrices); ``T = I - M A`` as a dense
  product, ``E = T^4 X``. Before the timings, the script checks at N ~ 500
  with a perturbed network that both give the same loss and the same
  gradient of every parameter to a relative 1e-10 (and stops if not).

The dense column runs while its matrices (~6 N^2 float64) fit in
``--dense-memory`` GiB and the previous size took less than
``--dense-budget`` seconds. Each figure is the median of several epochs after
a warm-up one (a single one above ``--budget`` seconds). The memory columns
are the peak resident memory during those epochs above the resident memory
before them (Linux ``VmHWM``, reset through ``/proc/self/clear_refs``), an
estimate: memory the allocator kept from earlier sizes is not counted again.
The slope is the least-squares slope of log(time) against log(N) over the
sizes from N ~ 4000 up: 1 is linear. The sparse epoch is dominated by the
graph network (its MLPs over the ~7N edges and their backward), not by the
subdomain solves (a few percent at N = 32k). From N ~ 30k on its tensors take
hundreds of MB each, which glibc's malloc maps and returns to the system at
every epoch, so each epoch page-faults them in again: at N = 126,697 an epoch
took ~18 s here, ~9 s with ``MALLOC_MMAP_THRESHOLD_=17179869184
MALLOC_TRIM_THRESHOLD_=17179869184`` in the environment. The tables are taken
without such settings.

``--part evaluation``. ``RAS(interface=InterfaceNet(hidden=32, layers=3))``
trained with :class:`~learnsolve.Trainer` (Adam, lr 1e-3, ``--epochs``
epochs, 8 uniform unit vectors per problem and step) on 8 random polygons
(``random_mesh_problem``, h = 0.08, 8 subdomains, 600-900 nodes each); the best
single Robin parameter on the same problems by :func:`best_robin`; then on
held-out meshes, larger and of other shapes (L-shape, disk, square with
holes, a larger random polygon; ``round(N / 100)`` subdomains, overlap 1),
:func:`~learnsolve.evaluation.compare_schwarz` of classical RAS, the Robin
interface and the learned one: the convergence factor of the stationary
iteration, and the iterations of PCG (additive Schwarz) and GMRES(30)
(restricted additive Schwarz) to a relative residual of 1e-6.

Examples
--------
Full run (several minutes on two cores), writing the tables and the plot::

    OMP_NUM_THREADS=2 python bench/dd.py --markdown bench/results/dd-cpu.md \\
        --plot bench/results/dd-cpu.png

Smoke test (N up to ~2000, 3 training epochs, 2 held-out meshes)::

    python bench/dd.py --quick
"""
from __future__ import annotations

import argparse
import gc
import os
import re
import sys
import time
from functools import partial

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ops import (NOT_RUN, Case, Timing, fit, format_time, machine_info, markdown_table,  # noqa: E402
                 text_table)

from learnsolve import Trainer  # noqa: E402
from learnsolve.evaluation import SchwarzEvaluation, compare_schwarz  # noqa: E402
from learnsolve.nn.interface import InterfaceNet  # noqa: E402
from learnsolve.problems import (Problem, ProblemSet, disk, fem_problem, l_shape,  # noqa: E402
                                 mesh_size, random_mesh_problem, random_polygon, rectangle,
                                 square_with_holes)
from learnsolve.solvers.schwarz import RAS, RobinInterface, best_robin, ras_loss  # noqa: E402

F64 = torch.float64
VECTORS = 8               # J, random vectors per epoch
ITERATIONS = 4            # k of eq. 49
HIDDEN, LAYERS = 32, 3
LR = 1e-3
NODES_PER_SUBDOMAIN = 100
SIZES = (500, 1_000, 2_000, 4_000, 8_000, 16_000, 32_000, 64_000, 128_000)
QUICK_SIZES = (500, 1_000, 2_000)
SLOPE_FROM = 3_000        # the "4k" size has ~3900 unknowns (boundary nodes are eliminated)
DENSE_MATRICES = 6        # N x N float64 matrices the dense epoch holds at once, about
CHECK_SIZE = 500
CHECK_TOLERANCE = 1e-10

GiB = 2 ** 30


# ----------------------------------------------------------------------------- problems

def scaling_problem(n: int) -> Problem:
    """P1 FEM on the unit square with about ``n`` unknowns, ~100 nodes per subdomain."""
    problem = fem_problem(rectangle(mesh_size(n, 1.0)), dtype=F64)
    return problem.with_partition(max(2, round(problem.num_nodes / NODES_PER_SUBDOMAIN)),
                                  overlap=1)


def interface_model(seed: int = 0, coarse: str | None = None) -> RAS:
    """The learned RAS of the paper's section 4.5, its network initialised from ``seed``,
    one-level or with the coarse level ``coarse``."""
    torch.manual_seed(seed)
    return RAS(interface=InterfaceNet(hidden=HIDDEN, layers=LAYERS).double(), coarse=coarse)


def vectors(problem: Problem) -> torch.Tensor:
    return problem.random_rhs(VECTORS, distribution="uniform", normalize=True, seed=0)


# ----------------------------------------------------------------------------- the losses

def sparse_loss(model: RAS, problem: Problem, X: torch.Tensor) -> torch.Tensor:
    return ras_loss(model, problem, X, iterations=ITERATIONS)


class DenseLoss:
    """Eq. 49 with dense matrices, as the original dense implementation computes it.

    The index arrays (which stacked entries of the ``L_i`` belong to which
    dense block, and where each block's core rows of ``A~_i^{-1}`` go in
    ``M``) are set-up; a call computes the network, the dense blocks, their
    inverses, ``M``, ``T = I - M A`` and ``max_j ||T^k x_j||``.
    """

    def __init__(self, model: RAS, problem: Problem):
        self.model, self.problem = model, problem
        self.A = problem.A.to_dense()
        sub = model.for_problem(problem).subdomains(problem.A)
        crow, col = sub.local.stacked.crow, sub.local.stacked.col
        rows = sub.rows
        self.blocks, core_rows, core_cols = [], [], []
        start = 0
        for nodes, core in zip(problem.partition.overlapped, problem.partition.core_mask):
            size = nodes.numel()
            first, last = int(crow[start]), int(crow[start + size])
            self.blocks.append((nodes, first, last, rows[first:last] - start,
                                col[first:last] - start, core))
            core_rows.append(nodes[core].repeat_interleave(size))
            core_cols.append(nodes.repeat(int(core.sum())))
            start += size
        self.index = (torch.cat(core_rows), torch.cat(core_cols))

    def __call__(self, X: torch.Tensor) -> torch.Tensor:
        A, n = self.A, self.A.shape[0]
        L = self.model.interface(self.model.for_problem(self.problem).subdomains(self.problem.A))
        inverses = []
        for nodes, first, last, r, c, core in self.blocks:
            size = nodes.numel()
            L_i = torch.zeros(size, size, dtype=A.dtype).index_put((r, c), L[first:last])
            inverses.append(torch.linalg.inv(A[nodes][:, nodes] + L_i)[core].flatten())
        M = torch.zeros(n, n, dtype=A.dtype).index_put(self.index, torch.cat(inverses))
        T = torch.eye(n, dtype=A.dtype) - M @ A
        E = X
        for _ in range(ITERATIONS):
            E = T @ E
        return torch.linalg.vector_norm(E, dim=0).max()


def epoch(model: RAS, loss) -> Case:
    """One Adam step on ``loss()`` as a timing case."""
    optimizer = torch.optim.Adam(model.parameters(), lr=LR)

    def run() -> float:
        optimizer.zero_grad()
        value = loss()
        value.backward()
        optimizer.step()
        return float(value.detach())
    return Case(run)


def check_dense(n: int = CHECK_SIZE) -> tuple[int, float, float]:
    """Sparse and dense loss and gradients of a perturbed network at about ``n`` unknowns.

    Returns ``(N, relative difference of the losses, largest relative difference
    of a parameter's gradient)``; raises AssertionError above ``CHECK_TOLERANCE``.
    The network is perturbed (its output layer starts at zero weights, which
    would leave every other gradient zero)."""
    problem = scaling_problem(n)
    X = vectors(problem)
    model = interface_model()
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(0.1 * torch.randn(parameter.shape, generator=generator, dtype=F64))
    results = []
    for loss in (lambda: sparse_loss(model, problem, X), lambda: DenseLoss(model, problem)(X)):
        model.zero_grad()
        value = loss()
        value.backward()
        results.append((value.detach(), [p.grad.clone() for p in model.parameters()]))
    (sparse, sparse_grads), (dense, dense_grads) = results
    loss_error = float(abs(dense - sparse) / abs(sparse))
    grad_error = max(float((d - s).abs().max() / s.abs().max().clamp_min(1e-300))
                     for s, d in zip(sparse_grads, dense_grads))
    assert loss_error <= CHECK_TOLERANCE and grad_error <= CHECK_TOLERANCE, (
        f"dense and sparse disagree at N = {problem.num_nodes}: loss {loss_error:.2e}, "
        f"gradients {grad_error:.2e} (relative)")
    return problem.num_nodes, loss_error, grad_error


# ----------------------------------------------------------------------------- measuring

def _status(field: str) -> int:
    """A field of /proc/self/status, in bytes."""
    with open("/proc/self/status") as f:
        return int(re.search(rf"^{field}:\s+(\d+) kB", f.read(), re.M).group(1)) * 1024


def timed_with_peak(timing: Timing, case: Case) -> tuple[float, float | str]:
    """The median epoch time and the peak resident memory above the one before
    (bytes; NOT_RUN where /proc/self/clear_refs cannot reset the peak)."""
    gc.collect()
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        before = _status("VmRSS")
    except OSError:
        return timing.forward(case), NOT_RUN
    seconds = timing.forward(case)
    return seconds, float(_status("VmHWM") - before)


def format_memory(size) -> str:
    return size if isinstance(size, str) else f"{size / 2 ** 20:,.0f} MiB"


def run_scaling(args, timing: Timing) -> dict:
    ns, parts, sparse, dense, sparse_memory, dense_memory = [], [], [], [], [], []
    two_level = []
    dense_open, reason = True, "dense ran at every size"
    for target in args.sizes:
        problem = scaling_problem(target)
        n = problem.num_nodes
        ns.append(n)
        parts.append(problem.partition.num_parts)
        X = vectors(problem)
        model = interface_model()
        seconds, memory = timed_with_peak(
            timing, epoch(model, lambda: sparse_loss(model, problem, X)))
        sparse.append(seconds)
        sparse_memory.append(memory)
        model = interface_model(coarse="nicolaides")
        two_level.append(timed_with_peak(
            timing, epoch(model, lambda: sparse_loss(model, problem, X)))[0])
        need = DENSE_MATRICES * n * n * 8 / GiB
        if dense_open and need > args.dense_memory:
            dense_open = False
            reason = (f"dense stopped at N = {n:,}: ~{need:.1f} GiB of matrices "
                      f"(--dense-memory {args.dense_memory:g})")
        if dense_open:
            model = interface_model()
            seconds, memory = timed_with_peak(timing, epoch(model, partial(
                DenseLoss(model, problem), X)))
            dense.append(seconds)
            dense_memory.append(memory)
            if seconds > args.dense_budget:
                dense_open = False
                reason = (f"dense stopped after N = {n:,}: {format_time(seconds)} an epoch "
                          f"(--dense-budget {args.dense_budget:g} s); it grows like N^3")
        else:
            dense.append(NOT_RUN)
            dense_memory.append(NOT_RUN)
        print(f"  N={n:,} ({parts[-1]} subdomains): sparse {format_time(sparse[-1])}, "
              f"two-level {format_time(two_level[-1])}, dense {format_time(dense[-1])}",
              flush=True)
    return {"n": ns, "parts": parts, "sparse": sparse, "two_level": two_level, "dense": dense,
            "sparse_memory": sparse_memory, "dense_memory": dense_memory, "reason": reason}


def slope(ns: list[int], times: list) -> str:
    line = fit(ns, times, smallest=SLOPE_FROM)
    return NOT_RUN if line is None else f"{line[0]:.2f}"


def scaling_table(result: dict) -> tuple[list[str], list[list[str]]]:
    header = ["N", "subdomains", "sparse epoch", "two-level epoch", "dense epoch", "speed-up",
              "sparse peak memory", "dense peak memory"]
    rows = [[f"{n:,}", str(p), format_time(s), format_time(t), format_time(d),
             f"{d / s:.1f}" if isinstance(d, float) else NOT_RUN,
             format_memory(sm), format_memory(dm)]
            for n, p, s, t, d, sm, dm in zip(result["n"], result["parts"], result["sparse"],
                                             result["two_level"], result["dense"],
                                             result["sparse_memory"], result["dense_memory"])]
    return header, rows


def plot(result: dict, path: str) -> None:
    from matplotlib.figure import Figure
    figure = Figure(figsize=(6.5, 4.5), layout="constrained")
    axis = figure.subplots()
    ns, sparse = result["n"], result["sparse"]
    axis.loglog(ns, sparse, "o-", label="sparse (learnsolve)")
    axis.loglog(ns, result["two_level"], "^-", label="sparse, two-level (Nicolaides)")
    dense = [(n, t) for n, t in zip(ns, result["dense"]) if isinstance(t, float)]
    if dense:
        axis.loglog(*zip(*dense), "s--", label="dense torch")
        n0, t0 = dense[-1]
        axis.loglog(ns, [t0 * (n / n0) ** 3 for n in ns], ":", color="C1", alpha=0.5,
                    label=r"O(N$^3$)")
    axis.loglog(ns, [sparse[-1] * n / ns[-1] for n in ns], ":", color="grey", label="O(N)")
    axis.set_ylim(min(sparse) / 3,
                  max(sparse + result["two_level"] + [t for _, t in dense]) * 3)
    axis.set_title("RAS with a learned interface: one training epoch (fig. 18)")
    axis.set_xlabel("N (unknowns), ~100 per subdomain")
    axis.set_ylabel("one epoch [s], CPU")
    axis.legend()
    figure.savefig(path, dpi=120)


# ----------------------------------------------------------------------------- evaluation

def held_out_problems(quick: bool) -> list[Problem]:
    meshes = [l_shape(0.04), disk(0.04), square_with_holes(0.04),
              random_polygon(0.03, seed=123)]
    problems = [fem_problem(mesh, dtype=F64, seed=1) for mesh in meshes[:2 if quick else None]]
    return [p.with_partition(round(p.num_nodes / NODES_PER_SUBDOMAIN), overlap=1)
            for p in problems]


def worse_than_others(table: SchwarzEvaluation) -> list[str]:
    """Where the learned interface is worse than classical or Robin, metric by metric."""
    metrics = (("factor", "convergence factor"), ("pcg", "PCG iterations"),
               ("gmres", "GMRES iterations"))

    def show(field, value) -> str:
        return "not converged" if value is None else \
            f"{value:.3f}" if field == "factor" else str(value)

    by_problem: dict[str, dict] = {}
    for row in table:
        by_problem.setdefault(row.problem, {})[row.method] = row
    lines = []
    for problem, methods in by_problem.items():
        learned = methods.pop("learned")
        for field, label in metrics:
            mine = getattr(learned, field)
            for method, row in methods.items():
                other = getattr(row, field)
                if other is not None and (mine is None or mine > other):
                    lines.append(f"{problem}: learned worse than {method} on {label} "
                                 f"({show(field, mine)} against {show(field, other)})")
    return lines


def run_evaluation(args) -> dict:
    train = ProblemSet(partial(random_mesh_problem, h=0.08, num_parts=8, dtype=F64), 8, seed=0)
    model = interface_model()
    trainer = Trainer(model, lr=LR, epochs=args.epochs, rhs_per_problem=VECTORS, seed=0,
                      distribution="uniform", progress=sys.stderr.isatty())
    start = time.perf_counter()
    trainer.fit(train)
    training_time = time.perf_counter() - start
    loss = trainer.history_.loss
    alpha, factors = best_robin(list(train))
    held_out = held_out_problems(args.quick)
    table = compare_schwarz({"classical": RAS(),
                             f"Robin (alpha={alpha:.2f})": RAS(interface=RobinInterface(alpha)),
                             "learned": model}, held_out, rtol=1e-6)
    k = min(5, len(loss))
    sizes = [p.num_nodes for p in train]
    summary = [
        f"training: {len(train)} random polygons (h = 0.08, 8 subdomains, N = "
        f"{min(sizes)}..{max(sizes)}), {trainer.epochs_done_} epochs ({trainer.stop_reason_}) "
        f"in {training_time:.1f} s ({training_time / max(trainer.epochs_done_, 1):.2f} s an "
        f"epoch of {len(train)} steps)",
        f"loss (mean over the problems of an epoch): first {loss[0]:.4f}, last {loss[-1]:.4f}, "
        f"min {loss.min():.4f} (epoch {int(np.argmin(loss))}); mean of the first {k} epochs "
        f"{loss[:k].mean():.4f}, of the last {k} {loss[-k:].mean():.4f}",
        f"best Robin parameter on the training problems: alpha = {alpha:.2f} (mean "
        f"convergence factor {factors.min():.3f}, against {factors[0]:.3f} at alpha = 0)",
    ]
    means = [f"mean over the held-out problems, {method}: factor {table.mean(method):.3f}, "
             f"PCG {table.mean(method, 'pcg'):.1f}, GMRES {table.mean(method, 'gmres'):.1f}"
             for method in dict.fromkeys(row.method for row in table)]
    return {"table": table, "summary": summary, "means": means,
            "worse": worse_than_others(table)}


# ----------------------------------------------------------------------------- main

def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=("scaling", "evaluation", "all"), default="all")
    parser.add_argument("--quick", action="store_true",
                        help="N up to ~2000, 3 training epochs, 2 held-out meshes")
    parser.add_argument("--largest", type=int, default=SIZES[-1],
                        help=f"largest target N of the scaling (default {SIZES[-1]})")
    parser.add_argument("--epochs", type=int, default=None,
                        help="training epochs of the evaluation (default 40; 3 with --quick)")
    parser.add_argument("--budget", type=float, default=None,
                        help="seconds of repetitions per figure")
    parser.add_argument("--dense-budget", type=float, default=60.0,
                        help="stop dense after an epoch longer than this (seconds)")
    parser.add_argument("--dense-memory", type=float, default=8.0,
                        help="GiB the dense matrices may take")
    parser.add_argument("--markdown", metavar="PATH")
    parser.add_argument("--plot", metavar="PATH")
    args = parser.parse_args(argv)
    args.sizes = [n for n in (QUICK_SIZES if args.quick else SIZES) if n <= args.largest]
    if not args.sizes:
        parser.error(f"--largest: expected at least {SIZES[0]}")
    args.epochs = args.epochs or (3 if args.quick else 40)
    args.budget = args.budget or (0.2 if args.quick else 1.0)
    return args


def main(argv=None) -> None:
    args = parse_args(argv)
    timing = Timing(lambda: None, budget=args.budget, max_reps=20)
    info = machine_info("cpu")
    print("\n".join(info), end="\n\n")
    markdown = ["# learnsolve domain decomposition: learned interface conditions (paper 4.5)",
                "", *[f"- {line}" for line in info], "",
                "See `bench/dd.py` for what is computed and how it is measured."]
    if args.part in ("scaling", "all"):
        n, loss_error, grad_error = check_dense()
        check = (f"dense against sparse at N = {n}: loss {loss_error:.1e}, gradients "
                 f"{grad_error:.1e} (largest relative difference; required <= "
                 f"{CHECK_TOLERANCE:g})")
        print(check, flush=True)
        result = run_scaling(args, timing)
        header, rows = scaling_table(result)
        heading = (f"One training epoch (fig. 18): slope of the sparse time (N >= "
                   f"{SLOPE_FROM:,}) {slope(result['n'], result['sparse'])}, two-level "
                   f"{slope(result['n'], result['two_level'])}")
        print(heading, text_table(header, rows), result["reason"], "", sep="\n")
        markdown += ["", f"## {heading}", "",
                     "One Adam step (loss of eq. 49 with k = 4 and J = 8, backward, update), "
                     "float64, P1 FEM on the unit square, ~100 nodes per subdomain, overlap 1. "
                     "Speed-up = dense / sparse.", "", markdown_table(header, rows), "",
                     result["reason"] + ".", "", check + "."]
        if args.plot:
            plot(result, args.plot)
    if args.part in ("evaluation", "all"):
        result = run_evaluation(args)
        heading = "Held-out meshes: classical, Robin and learned interfaces"
        print(heading, *result["summary"], "", str(result["table"]), "", *result["means"],
              *result["worse"], "", sep="\n")
        markdown += ["", f"## {heading}", "", *[f"- {line}" for line in result["summary"]],
                     "", "Convergence factor of the stationary iteration; PCG (additive "
                     "Schwarz) and GMRES(30) (restricted additive Schwarz) iterations to "
                     "rtol 1e-6.", "", result["table"].to_markdown(), "",
                     *[f"- {line}" for line in result["means"] + result["worse"]]]
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write("\n".join(markdown) + "\n")


if __name__ == "__main__":
    main()
