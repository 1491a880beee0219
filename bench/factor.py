"""Learned incomplete factorisations against IC(k) and ILU(k), per matrix.

For each matrix a :class:`~learnsolve.solvers.IncompleteFactor` is started from the
classical factor (IC(k), or ILU(k) for the nonsymmetric problem) and trained on that
matrix (Adam, ``--epochs`` epochs of one step on 8 random vectors), with each loss:
``pcg`` (:func:`~learnsolve.solvers.pcg_loss`, 16 iterations), ``sketched``
(NeuralIF's), ``low-frequency`` (PreCorrector's), and for ILU ``gmres``
(:func:`~learnsolve.solvers.gmres_loss`, 16 iterations) and ``inverse``. The
trainer keeps the parameters of the epoch with the fewest PCG iterations (the mean
GMRES loss for ILU) on *validation* right-hand sides, the start (the classical
factor) included, so a training can never end worse than its classical start on
them. Then, on 4 *fresh* right-hand sides (other seeds than training and
validation):

* the Krylov iterations to a relative residual of 1e-6 (PCG, GMRES(30) for ILU),
  next to no preconditioner, Jacobi, IC(k)/ILU(k) and pyamg's smoothed
  aggregation; each learned count as a ratio to its classical start;
* the solve time (median of 7 solves of the 4 right-hand sides as one block, the
  methods interleaved) and the training time;
* the scale check: a factor trained on ``441 A`` from the same seed takes the
  iterations of the one trained on ``A``;
* held out: the factor trained on one coefficient field applied to four others on
  the same grid (other seeds), against each one's own IC(0): median and worst.

Problems: Poisson 64², lognormal and jump (contrast 100) coefficients on 64², a P1
FEM matrix on an L-shape (5,364 nodes) in the mesh generator's order and in reverse
Cuthill-McKee order, and a convection-diffusion problem (recirculating wind,
epsilon 0.01, 64²).

    python bench/factor.py --markdown bench/results/factor-cpu.md
    python bench/factor.py --quick          # smoke test
"""
from __future__ import annotations

import argparse
import copy
import os
import statistics
import sys
import time
import warnings
from functools import partial

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ops import machine_info, markdown_table, text_table  # noqa: E402

from learnsolve import Trainer  # noqa: E402
from learnsolve.evaluation import baseline, pcg_iterations  # noqa: E402
from learnsolve.problems import (Problem, convection_diffusion_2d, diffusion_2d,  # noqa: E402
                                 fem_problem, jump_coefficient, l_shape,
                                 lognormal_coefficient, mesh_size, poisson_2d)
from learnsolve.solvers import (GMRES, PCG, IncompleteCholesky, IncompleteFactor,  # noqa: E402
                                IncompleteLU, gmres_loss, inverse_loss, low_frequency_loss,
                                pcg_loss, sketched_loss)

F64 = torch.float64
RTOL = 1e-6
TEST_SEED, VALIDATION_SEED = 1_000, 500
LOSSES = {"pcg": partial(pcg_loss, iterations=16), "sketched": sketched_loss,
          "low-frequency": low_frequency_loss, "gmres": partial(gmres_loss, iterations=16),
          "inverse": inverse_loss}


def problems(quick: bool) -> dict:
    """name -> (problem, kind, ordering)."""
    n = 16 if quick else 64
    nodes = 600 if quick else 5_500
    lshape = fem_problem(l_shape(mesh_size(nodes, 3.0)), dtype=F64)
    return {
        f"Poisson {n}²": (poisson_2d(n, dtype=F64), "cholesky", None),
        f"lognormal {n}²": (diffusion_2d(n, coefficient=lognormal_coefficient(0), dtype=F64),
                            "cholesky", None),
        f"jump 100 {n}²": (diffusion_2d(n, coefficient=jump_coefficient(0, contrast=100),
                                        dtype=F64), "cholesky", None),
        f"L-shape FEM {lshape.num_nodes}": (lshape, "cholesky", None),
        f"L-shape FEM {lshape.num_nodes}, RCM": (lshape, "cholesky", "rcm"),
        f"convection-diffusion {n}²": (convection_diffusion_2d(n, epsilon=0.01, dtype=F64),
                                       "lu", None),
    }


