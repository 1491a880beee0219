"""Running a function in several processes of a gloo process group, for the tests of
distributed training: :func:`spawn` starts them (``torch.multiprocessing``, spawn), each
process joins the group, runs one of :data:`JOBS` and saves what it returns; a process
that raises ends the run with its error, and a run past its timeout is killed.

The trainings here are built the same way in one process (the tests' reference) and in
several (:func:`training`).
"""
from __future__ import annotations

import io
import os
import socket
import time
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from learnsolve.nn import FactorNet
from learnsolve.problems import ProblemSet, poisson_1d, random_spd_problem
from learnsolve.solvers import PCG, NeuralFactor, pcg_loss
from learnsolve.solvers.jacobi import Jacobi
from learnsolve.train import Checkpoint, ProgressBar, Trainer

F64 = torch.float64


# ---------------------------------------------------------------------- the trainings
def spd(seed: int, index: int):
    return random_spd_problem(seed, index, nodes=(60, 140), families=("lognormal", "jump"),
                              dtype=F64)


def neural_loss(model, problem, X):
    return pcg_loss(model, problem, X, iterations=4)


class Made:
    """A factory that records the indices of the problems it made (in this process)."""

    def __init__(self):
        self.indices = []

    def __call__(self, seed: int, index: int):
        self.indices.append(index)
        return spd(seed, index)


def training(kind: str, **options) -> tuple[Trainer, object, object]:
    """``(trainer, problems, validation)`` of a small training of ``kind``:

    - ``"neural"``: NeuralFactor through 4 PCG iterations, 7 problems of 60 to 140
      unknowns, 3 a step (steps of 3, 3, 1: uneven shares, an idle rank), batched,
      a validation set of 3 and the keep_best of its loss;
    - ``"jacobi"``: a weight per node on 5 problems of one size, LBFGS, 2 a step.
    """
    if kind == "neural":
        torch.manual_seed(0)
        model = PCG(M=NeuralFactor(FactorNet(8, 2)).double(), maxiter=4, rtol=0.0)
        trainer = Trainer(model, loss=neural_loss, **{
            "lr": 1e-2, "epochs": 3, "rhs_per_problem": 2, "problems_per_step": 3,
            "batch": True, "seed": 3, "progress": False, "keep_best": "val_loss", **options})
        return trainer, ProblemSet(Made(), 7, seed=11), ProblemSet(spd, 3, seed=12)
    if kind == "jacobi":
        problems = [poisson_1d(12, dtype=F64) for _ in range(5)]
        for k, problem in enumerate(problems):
            problem.A = problem.A.with_values(problem.A.values * (1 + k))
        trainer = Trainer(Jacobi(0.7, num_nodes=12).double(), **{
            "epochs": 2, "rhs_per_problem": 3, "problems_per_step": 2, "optimizer": lbfgs,
            "seed": 5, "progress": False, **options})
        return trainer, problems, None
    raise ValueError(kind)


def lbfgs(params):
    return torch.optim.LBFGS(params, lr=0.1, max_iter=3)


def parameters(trainer: Trainer) -> dict:
    return {k: v.detach().clone() for k, v in trainer.model.state_dict().items()}


def history(trainer: Trainer) -> list[dict]:
    return [{k: v for k, v in row.items() if k != "time"} for row in trainer.history_]


# ---------------------------------------------------------------------- the jobs
def callbacks(save, bar=None) -> list:
    """A progress bar (into ``bar``) and a checkpoint at each epoch's end into ``save``."""
    return [ProgressBar(file=io.StringIO() if bar is None else bar), Checkpoint(save)]


def train(rank: int, kind: str, save: str, load: str | None = None,
          epochs: int | None = None) -> dict:
    bar = io.StringIO()
    trainer, problems, validation = training(kind, callbacks=callbacks(save, bar))
    if epochs is not None:
        trainer.epochs = epochs
    if load:
        trainer.load(load)
    trainer.fit(problems, validation=validation)
    made = sorted(problems._make.factory.indices) if kind == "neural" else []
    return {"parameters": parameters(trainer), "history": history(trainer),
            "bar": bar.getvalue(), "world_size": trainer.group_.world_size, "made": made}


def fail(rank: int) -> dict:
    """Rank 1's loss raises at its second step; the others would wait for it."""
    calls = []

    def loss(model, problem, X):
        calls.append(1)
        if rank == 1 and len(calls) == 2:
            raise RuntimeError("a loss failed on rank 1")
        return model.loss(problem, X)

    problems = [poisson_1d(8, dtype=F64) for _ in range(6)]
    Trainer(Jacobi(1.0, num_nodes=8).double(), loss=loss, epochs=2, problems_per_step=2,
            seed=0, progress=False).fit(problems)
    return {}


def seeds(rank: int) -> dict:
    Trainer(Jacobi(1.0, num_nodes=8).double(), seed=rank, progress=False).fit(
        poisson_1d(8, dtype=F64))
    return {}


JOBS = {"train": train, "fail": fail, "seeds": seeds}


# ---------------------------------------------------------------------- the processes
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _entry(rank: int, world_size: int, port: int, job: str, out: str, kwargs: dict) -> None:
    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world_size)
    try:
        result = JOBS[job](rank, **kwargs)
        torch.save(result, Path(out) / f"rank{rank}.pt")
        dist.barrier()
    finally:
        dist.destroy_process_group()


def spawn(job: str, out, world_size: int = 2, timeout: float = 120.0, **kwargs) -> list:
    """Run ``JOBS[job](rank, **kwargs)`` in ``world_size`` processes; their results, by
    rank. The error of a process that raised, re-raised here
    (``torch.multiprocessing.ProcessRaisedException``); a TimeoutError past ``timeout``
    seconds, the processes killed."""
    context = mp.start_processes(_entry, args=(world_size, _free_port(), job, str(out), kwargs),
                                 nprocs=world_size, join=False, start_method="spawn")
    deadline = time.monotonic() + timeout
    while not context.join(timeout=max(deadline - time.monotonic(), 0.0)):
        if time.monotonic() >= deadline:
            for process in context.processes:
                process.kill()
            raise TimeoutError(f"{job}: {world_size} processes still running after "
                               f"{timeout:g} s")
    return [torch.load(Path(out) / f"rank{rank}.pt", weights_only=True)
            for rank in range(world_size)]
