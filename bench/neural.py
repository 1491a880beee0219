"""A preconditioner that generalises: NeuralFactor trained on small problems, evaluated on
larger held-out ones against none, Jacobi, IC(0) (natural and RCM order), IC(1), classical
SPAI and smoothed-aggregation AMG.

    .venv/bin/python bench/neural.py [--seeds 3] [--epochs 30] [--problems 128] [--quick]
                                     [--out bench/results]

Training (issue 18's protocol): problems of 200-1,024 unknowns, lognormal and jump grids
and P1 FEM on random polygons with lognormal coefficients (``random_spd_problem``), a
NeuralFactor(FactorNet(16, 2), ordering="rcm") started from IC(0), ``pcg_loss`` over 10
PCG iterations, 8 problems a step as one block-diagonal batch. Held out, never tuned on:
other seeds, lognormal and jump grids of 64², 128², 256², and FEM on shapes the training
never drew (an L-shape, a disk, a square with holes, a long rectangle) at 5,000 and 20,000
nodes; PCG to 1e-6 (at most 5,000 iterations) on one fixed random right-hand side each. Also measured: the setup
(one network forward) time against nnz, the training throughput (an epoch over 1,000
problems), a batch of 64 problems against one problem of the same size, and the memory a
training step keeps for its backward at two batch sizes. Writes
``bench/results/neural-cpu.md`` and ``bench/results/neural-scaling.png``; float64 on the
CPU, one thread.
"""
from __future__ import annotations

import argparse
import functools
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from learnsolve.evaluation import compare_preconditioners  # noqa: E402
from learnsolve.nn import FactorNet  # noqa: E402
from learnsolve.problems import (ProblemSet, batch_problems, random_grid_problem,  # noqa: E402
                                 random_mesh_problem, random_spd_problem)
from learnsolve.problems.mesh import mesh_size  # noqa: E402
from learnsolve.solvers import PCG, NeuralFactor, pcg_loss  # noqa: E402
from learnsolve.train import Trainer  # noqa: E402

F64 = torch.float64
RESULTS = ROOT / "bench" / "results"
BASELINES = ("none", "jacobi", "ic0", "ic0_rcm", "ic1", "spai", "amg")
#: The most PCG iterations of an evaluation solve: 10 n (scipy's default) would let the
#: classical SPAI, which stalls on jump coefficients, run for 650,000 at 256².
MAXITER = 5_000
TRAINING = functools.partial(random_spd_problem, nodes=(200, 1_024),
                             families=("lognormal", "jump", "fem"), geometry="random_polygon",
                             dtype=F64)


def loss(model, problem, X):
    return pcg_loss(model, problem, X, iterations=10)


def model(seed: int) -> NeuralFactor:
    torch.manual_seed(seed)
    return NeuralFactor(FactorNet(16, 2), ordering="rcm").double()


def _mesh(seed: int, geometry: str, nodes: int):
    area = float(random_mesh_problem(seed, h=0.25, geometry=geometry).mesh.areas.sum())
    return random_mesh_problem(seed, h=mesh_size(nodes, area), geometry=geometry,
                               coefficient="lognormal", dtype=F64)


def held_out(quick: bool):
    """Other seeds, larger sizes, shapes the training never drew."""
    sizes = (24,) if quick else (64, 128, 256)
    nodes = (600,) if quick else (5_000, 20_000)
    problems = [random_grid_problem(90_000 + 10 * i + j, n=n, coefficient=coefficient,
                                    dtype=F64)
                for i, n in enumerate(sizes) for j, coefficient in enumerate(("lognormal",
                                                                              "jump"))]
    problems += [_mesh(92_000 + 10 * j + k, geometry, count) for j, count in enumerate(nodes)
                 for k, geometry in enumerate(("l_shape", "disk", "square_with_holes",
                                               "rectangle"))]
    return problems


