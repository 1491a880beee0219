"""Train the neural preconditioner (NeuralFactor, started from IC(0)) with several processes.

The same script runs in one process or under ``torchrun``, on one machine or many::

    python examples/train_distributed.py                              # one process
    torchrun --nproc_per_node=2 examples/train_distributed.py         # two
    torchrun --nproc_per_node=2 examples/train_distributed.py --data problems/

Each process takes its share of every step's problems (``--problems-per-step``, the
global batch, the same whatever the number of processes); the gradients are averaged by
DistributedDataParallel; rank 0 shows the progress bar and writes the model. With
``--data DIR``, the problems are read lazily from a set saved by ``ProblemSet.save``
(each process reads only the problems it trains on); without it they are generated.

On GPUs (``--device cuda``), each process takes the GPU of its ``LOCAL_RANK`` and NCCL
carries the gradients; on CPUs, gloo (set ``OMP_NUM_THREADS`` to the cores per process).
"""
from __future__ import annotations

import argparse
import functools

import torch
import torch.distributed as dist

from learnsolve.nn import FactorNet
from learnsolve.problems import ProblemSet, random_spd_problem
from learnsolve.solvers import PCG, NeuralFactor, pcg_loss
from learnsolve.train import Trainer


def loss(model, problem, X):
    return pcg_loss(model, problem, X, iterations=10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", help="a directory written by ProblemSet.save")
    parser.add_argument("--problems", type=int, default=256,
                        help="problems to generate without --data (default 256)")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--problems-per-step", type=int, default=8)
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cpu)")
    parser.add_argument("--out", default="neural_factor.pt", help="the trained state dict")
    args = parser.parse_args()

    if args.data:
        problems = ProblemSet.load(args.data)
    else:
        problems = ProblemSet(functools.partial(random_spd_problem, nodes=(200, 1_000),
                                                families=("lognormal", "jump", "fem"),
                                                dtype=torch.float64), args.problems, seed=0)
    torch.manual_seed(0)        # DDP gives every process rank 0's parameters anyway
    net = NeuralFactor(FactorNet(16, 2), ordering="rcm").double()
    trainer = Trainer(PCG(M=net, maxiter=10, rtol=0.0), loss=loss, lr=1e-2, epochs=args.epochs,
                      rhs_per_problem=4, problems_per_step=args.problems_per_step, batch=True,
                      seed=0, device=args.device, distributed=dist.is_torchelastic_launched())
    trainer.fit(problems)
    world = 1 if trainer.group_ is None else trainer.group_.world_size
    if trainer.group_ is None or trainer.group_.rank == 0:
        torch.save(net.state_dict(), args.out)
        print(f"trained on {world} processes: loss {trainer.history_.loss[0]:.4g} -> "
              f"{trainer.history_.loss[-1]:.4g}, {trainer.history_.time.sum():.1f} s; "
              f"wrote {args.out}")
    if dist.is_initialized():
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
