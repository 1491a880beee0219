"""``keep_best``: the part of the :class:`~learnsolve.train.Trainer` that keeps the
parameters of the best epoch (or of the start) by a history entry and ends ``fit`` with them.

The copies kept are of the whole ``model.state_dict()`` (buffers included): they
are what the model is given back. See the Notes of :class:`~learnsolve.train.Trainer`.
"""
from __future__ import annotations

import math
import warnings

import numpy as np

from .callbacks import _monitored
from .checkpoint import clone_state

__all__ = ["KeepBest"]


def _beats(value: float, best: float | None) -> bool:
    """Whether ``value`` replaces the best kept (None: none yet): finite, and strictly
    smaller than a finite best (a non-finite value never wins, a non-finite best loses)."""
    return math.isfinite(value) and (best is None or not math.isfinite(best) or value < best)


class KeepBest:
    """The trainer's ``keep_best`` methods (a mixin of :class:`~learnsolve.train.Trainer`:
    its attributes ``best_epoch_``, ``best_value_``, ``start_logs_``)."""

    def _keep_start(self, train, valid) -> None:
        """Measure the model a training starts from (``start_logs_``) and keep it."""
        self.start_logs_ = self._measure(train, valid, with_loss=self.keep_best == "loss")
        self._keep(-1, _monitored(self.start_logs_, self.keep_best))

    def _keep_if_better(self, epoch: int, logs: dict) -> None:
        value = _monitored(logs, self.keep_best)
        if _beats(value, self.best_value_):
            self._keep(epoch, value)

    def _keep(self, epoch: int, value: float) -> None:
        self.best_epoch_, self.best_value_ = epoch, value
        self._best_state = None      # the last copy goes first: two never coexist
        self._best_state = clone_state(self.model.state_dict())

    def _restore_best(self, trained: dict) -> None:
        """Put the best parameters in the model, keeping ``trained`` (those training
        reached) for a later fit; warn if no epoch beat the start."""
        self._trained_state = trained
        self.model.load_state_dict(self._best_state)
        if self.best_epoch_ == -1 and self.history_:
            warnings.warn(f"Trainer.fit: no epoch beat the start on keep_best="
                          f"{self.keep_best!r} ({self.best_value_:.6g} at the start, "
                          f"{self._best_of_epochs()}); the model keeps its starting parameters",
                          UserWarning, stacklevel=3)

    def _best_of_epochs(self) -> str:
        """The smallest finite value of the ``keep_best`` entry over the epochs, in words."""
        values = self.history_.column(self.keep_best)
        finite = np.flatnonzero(np.isfinite(values))
        if not finite.size:
            return f"no finite value in {len(values)} epochs"
        epoch = int(finite[np.argmin(values[finite])])
        return f"{values[epoch]:.6g} at the best epoch, {epoch}"

    def _resume_trained(self) -> None:
        """Give the model back the parameters training had reached, where the best ones
        replaced them when the last fit ended: training goes on from there."""
        if self._trained_state is not None:
            self.model.load_state_dict(self._trained_state)
            self._trained_state = None

    def _best_record(self) -> dict | None:
        """What keep_best keeps, for :meth:`save`; ``in_model``: whether the model holds
        the best parameters (a fit has ended since training last ran)."""
        if self.keep_best is None:
            return None
        return {"monitor": self.keep_best, "epoch": self.best_epoch_, "value": self.best_value_,
                "state": self._best_state, "start_logs": self.start_logs_,
                "in_model": self._trained_state is not None}

    def _load_best(self, record: dict, trained: dict) -> None:
        """Restore :meth:`_best_record`; ``trained``: the saved model's state."""
        self.best_epoch_, self.best_value_ = record["epoch"], record["value"]
        self._best_state, self.start_logs_ = record["state"], record["start_logs"]
        if record["in_model"]:
            self._trained_state = trained
            self.model.load_state_dict(self._best_state)
