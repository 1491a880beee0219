"""Two-level Schwarz on held-out meshes: coarse spaces, classical and learned.

Trains a learned coarse space on ``random_schwarz_problem`` meshes of at most
2,000 nodes (``--train`` problems, Adam, ``--epochs`` epochs): with ``--learned
enrichment`` (the default) :class:`~learnsolve.nn.EnrichmentNet` (the linear
space kept, plus three columns a core that start as the classical quadratic
ones and are corrected by a network), with ``--learned correction``
:class:`~learnsolve.nn.CoarseNet` (the linear space's own columns corrected);
for PCG with
:func:`~learnsolve.solvers.pcg_loss` and for GMRES with
:func:`~learnsolve.solvers.gmres_loss`, from ``--seeds`` network seeds, guarded:
the trainer keeps the epoch with the least loss on three validation meshes (other
seeds, at most 2,000 nodes, 25 to 40 nodes per subdomain), the start (the
classical space the network starts as) included, so a training never ends worse
than its classical start there. Then, on
held-out meshes of other shapes and sizes (3,000 to ~50,000 nodes, ~100 nodes per
subdomain: 30 to ~500 subdomains, none seen in training), it compares one-level
RAS and the coarse spaces ``nicolaides`` (the classical two-level method),
``smoothed``, ``linear``, ``quadratic`` and the learned ones:

* PCG iterations (the balanced two-level variant) and GMRES(30) iterations (the
  multiplicative restricted variant) to a relative residual of 1e-6, one seeded
  right-hand side; each learned network with the solver it was trained for; and the
  best constant Robin interface (``best_robin`` on the training meshes) on the linear
  space;
* the convergence factor of the stationary iteration (power iteration), for the
  two-level methods: a factor of 1 or more is a divergence;
* the ratio of each two-level method's iterations to the Nicolaides space's,
  and of each learned one's to its classical start's, median and worst over the
  meshes, and the scaling of the iterations from the fewest to the most
  subdomains.

    python bench/dd_two_level.py --markdown bench/results/dd-two-level-cpu.md
    python bench/dd_two_level.py --quick          # smoke test
"""
from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from functools import partial

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ops import machine_info, markdown_table, text_table  # noqa: E402

from learnsolve import Trainer  # noqa: E402
from learnsolve.evaluation import BASELINE_REGISTRY, BASELINES  # noqa: E402
from learnsolve.nn import CoarseNet, EnrichmentNet  # noqa: E402
from learnsolve.problems import (ProblemSet, disk, fem_problem, l_shape, mesh_size,  # noqa: E402
                                 random_polygon, random_schwarz_problem, rectangle,
                                 square_with_holes)
from learnsolve.solvers import GMRES, PCG, RAS, RobinInterface, best_robin  # noqa: E402

F64 = torch.float64
NODES_PER_SUBDOMAIN = 100
CLASSICAL = ("nicolaides", "smoothed", "linear", "quadratic")
#: The learned coarse spaces: the network and the classical space it starts as.
LEARNED = {"enrichment": (EnrichmentNet, "quadratic"), "correction": (CoarseNet, "linear")}


def held_out(quick: bool) -> list:
    """Meshes of shapes and sizes not trained on, ~100 nodes per subdomain (with
    ``quick``, the first three at a quarter of their size)."""
    shapes = {"L-shape": (l_shape, 3.0), "disk": (disk, np.pi),
              "square with holes": (square_with_holes, 0.9),
              "rectangle 4:1": (partial(rectangle, width=4.0, height=1.0), 4.0),
              "rectangle 1:3": (partial(rectangle, width=1.0, height=3.0), 3.0)}
    plan = [("L-shape", 3_300), ("disk", 6_000), ("square with holes", 10_000),
            ("random polygon 123", 15_000), ("rectangle 4:1", 20_000), ("L-shape", 30_000),
            ("disk", 40_000), ("random polygon 7", 50_000), ("rectangle 1:3", 8_000),
            ("square with holes", 25_000), ("random polygon 99", 5_000), ("disk", 12_000)]
    problems = []
    for name, nodes in plan[:3] if quick else plan:
        nodes = nodes // 4 if quick else nodes
        if name.startswith("random polygon"):
            seed = int(name.split()[-1])
            area = float(random_polygon(0.3, seed=seed).areas.sum())
            mesh = random_polygon(mesh_size(nodes, area), seed=seed)
        else:
            make, area = shapes[name]
            mesh = make(mesh_size(nodes, area))
        problem = fem_problem(mesh, dtype=F64, seed=1)
        problem.name = f"{name}, {problem.num_nodes:,} nodes"
        parts = max(2, round(problem.num_nodes / NODES_PER_SUBDOMAIN))
        problems.append(problem.with_partition(parts, overlap=1))
    return problems