def krylov(kind: str):
    return PCG if kind == "cholesky" else GMRES


def fresh_rhs(problem: Problem, k: int = 4) -> torch.Tensor:
    return problem.random_rhs(k, seed=TEST_SEED)


@torch.no_grad()
def solve(kind: str, M, A, B) -> int | None:
    """The iterations to ``RTOL`` (None if not converged, by the true residual)."""
    solution = krylov(kind)(M=M, rtol=RTOL)(A, B)
    true = ((B - A @ solution.x).norm(dim=0) / B.norm(dim=0)).max()
    return solution.iterations if solution.converged and float(true) <= 10 * RTOL else None


@torch.no_grad()
def solve_times(kind: str, preconditioners: dict, A, B, rounds: int = 7) -> dict:
    """Each preconditioner's solve time: the median of ``rounds`` solves of the block
    ``B``, the methods interleaved in each round (so that a slow spell of the
    machine falls on all of them)."""
    times = {name: [] for name in preconditioners}
    solvers = {name: krylov(kind)(M=M, rtol=RTOL) for name, M in preconditioners.items()}
    for solver in solvers.values():
        solver(A, B)                                             # warm the caches
    for _ in range(rounds):
        for name, solver in solvers.items():
            start = time.perf_counter()
            solver(A, B)
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def train(problem: Problem, kind: str, fill: int, loss: str, ordering, epochs: int,
          seed: int = 0) -> tuple[IncompleteFactor, float, bool]:
    """A factor of ``problem``'s matrix trained with ``loss``; (factor, seconds, whether
    the guard kept the classical start)."""
    factor = IncompleteFactor(problem, kind=kind, fill=fill, ordering=ordering)
    model = krylov(kind)(M=factor)
    validation = copy.copy(problem).reseed(VALIDATION_SEED)
    if kind == "cholesky":
        guard = dict(metrics={"iterations": pcg_iterations(RTOL, num_rhs=2)},
                     keep_best="iterations")
    else:
        guard = dict(keep_best="val_loss")
    trainer = Trainer(model, loss=LOSSES[loss], lr=1e-2, epochs=epochs, rhs_per_problem=8,
                      seed=seed, progress=False, **guard)
    start = time.perf_counter()
    with warnings.catch_warnings():   # a kept start is reported in the summary instead
        warnings.filterwarnings("ignore", message="Trainer.fit: no epoch beat the start")
        trainer.fit(problem, validation=validation)
    return factor, time.perf_counter() - start, trainer.best_epoch_ == -1


def run(args) -> dict:
    rows, report = [], {"ratios": {}, "scale": {}, "held_out": {}, "kept_start": []}
    for name, (problem, kind, ordering) in problems(args.quick).items():
        A, B = problem.A, fresh_rhs(problem)
        classical = {k: (IncompleteCholesky if kind == "cholesky" else IncompleteLU)(
            k, ordering=ordering) for k in (0, 1)}
        label = "IC" if kind == "cholesky" else "ILU"
        preconditioners = {method: baseline(method) for method in ("none", "jacobi", "amg")
                           if not (method == "amg" and kind == "lu")}
        preconditioners.update({f"{label}({k})": M for k, M in classical.items()})
        losses = ("pcg", "sketched", "low-frequency") if kind == "cholesky" else \
            ("gmres", "inverse")
        trained = {}
        for fill, loss in [(0, loss) for loss in losses] + [(1, losses[0])]:
            factor, seconds, kept_start = train(problem, kind, fill, loss, ordering,
                                                args.epochs)
            key = f"learned {label}({fill}), {loss}"
            trained[key] = (factor, fill, seconds)
            preconditioners[key] = factor
            if kept_start:
                report["kept_start"].append(f"{name}: {key}")
        counts = {method: solve(kind, M, A, B) for method, M in preconditioners.items()}
        seconds = solve_times(kind, preconditioners, A, B)
        print(f"{name}: " + ", ".join(f"{m} {c}" for m, c in counts.items()),
              file=sys.stderr, flush=True)
        for method, iterations in counts.items():
            ratio, fill = "", None
            if method in trained:
                fill = trained[method][1]
                start = counts[f"{label}({fill})"]
                if iterations is not None and start:
                    ratio = f"{iterations / start:.2f}"
                    report["ratios"][name, method] = iterations / start
            rows.append([name, str(A.shape[0]), method,
                         "-" if iterations is None else str(iterations), ratio,
                         f"{1e3 * seconds[method]:.1f}",
                         f"{trained[method][2]:.1f}" if method in trained else ""])
        if kind == "cholesky" and ordering is None and not name.startswith("L-shape"):
            report["scale"][name] = scale_check(problem, args.epochs)
    report["held_out"] = held_out(args)
    report["rows"] = rows
    return report