def train(seed: int, epochs: int, count: int):
    net = model(seed)
    trainer = Trainer(PCG(M=net, maxiter=10, rtol=0.0), loss=loss, lr=1e-2, epochs=epochs,
                      rhs_per_problem=4, problems_per_step=8, batch=True, seed=seed,
                      progress=False)
    start = time.perf_counter()
    trainer.fit(ProblemSet(TRAINING, count, seed=1_000 + seed))
    return net, time.perf_counter() - start


def throughput(count: int, repeats: int = 1) -> dict:
    """Seconds of a training epoch over ``count`` problems, batched (8 a step) and one by
    one, after a first epoch that builds what is cached per problem."""
    problems = ProblemSet(TRAINING, count, seed=5)
    seconds = {}
    for batch in (True, False):
        trainer = Trainer(PCG(M=model(0), maxiter=10, rtol=0.0), loss=loss, epochs=1 + repeats,
                          rhs_per_problem=4, problems_per_step=8, batch=batch, seed=0,
                          progress=False).fit(problems)
        seconds[batch] = float(np.mean(trainer.history_.time[1:]))
    return seconds


def _step(net, problem, X) -> float:
    start = time.perf_counter()
    loss(PCG(M=net, maxiter=10, rtol=0.0), problem, X).backward()
    return time.perf_counter() - start


def batch_versus_one(count: int = 64, n: int = 16) -> tuple[float, float, int]:
    """Seconds of a training step on ``count`` grids of ``n²`` as one batch, and on one grid
    of the same total size (best of three, after a warm-up)."""
    net = model(0)
    batch = batch_problems([random_grid_problem(s, n=n, dtype=F64) for s in range(count)])
    side = int(round((count * n * n) ** 0.5))
    one = random_grid_problem(0, n=side, dtype=F64)
    times = []
    for problem in (batch, one):
        X = problem.random_rhs(4, seed=0, normalize=True)
        _step(net, problem, X)
        times.append(min(_step(net, problem, X) for _ in range(3)))
    return times[0], times[1], one.num_nodes


def step_memory(counts=(8, 32)) -> list[tuple[int, int]]:
    """``(nnz of the batch, bytes the step's graph keeps for its backward)`` for batches of
    ``counts`` training problems: the tensors autograd saves, counted once each."""
    out = []
    for count in counts:
        problems = [TRAINING(7_000 + i) for i in range(count)]
        batch = batch_problems(problems)
        X = torch.cat([p.random_rhs(4, seed=0, normalize=True) for p in problems])
        saved = {}

        def pack(tensor):
            saved[id(tensor)] = tensor.untyped_storage().nbytes()
            return tensor
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
            value = loss(PCG(M=model(0), maxiter=10, rtol=0.0), batch, X)
        value.backward()
        out.append((batch.A.nnz, sum(saved.values())))
    return out


