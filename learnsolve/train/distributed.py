"""Training over several processes with ``torch.distributed``: the
:class:`~learnsolve.train.Trainer`'s side of it.

Launch the same script once per process, with ``torchrun`` (one process per
GPU, or per CPU socket)::

    torchrun --nproc_per_node=2 train.py                  # one machine
    torchrun --nnodes=4 --nproc_per_node=8 --rdzv_backend=c10d \\
             --rdzv_endpoint=$HOST:29500 train.py         # several (on each)

What the trainer does then (:class:`ProcessGroup`), with ``W`` processes:

- **The steps are those of one process.** An epoch's order (shuffled by the
  trainer's generator, seeded alike on every rank) and its steps of
  ``problems_per_step`` problems are the same on every rank; each rank takes
  a share of each step's problems, balanced by their stored entries where
  these are known without reading the problems (problems in memory, a set
  loaded from disk, whose index has them), else those at positions ``r, r +
  W, ...`` (uneven shares allowed; a rank without a problem in a step takes
  part with a zero loss), and reads only those (a lazy
  :class:`~learnsolve.problems.ProblemSet` loads nothing else). Each
  problem's vectors are drawn from its position
  (:mod:`~learnsolve.train.sampling`), so they are the vectors a single
  process would draw.
- **Gradients**: the model is wrapped in
  :class:`~torch.nn.parallel.DistributedDataParallel`; each rank's loss is
  the sum of its problems' losses times ``W / k`` (``k`` the problems of the
  step on all ranks), so that DDP's average is the gradient of the step's
  mean loss, as in one process. A training gives the same parameters whatever
  ``W`` is, to rounding. A trainable parameter that a step's loss does not use
  gets a zero gradient there (in one process: none).
- **Numbers every rank must agree on** (the step's loss, which decides a
  non-finite stop and which a closure optimizer such as LBFGS reads; the
  validation loss and metrics, measured on each rank's share of the
  validation problems) are summed over the ranks: the history is the same on
  every rank, and so are ``keep_best`` and early stopping.
- **Rank 0 writes**: the progress bar and the other callbacks marked
  ``rank_zero_only`` run there only; :meth:`~learnsolve.train.Trainer.save`
  writes there (every rank calls it and waits for the file). A saved training
  resumes with any number of processes.

A rank that raises ends its process; ``torchrun`` (and
``torch.multiprocessing.spawn``) then stop the others and report the error.
:meth:`~learnsolve.train.Trainer.evaluate` and the plots are not shared: each
process computes them over all the problems it is given.
"""
from __future__ import annotations

import os
import warnings
from typing import Callable, Sequence

import torch
import torch.distributed as dist
from torch import nn

from .options import check_differentiable

__all__ = ["ProcessGroup", "process_group"]

#: The environment ``torchrun`` gives each process.
TORCHRUN_VARIABLES = ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


class _StepLoss(nn.Module):
    """What DDP wraps: the model, and a forward that is a rank's share of a step's loss.

    ``forward(pairs, scale)`` returns ``(scale * sum of the losses, their sum)``,
    the second detached; ``pairs`` holds ``(problem, X, count)``, ``count`` the
    problems ``problem`` stands for (more than one for a batch). Every trainable
    parameter takes part (a zero term), as DDP needs of each rank at each step.
    """

    def __init__(self, model: nn.Module, loss: Callable):
        super().__init__()
        self.model = model
        self.loss = loss

    def forward(self, pairs: list, scale: float) -> tuple[torch.Tensor, torch.Tensor]:
        params = [p for p in self.model.parameters() if p.requires_grad]
        total = sum((p.sum() * 0 for p in params[1:]), params[0].sum() * 0)
        if not pairs:
            return total, total.detach()
        losses = []
        for problem, X, count in pairs:
            loss = check_differentiable(self.loss(problem, X))
            losses.append(loss * count if count != 1 else loss)
        local = losses[0] if len(losses) == 1 else torch.stack(losses).sum()
        return total + local.to(total.dtype) * scale, local.detach()