def scale_check(problem: Problem, epochs: int) -> tuple[int, int]:
    """PCG iterations of factors trained (same seed, pcg loss) on A and 441 A."""
    scaled = Problem(problem.A * 441.0, name=f"441 {problem.name}", seed=problem.seed)
    counts = []
    for p in (problem, scaled):
        factor, _, _ = train(p, "cholesky", 0, "pcg", None, epochs)
        counts.append(solve("cholesky", factor, p.A, fresh_rhs(p)))
    return tuple(counts)


def held_out(args) -> dict:
    """A factor trained on coefficient seed 0, applied to seeds 1-4 on the same grid:
    its PCG iterations over each matrix's own IC(0)'s, median and worst."""
    n = 16 if args.quick else 64
    result = {}
    for field, make in [("lognormal", lognormal_coefficient),
                        ("jump 100", partial(jump_coefficient, contrast=100))]:
        train_problem = diffusion_2d(n, coefficient=make(0), dtype=F64)
        factor, _, _ = train(train_problem, "cholesky", 0, "pcg", None, args.epochs)
        ratios = []
        for seed in range(1, 5):
            p = diffusion_2d(n, coefficient=make(seed), dtype=F64)
            B = fresh_rhs(p)
            learned = solve("cholesky", factor, p.A, B)
            ic0 = solve("cholesky", IncompleteCholesky(), p.A, B)
            ratios.append(float("inf") if learned is None else learned / ic0)
        result[field] = (statistics.median(ratios), max(ratios))
    return result


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="16² grids, 600 nodes, 5 epochs")
    parser.add_argument("--epochs", type=int, default=200)
    parser.add_argument("--markdown", metavar="PATH")
    args = parser.parse_args(argv)
    if args.quick:
        args.epochs = min(args.epochs, 5)
    torch.manual_seed(0)
    report = run(args)
    header = ["problem", "n", "method", "iterations", "vs classical", "solve (ms)",
              "training (s)"]
    summary = ["scale check (PCG iterations, factor trained on A / on 441 A): "
               + ", ".join(f"{k}: {a} / {b}" for k, (a, b) in report["scale"].items()),
               "held out (trained on coefficient seed 0, applied to seeds 1-4 on the same "
               "grid; iterations over each matrix's own IC(0)): "
               + ", ".join(f"{k}: median {m:.2f}, worst {w:.2f}"
                           for k, (m, w) in report["held_out"].items()),
               "trainings that kept their classical start (no epoch beat it on validation): "
               + (", ".join(report["kept_start"]) or "none")]
    report["summary"] = summary
    print(text_table(header, report["rows"]))
    print("\n".join(summary))
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write("# Learned incomplete factorisations against IC(k) and ILU(k)\n\n")
            f.write("Generated by `python bench/factor.py --markdown "
                    f"{args.markdown}` ({args.epochs} epochs).\n\n")
            f.write("\n".join(f"- {line}" for line in machine_info("cpu")) + "\n\n")
            f.write("Iterations to a relative residual of 1e-6 (PCG; GMRES(30) for "
                    "convection-diffusion) on 4 fresh right-hand sides; `vs classical` is a "
                    "learned factor's iterations over its classical start's (IC(k) or ILU(k) "
                    "of the same fill and ordering). `-`: no convergence.\n\n")
            f.write(markdown_table(header, report["rows"]) + "\n\n")
            f.write("\n".join(f"- {line}" for line in summary) + "\n")
    return report


if __name__ == "__main__":
    main()
