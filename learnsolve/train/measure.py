"""What the :class:`~learnsolve.train.Trainer` measures after an epoch, without gradients:
the validation loss on fixed vectors and the metrics."""
from __future__ import annotations

import math

import torch

from .sampling import fixed_rhs

__all__ = ["Measure", "mean"]


def mean(values) -> float:
    """The mean of some numbers, summed exactly (``math.fsum``)."""
    values = list(values)
    return math.fsum(values) / len(values)


class Measure:
    """The trainer's measurements (a mixin of :class:`~learnsolve.train.Trainer`: its
    ``model``, ``metrics``, ``rhs_per_problem``, ``seed``, ``distribution``, ``_loss``)."""

    @torch.no_grad()
    def _measure(self, train, valid, with_loss: bool = False) -> dict:
        """``val_loss`` and the metrics after an epoch (evaluation mode, no gradients);
        ``with_loss``: the ``loss`` on the training problems first, on fixed vectors."""
        logs = {}
        if valid is None and not self.metrics and not with_loss:
            return logs
        self.model.eval()
        try:
            if with_loss:
                logs["loss"] = self._fixed_vectors_loss(train)
            if valid is not None:
                logs["val_loss"] = self._fixed_vectors_loss(valid)
            for name, metric in self.metrics.items():
                values = []
                for problem in train if valid is None else valid:
                    value = metric(self.model, problem)
                    if isinstance(value, torch.Tensor):
                        value = value.detach()
                    try:
                        values.append(float(value))
                    except (TypeError, ValueError) as error:
                        raise TypeError(f"metrics[{name!r}]: expected a number, got "
                                        f"{type(value).__name__}") from error
                logs[name] = mean(values)
        finally:
            self.model.train()
        return logs

    def _fixed_vectors_loss(self, problems) -> float:
        """The mean loss on ``problems`` for vectors from a generator seeded anew with the
        trainer's seed: the same vectors at every call, so that calls compare."""
        return mean(float(self._loss(p, X)) for p, X in fixed_rhs(
            problems, self.rhs_per_problem, self.seed or 0, self.distribution))