class ProcessGroup:
    """The processes a training runs on, as the trainer uses them.

    Parameters
    ----------
    device : torch.device
        Where the numbers summed over the ranks live: the trainer's device
        (NCCL needs CUDA tensors, gloo takes CPU ones).
    group : torch.distributed.ProcessGroup, optional
        Default: the default group (``torch.distributed.init_process_group``).

    Attributes
    ----------
    rank, world_size : int
    """

    def __init__(self, device: torch.device, group=None):
        self.group = group
        self.rank = dist.get_rank(group)
        self.world_size = dist.get_world_size(group)
        self.device = device

    def __repr__(self) -> str:
        return (f"ProcessGroup(rank {self.rank} of {self.world_size}, "
                f"{dist.get_backend(self.group)})")

    def share(self, positions: Sequence[int], costs: Sequence[float] | None = None
              ) -> list[int]:
        """This rank's positions among ``positions``, in their order.

        Without ``costs``, every ``world_size``-th from its rank. With them (one
        per position, such as the problems' stored entries), balanced: the
        positions by decreasing cost (ties in order) each to the rank with the
        least cost so far (ties to the lowest rank), so that no rank waits long
        for another at the step's end. Every rank computes the same shares.

        Examples
        --------
        >>> group = ProcessGroup.__new__(ProcessGroup)
        >>> group.rank, group.world_size = 1, 2
        >>> group.share([0, 1, 2, 3, 4])
        [1, 3]
        >>> group.share([0, 1, 2, 3, 4], costs=[5, 1, 1, 4, 1])     # 5 + 1 and 4 + 1 + 1
        [1, 3, 4]
        """
        positions = list(positions)
        if costs is None:
            return positions[self.rank::self.world_size]
        load = [0.0] * self.world_size
        mine = []
        for k in sorted(range(len(positions)), key=lambda k: -costs[k]):
            rank = min(range(self.world_size), key=load.__getitem__)
            load[rank] += costs[k]
            if rank == self.rank:
                mine.append(k)
        return [positions[k] for k in sorted(mine)]

    def sum(self, values: Sequence[float]) -> list[float]:
        """``values`` (as float64) summed over the ranks, element by element."""
        tensor = torch.tensor(list(values), dtype=torch.float64, device=self.device)
        dist.all_reduce(tensor, group=self.group)
        return tensor.tolist()

    def broadcast(self, value: int) -> int:
        """Rank 0's ``value`` (an integer), on every rank."""
        tensor = torch.tensor([value], dtype=torch.int64, device=self.device)
        dist.broadcast(tensor, src=dist.get_global_rank(self.group, 0)
                       if self.group is not None else 0, group=self.group)
        return int(tensor)

    def agree(self, value: int | None, name: str) -> int:
        """An integer every rank shares: rank 0's ``value`` (a fresh random one if it is
        None). A rank given another one than rank 0 raises a ValueError naming
        ``name``, and so do the others."""
        mine = torch.Generator().seed() >> 2 if value is None else int(value)
        agreed = self.broadcast(mine)
        if self.sum([value is not None and value != agreed])[0]:
            raise ValueError(f"{name}: expected the same value on every process, got "
                             f"{value} on rank {self.rank} and {agreed} on rank 0")
        return agreed

    def barrier(self) -> None:
        dist.barrier(group=self.group)

    def wrap(self, model: nn.Module, loss: Callable) -> nn.Module:
        """``model`` and ``loss(problem, X)`` as a :class:`_StepLoss` inside DDP (which
        gives every rank rank 0's parameters and buffers)."""
        return nn.parallel.DistributedDataParallel(_StepLoss(model, loss),
                                                   process_group=self.group)


def _torchrun_environment() -> bool:
    return all(name in os.environ for name in TORCHRUN_VARIABLES)


def _cuda_device(device: torch.device | None) -> torch.device | None:
    """``cuda`` without an index means this process's GPU: ``LOCAL_RANK`` (torchrun's)."""
    if device is None or device.type != "cuda" or device.index is not None:
        return device
    local = int(os.environ.get("LOCAL_RANK", dist.get_rank() % torch.cuda.device_count()))
    torch.cuda.set_device(local)
    return torch.device("cuda", local)


def process_group(distributed: bool | None, device: torch.device | None
                  ) -> tuple[ProcessGroup | None, torch.device | None]:
    """The processes a trainer with ``distributed`` trains on (None: one process), and
    its device (a bare ``"cuda"`` made this process's GPU).

    ``distributed=None`` (the default): the default process group if one is
    initialised with more than one process. ``True``: that group, initialised
    here from ``torchrun``'s environment if need be (backend NCCL for a CUDA
    device, gloo otherwise); a ValueError if there is neither. ``False``: one
    process, whatever runs around it.
    """
    if distributed is False:
        return None, device
    available = dist.is_available()
    if available and not dist.is_initialized() and distributed and _torchrun_environment():
        cuda = device is not None and device.type == "cuda"
        dist.init_process_group("nccl" if cuda else "gloo")
    if not (available and dist.is_initialized()):
        if distributed:
            raise ValueError("distributed: expected a process group (run the script under "
                             "torchrun, or call torch.distributed.init_process_group first), "
                             "found none")
        return None, device
    if distributed is None and dist.get_world_size() == 1:
        return None, device
    device = _cuda_device(device)
    collectives = torch.device("cpu")
    if dist.get_backend() == "nccl":
        collectives = device or torch.device("cuda", torch.cuda.current_device())
    return ProcessGroup(collectives), device


def warn_idle(problems_per_step: int, world_size: int) -> None:
    """Warn when a step has fewer problems than there are processes."""
    if problems_per_step < world_size:
        warnings.warn(f"Trainer: problems_per_step={problems_per_step} with {world_size} "
                      f"processes: each step's problems are shared among the processes, so "
                      f"{world_size - problems_per_step} of them idle at every step; raise "
                      f"problems_per_step to a multiple of {world_size}", UserWarning,
                      stacklevel=3)