def ratios(evaluation, method: str = "trained", reference: str = "ic0") -> list[float]:
    rows = {(r.index, r.method): r for r in evaluation}
    return [row.iterations / rows[(index, reference)].iterations
            if row.converged and rows[(index, reference)].converged else float("inf")
            for (index, name), row in rows.items() if name == method]


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--problems", type=int, default=128)
    parser.add_argument("--quick", action="store_true", help="small held-out set and timings")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    args.out.mkdir(parents=True, exist_ok=True)
    test = held_out(args.quick)
    command = (f"`.venv/bin/python bench/neural.py --seeds {args.seeds} --epochs {args.epochs} "
               f"--problems {args.problems}{' --quick' if args.quick else ''}`")
    lines = ["# A preconditioner that generalises (bench/neural.py)", "",
             f"Command: {command} (CPU {platform.machine()}, one thread, float64, torch "
             f"{torch.__version__}). Trained on {args.problems} problems of 200-1,024 unknowns "
             f"(lognormal and jump grids, FEM on random polygons) for {args.epochs} epochs; "
             f"held out: {len(test)} problems of {min(p.num_nodes for p in test):,}-"
             f"{max(p.num_nodes for p in test):,} unknowns.", ""]
    epoch = throughput(40 if args.quick else 1_000)
    batch_time, one_time, one_n = batch_versus_one(8 if args.quick else 64)
    memory = step_memory((2, 4) if args.quick else (8, 32))
    lines += ["## Training cost", "",
              f"- An epoch over {40 if args.quick else 1_000} problems: {epoch[True]:.1f} s "
              f"batched (8 a step), {epoch[False]:.1f} s one by one "
              f"({epoch[False] / epoch[True]:.2f}x).",
              f"- A step on a batch of {8 if args.quick else 64} grids of 16²: "
              f"{batch_time * 1e3:.0f} ms; on one grid of {one_n:,} unknowns (the same size): "
              f"{one_time * 1e3:.0f} ms ({batch_time / one_time:.2f}x).",
              "- Memory a step keeps for its backward: " + ", ".join(
                  f"{nbytes / 2**20:.1f} MiB at nnz {nnz:,} ({nbytes / nnz:.0f} B per nonzero)"
                  for nnz, nbytes in memory) + ".", ""]
    results = []
    for seed in range(args.seeds):
        net, seconds = train(seed, args.epochs, args.problems)
        evaluation = compare_preconditioners(net, test, maxiter=MAXITER, baselines=BASELINES)
        results.append((seed, seconds, float(net.alpha.detach()), evaluation))
        if seed == 0:
            evaluation.plot_scaling().savefig(args.out / "neural-scaling.png", dpi=120)
    families = list(dict.fromkeys(p.info["family"] for p in test))
    lines += ["## Learned / IC(0) iterations per held-out family (all seeds)", "",
              "| family | median | worst | solve time vs IC(0), median |", "|---|---|---|---|"]
    for family in families:
        r, t = [], []
        for *_, evaluation in results:
            rows = [row for row in evaluation if row.family == family]
            by = {(row.index, row.method): row for row in rows}
            for (index, method), row in by.items():
                if method == "trained":
                    reference = by[(index, "ic0")]
                    r.append(row.iterations / reference.iterations)
                    t.append(row.solve_time / reference.solve_time)
        lines.append(f"| {family} | {np.median(r):.2f} | {max(r):.2f} | {np.median(t):.2f} |")
    every = [x for *_, evaluation in results for x in ratios(evaluation)]
    above = sum(x > 1 for x in every)
    lines += ["", f"Over all seeds and problems: median {np.median(every):.2f}, worst "
              f"{max(every):.2f}; {above} of {len(every)} solves took more iterations than "
              f"IC(0).", "", "| seed | training time | alpha | median | worst |",
              "|---|---|---|---|---|"]
    lines += [f"| {seed} | {seconds:.0f} s | {alpha:.3f} | {np.median(ratios(ev)):.2f} | "
              f"{max(ratios(ev)):.2f} |" for seed, seconds, alpha, ev in results]
    first = results[0][3]
    by = {(row.index, row.method): row for row in first}
    lines += ["", "## Setup time against nnz (seed 0)", "",
              "| problem | n | nnz | NeuralFactor setup (s) | IC(0) setup (s) |",
              "|---|---|---|---|---|"]
    for index, problem in enumerate(test):
        lines.append(f"| {problem.name} | {problem.num_nodes:,} | {problem.A.nnz:,} | "
                     f"{by[(index, 'trained')].setup_time:.4f} | "
                     f"{by[(index, 'ic0')].setup_time:.4f} |")
    for seed, seconds, alpha, evaluation in results:
        lines += ["", f"## Training seed {seed}: every method", "",
                  evaluation.summary(reference="ic0").to_markdown()]
    (args.out / "neural-cpu.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return {"epoch": epoch, "batch_vs_one": batch_time / one_time, "memory": memory,
            "ratios": {seed: ratios(ev) for seed, _, _, ev in results}, "families": families}


if __name__ == "__main__":
    main()
