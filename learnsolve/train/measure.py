"""What the :class:`~learnsolve.train.Trainer` measures after an epoch, without gradients:
the validation loss on fixed vectors and the metrics.

In a distributed training each process measures its share of the problems
(every ``world_size``-th) and the sums are added over the processes, so that
every process records the same means.
"""
from __future__ import annotations

import math

import torch

from .sampling import fixed_rhs

__all__ = ["Measure"]


class Measure:
    """The trainer's measurements (a mixin of :class:`~learnsolve.train.Trainer`: its
    ``model``, ``metrics``, ``rhs_per_problem``, ``seed``, ``distribution``, ``_loss``,
    ``group_``)."""

    @torch.no_grad()
    def _measure(self, train, valid, with_loss: bool = False) -> dict:
        """``val_loss`` and the metrics after an epoch (evaluation mode, no gradients);
        ``with_loss``: the ``loss`` on the training problems first, on fixed vectors."""
        if valid is None and not self.metrics and not with_loss:
            return {}
        measured = train if valid is None else valid
        sums, counts = {}, {}
        self.model.eval()
        try:
            if with_loss:
                sums["loss"], counts["loss"] = self._fixed_vectors_loss(train), len(train)
            if valid is not None:
                sums["val_loss"], counts["val_loss"] = self._fixed_vectors_loss(valid), \
                    len(valid)
            mine = self._share(len(measured))
            for name, metric in self.metrics.items():
                sums[name] = math.fsum(_number(metric(self.model, measured[i]), name)
                                       for i in mine)
                counts[name] = len(measured)
        finally:
            self.model.train()
        totals = list(sums.values())
        if self.group_ is not None:
            totals = self.group_.sum(totals)
        return {name: total / counts[name] for name, total in zip(sums, totals)}

    def _share(self, count: int) -> list[int]:
        """The positions of ``count`` problems this process measures (all in one)."""
        positions = list(range(count))
        return positions if self.group_ is None else self.group_.share(positions)

    def _fixed_vectors_loss(self, problems) -> float:
        """The sum of the losses on this process's share of ``problems`` for vectors
        from the trainer's seed and their positions: the same vectors at every call,
        so that calls compare."""
        mine = self._share(len(problems))
        return math.fsum(float(self._loss(p, X)) for p, X in fixed_rhs(
            [problems[i] for i in mine], self.rhs_per_problem, self.seed or 0,
            self.distribution, positions=mine))


def _number(value, name: str) -> float:
    """A metric's value as a float (TypeError naming the metric otherwise)."""
    if isinstance(value, torch.Tensor):
        value = value.detach()
    try:
        return float(value)
    except (TypeError, ValueError) as error:
        raise TypeError(f"metrics[{name!r}]: expected a number, got "
                        f"{type(value).__name__}") from error
