"""Training throughput over processes: the neural preconditioner (NeuralFactor started
from IC(0), through 10 unrolled PCG iterations) trained by the Trainer in one process and
under torch.distributed with 2 (or ``--processes``) processes, problems per second.

    .venv/bin/python bench/distributed.py [--problems 256] [--epochs 3]
                                          [--markdown bench/results/distributed-cpu.md]

Each configuration trains on the same ``--problems`` problems of ``random_spd_problem``
(lognormal and jump grids, P1 FEM on random polygons, 200 to 1,024 unknowns, float64),
saved once with ``ProblemSet.save`` and read from disk by ``ProblemSet.load`` (each
process reads the file of each problem it trains on, at each access: what a set larger
than memory costs), ``--problems-per-step`` a step (8 and 32 by default) batched into
one block-diagonal problem, 4 right-hand sides each, for ``--epochs`` epochs; the
throughput is the problems of the epochs after the first (a warm-up) over their time,
from the trainer's history (rank 0's). One process: a plain Trainer, one torch thread.
Several: processes in a gloo group, one torch thread each, the same Trainer (which
then shares each step's problems among them and averages the gradients with DDP).
Every run is a process (or processes) spawned afresh by ``torch.multiprocessing``; the
configurations run in turns, ``--repeat`` times, on one machine, and the table gives the
best throughput of each and the median of the paired ratios; the parameters they end
with are compared (the same training, to rounding).

On a GPU machine, ``--device cuda`` gives each process a GPU (NCCL); the machine needs as
many GPUs as processes. Loading a large set from disk is measured by
``bench/problem_store.py``.
"""
from __future__ import annotations

import argparse
import functools
import os
import socket
import statistics
import sys
import tempfile
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(1, str(ROOT / "bench"))

from learnsolve.nn import FactorNet  # noqa: E402
from learnsolve.problems import ProblemSet, random_spd_problem  # noqa: E402
from learnsolve.solvers import PCG, NeuralFactor, pcg_loss  # noqa: E402
from learnsolve.train import Trainer  # noqa: E402
from problems import machine_info  # noqa: E402

F64 = torch.float64
PROBLEMS = functools.partial(random_spd_problem, nodes=(200, 1_024),
                             families=("lognormal", "jump", "fem"), geometry="random_polygon",
                             dtype=F64)


def loss(model, problem, X):
    return pcg_loss(model, problem, X, iterations=10)


def train(directory: str, epochs: int, device: str | None, per_step: int = 8) -> dict:
    """Train in this process (alone or as a rank of the group); rank 0's measures."""
    torch.manual_seed(0)
    net = NeuralFactor(FactorNet(16, 2), ordering="rcm").double()
    trainer = Trainer(PCG(M=net, maxiter=10, rtol=0.0), loss=loss, lr=1e-2, epochs=epochs,
                      rhs_per_problem=4, problems_per_step=per_step, batch=True, seed=0,
                      progress=False, device=device)
    problems = ProblemSet.load(directory)
    count = len(problems)
    trainer.fit(problems)
    seconds = float(trainer.history_.time[1:].sum())
    return {"seconds": seconds, "per_second": count * (epochs - 1) / seconds,
            "first_epoch": float(trainer.history_.time[0]),
            "parameters": {k: v.cpu() for k, v in net.state_dict().items()},
            "loss": trainer.history_.loss.tolist()}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rank(rank: int, world: int, port: int, out: str, directory: str, epochs: int,
          device: str | None, per_step: int) -> None:
    torch.set_num_threads(1)
    if world == 1:                  # one process: a plain Trainer, no process group
        torch.save(train(directory, epochs, device, per_step), out)
        return
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), LOCAL_RANK=str(rank))
    backend = "nccl" if device == "cuda" else "gloo"
    dist.init_process_group(backend, rank=rank, world_size=world)
    try:
        result = train(directory, epochs, device, per_step)
        if rank == 0:
            torch.save(result, out)
        dist.barrier()
    finally:
        dist.destroy_process_group()


def spawned(world: int, directory: str, epochs: int, device: str | None, per_step: int
            ) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = str(Path(tmp) / "rank0.pt")
        mp.start_processes(_rank, args=(world, _free_port(), out, directory, epochs, device,
                                        per_step),
                           nprocs=world, start_method="spawn")
        return torch.load(out, weights_only=True)


def max_difference(a: dict, b: dict) -> float:
    return max(float((a[k] - b[k]).abs().max() / b[k].abs().max().clamp_min(1e-300))
               for k in a)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problems", type=int, default=256)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--problems-per-step", default="8,32",
                        help="global batches to measure, comma-separated (default 8,32)")
    parser.add_argument("--repeat", type=int, default=3,
                        help="runs of each configuration, in turns (default 3)")
    parser.add_argument("--device", default=None, help="cpu (default) or cuda")
    parser.add_argument("--markdown", metavar="PATH")
    args = parser.parse_args(argv)
    if args.epochs < 2:
        parser.error("--epochs: expected at least 2 (the first is not timed)")
    torch.set_num_threads(1)
    header = machine_info()
    batches = [int(k) for k in args.problems_per_step.split(",")]
    results = {}
    with tempfile.TemporaryDirectory() as directory:
        ProblemSet(PROBLEMS, args.problems, seed=7).save(directory, workers=2)
        for k in batches:
            runs = {1: [], args.processes: []}
            for _ in range(args.repeat):        # in turns: the machine's drift hits both
                for world in runs:
                    runs[world].append(spawned(world, directory, args.epochs, args.device, k))
            ratios = [b["per_second"] / a["per_second"]
                      for a, b in zip(runs[1], runs[args.processes])]
            for world, measured in runs.items():
                best = max(measured, key=lambda result: result["per_second"])
                results[k, world] = {**best, "ratio": statistics.median(ratios)
                                     if world != 1 else 1.0}
    lines = ["# Training over processes (bench/distributed.py)", ""]
    lines += [f"- {line}" for line in header]
    lines += [f"- command: `python bench/distributed.py {' '.join(argv or sys.argv[1:])}`",
              f"- device: {args.device or 'cpu'}; one torch thread per process", "",
              f"NeuralFactor(FactorNet(16, 2), ordering='rcm') through 10 PCG iterations, "
              f"{args.problems} problems of random_spd_problem (200 to 1,024 unknowns, "
              f"float64) read from disk (ProblemSet.load), `problems_per_step` a step (shared "
              f"among the processes) batched, 4 right-hand sides each, {args.epochs} epochs; "
              f"throughput over the epochs after the first; speed-up and parameters against "
              f"one process with the same problems_per_step; {args.repeat} runs of each, in "
              f"turns, each spawned afresh: the best throughput of each, and the median "
              f"ratio of the pairs.", "",
              "| problems_per_step | processes | first epoch | later epochs | problems / s | "
              "speed-up (best) | speed-up (median of pairs) | parameters vs 1 process |",
              "|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for (k, world), result in results.items():
        one = results[k, 1]
        lines.append(f"| {k} | {world} | {result['first_epoch']:.2f} s | "
                     f"{result['seconds']:.2f} s | {result['per_second']:.1f} | "
                     f"{result['per_second'] / one['per_second']:.2f}x | "
                     f"{result['ratio']:.2f}x | "
                     f"{max_difference(result['parameters'], one['parameters']):.1e} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.markdown:
        Path(args.markdown).write_text(text)
    return results


if __name__ == "__main__":
    main()