def train(kind: str, solver: str, seed: int, problems, validation, epochs: int
          ) -> tuple[CoarseNet, float, int]:
    """A learned coarse space of ``kind`` (:data:`LEARNED`) trained for ``solver``,
    guarded: the epoch with the least loss on the ``validation`` meshes is kept, the
    start (its classical space: the correction starts at zero) included. Returns
    (net, seconds, kept epoch: -1 for the start)."""
    torch.manual_seed(seed)
    net = LEARNED[kind][0](hidden=16, layers=2).double()
    model = (PCG if solver == "pcg" else GMRES)(M=RAS(coarse=net))
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Trainer.fit: no epoch beat the start")
        trainer = Trainer(model, lr=1e-2, epochs=epochs, rhs_per_problem=8, seed=seed,
                          progress=False, keep_best="val_loss").fit(problems,
                                                                    validation=validation)
    return net, time.perf_counter() - start, trainer.best_epoch_


def iterations(solver: str, problem, coarse, interface=None) -> int | None:
    """The iterations of RAS with ``coarse`` (and ``interface``) in ``solver``."""
    return solve_iterations(solver, problem, RAS(problem, coarse=coarse, interface=interface))


def solve_iterations(solver: str, problem, M) -> int | None:
    """The iterations of ``solver`` preconditioned by ``M`` to 1e-6, for the problem's
    right-hand side of seed 0 (None if it did not converge)."""
    b = problem.random_rhs(seed=0)
    with torch.no_grad():
        solution = (PCG(M=M, rtol=1e-6) if solver == "pcg" else
                    GMRES(M=M, rtol=1e-6, restart=30))(problem.A, b)
    return solution.iterations if solution.converged else None


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="3 small meshes, 4 training problems, 1 seed, 3 epochs")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--train", type=int, default=12, help="training problems")
    parser.add_argument("--learned", choices=sorted(LEARNED), default="enrichment",
                        help="the learned coarse space (default: enrichment)")
    parser.add_argument("--factor-iterations", type=int, default=100)
    parser.add_argument("--markdown", metavar="PATH")
    args = parser.parse_args(argv)
    seeds = 1 if args.quick else args.seeds
    if args.quick:
        args.train = min(args.train, 4)
    epochs = 3 if args.quick else args.epochs
    training = ProblemSet(partial(random_schwarz_problem, dtype=F64), args.train, seed=0)
    # The guard's meshes: other seeds, as small, but with many small subdomains (25 to
    # 40 nodes each), where a correction that does not scale shows first.
    validation = ProblemSet(partial(random_schwarz_problem, nodes=(1_500, 2_000),
                                    nodes_per_subdomain=(25, 40), dtype=F64),
                            2 if args.quick else 3, seed=1)
    sizes = [p.num_nodes for p in training]
    floating = sum(p.info["floating_subdomains"] for p in training)
    learned, times, kept = {}, [], {}
    for solver in ("pcg", "gmres"):
        for seed in range(seeds):
            learned[solver, seed], seconds, kept[solver, seed] = train(
                args.learned, solver, seed, training, validation, epochs)
            times.append(seconds)
    alpha, _ = best_robin(list(training), np.linspace(0.0, 0.9, 4 if args.quick else 10),
                          coarse="linear")
    robin = f"Robin {alpha:.2f} + linear"
    problems = held_out(args.quick)
    net_name, start = LEARNED[args.learned][0].__name__, LEARNED[args.learned][1]
    seeded = {f"learned (seed {s})": s for s in range(seeds)}
    methods = ["one-level", *CLASSICAL, robin, *seeded]

    def coarse_of(method: str, solver: str):
        """The coarse space (and interface) of a method, learned ones for ``solver``."""
        if method in seeded:
            return learned[solver, seeded[method]], None
        if method == robin:
            return "linear", RobinInterface(alpha)
        return (None if method == "one-level" else method), None

    counts = {solver: {} for solver in ("pcg", "gmres")}
    factors, baselines = {}, {}
    for problem in problems:
        for solver in ("pcg", "gmres"):
            for method in methods:
                counts[solver][problem.name, method] = iterations(solver, problem,
                                                                  *coarse_of(method, solver))
        for method in ["nicolaides", "linear", "quadratic", *seeded]:
            factors[problem.name, method] = RAS(
                problem, coarse=coarse_of(method, "gmres")[0]).convergence_factor(
                problem.A, iterations=args.factor_iterations)
        for name in BASELINES:
            baselines[problem.name, name] = solve_iterations("pcg", problem,
                                                             BASELINE_REGISTRY[name][1]())
        print(f"  {problem.name}: done", flush=True)

    header = ["mesh", "subdomains"] + [f"{m} PCG / GMRES" for m in methods]
    baseline_header = ["mesh"] + [f"{BASELINE_REGISTRY[name][0]} PCG" for name in BASELINES]
    baseline_rows = [[p.name] + [str(baselines[p.name, name]) for name in BASELINES]
                     for p in problems]
    rows = [[p.name, str(p.partition.num_parts)] + [
        f"{counts['pcg'][p.name, m]} / {counts['gmres'][p.name, m]}" for m in methods]
        for p in problems]
    summary = []
    for solver in ("pcg", "gmres"):
        for method in methods[2:]:
            ratios = [counts[solver][p.name, method] / counts[solver][p.name, "nicolaides"]
                      for p in problems if counts[solver][p.name, method] is not None]
            missing = len(problems) - len(ratios)
            summary.append(f"{solver.upper()}, {method} / nicolaides: median "
                           f"{np.median(ratios):.2f}, worst {max(ratios):.2f}"
                           + (f", {missing} not converged" if missing else ""))
        for method in seeded:
            ratios = [counts[solver][p.name, method] / counts[solver][p.name, start]
                      for p in problems if counts[solver][p.name, method] is not None]
            summary.append(f"{solver.upper()}, {method} / {start} (its start): median "
                           f"{np.median(ratios):.2f}, best {min(ratios):.2f}, worst "
                           f"{max(ratios):.2f}")
    for method in ["quadratic", *seeded]:
        for name in ("ic0", "amg"):           # the strongest one-level baselines
            ratios = [counts["pcg"][p.name, method] / baselines[p.name, name]
                      for p in problems if counts["pcg"][p.name, method] is not None
                      and baselines[p.name, name] is not None]
            summary.append(f"PCG, {method} / {BASELINE_REGISTRY[name][0]}: median "
                           f"{np.median(ratios):.2f}, worst {max(ratios):.2f}")
    by_parts = sorted(problems, key=lambda p: p.partition.num_parts)
    few, many = by_parts[0], by_parts[-1]
    for solver in ("pcg", "gmres"):
        for method in methods:
            a, b = counts[solver][few.name, method], counts[solver][many.name, method]
            if a and b:
                summary.append(f"{solver.upper()} {method}: {a} iterations at "
                               f"{few.partition.num_parts} subdomains, {b} at "
                               f"{many.partition.num_parts} ({b / a:.2f}x)")
    worst = max(factors.items(), key=lambda item: item[1])
    summary.append(f"largest stationary convergence factor: {worst[1]:.3f} ({worst[0][1]} on "
                   f"{worst[0][0]}); divergent: "
                   f"{sum(f >= 1 for f in factors.values())} of {len(factors)}")
    intro = [f"training: {len(training)} random_schwarz_problem meshes, N = {min(sizes)}.."
             f"{max(sizes)}, {floating} floating subdomains in all; {net_name}(hidden=16, "
             f"layers=2), Adam lr 1e-2, {epochs} epochs, {seeds} seed(s) per solver, "
             f"{np.mean(times):.0f} s a training",
             f"guard: the epoch with the least loss on {len(validation)} validation meshes "
             f"(N = {min(p.num_nodes for p in validation)}..{max(p.num_nodes for p in validation)}"
             f", {min(p.partition.num_parts for p in validation)}.."
             f"{max(p.partition.num_parts for p in validation)} subdomains) is kept, the start "
             f"(the {start} space) included; kept epoch per solver and seed: "
             + ", ".join(f"{solver.upper()} seed {seed}: "
                         + ("the start" if epoch == -1 else str(epoch))
                         for (solver, seed), epoch in kept.items())]
    print(*intro, text_table(header, rows), text_table(baseline_header, baseline_rows),
          *summary, sep="\n")
    report = {"counts": counts, "factors": factors, "baselines": baselines,
              "summary": summary}
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write("# Two-level Schwarz on held-out meshes: classical and learned coarse "
                    "spaces\n\n" + "\n".join(f"- {line}" for line in machine_info("cpu"))
                    + "\n\n`python bench/dd_two_level.py` (see its docstring). Cells: PCG / "
                    "GMRES(30) iterations to 1e-6; learned networks trained with the loss of "
                    "the solver they serve.\n\n" + "\n".join(f"- {line}" for line in intro)
                    + "\n\n" + markdown_table(header, rows) + "\n\nThe same right-"
                    "hand sides with PCG and the classical one-level preconditioners:\n\n"
                    + markdown_table(baseline_header, baseline_rows) + "\n\n"
                    + "\n".join(f"- {line}" for line in summary) + "\n")
    return report


if __name__ == "__main__":
    main()
