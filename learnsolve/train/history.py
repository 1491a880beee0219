"""The record of a training (:class:`History`, one dict per epoch) and its figure."""
from __future__ import annotations

import math

import numpy as np

__all__ = ["History", "RESERVED"]

#: History entries written by the trainer itself; metrics may not take these names.
RESERVED = ("epoch", "loss", "val_loss", "lr", "time")


class History(list):
    """The record of a training: a list with one dict per epoch.

    Each entry has ``epoch`` (counted from 0), ``loss`` (the mean over the
    epoch's problems of their step's loss, each measured before its step),
    ``lr`` (the learning rate the epoch ran with, of the first parameter
    group), ``time`` (seconds, the epoch's steps and evaluations, summed over
    the fits an interrupted epoch ran in), ``val_loss`` (with validation
    problems) and one value per metric. An entry's name as an attribute gives
    its values over the epochs as a numpy array.

    Examples
    --------
    >>> h = History([{"epoch": 0, "loss": 2.0}, {"epoch": 1, "loss": 1.0}])
    >>> h.loss
    array([2., 1.])
    >>> h[-1]["loss"], h.keys()
    (1.0, ['epoch', 'loss'])
    >>> h
    History(2 epochs: epoch, loss; last loss 1.00e+00)
    """

    def __repr__(self) -> str:
        text = f"{len(self)} epoch{'' if len(self) == 1 else 's'}"
        if self:
            text += f": {', '.join(self.keys())}"
        if self and "loss" in self[-1]:
            text += f"; last loss {self[-1]['loss']:.2e}"
        return f"History({text})"

    def keys(self) -> list[str]:
        """The names of the entries, in the order they first appear."""
        return list(dict.fromkeys(key for row in self for key in row))

    def column(self, name: str) -> np.ndarray:
        """The values of entry ``name`` over the epochs (NaN where an epoch lacks it)."""
        return np.array([row.get(name, math.nan) for row in self])

    def __getattr__(self, name: str) -> np.ndarray:
        if name.startswith("_") or (name not in RESERVED and name not in self.keys()):
            raise AttributeError(f"History has no entry {name!r}; it has {self.keys()}")
        return self.column(name)

    def plot(self):
        """The loss per epoch (log scale where positive), the metrics on a twin axis.

        Returns a :class:`matplotlib.figure.Figure` (not registered with pyplot).

        Examples
        --------
        >>> h = History([{"epoch": 0, "loss": 2.0, "its": 9}, {"epoch": 1, "loss": 1.0, "its": 7}])
        >>> fig = h.plot()
        >>> [ax.get_ylabel() for ax in fig.axes]
        ['loss', 'its']
        """
        if not self:
            raise RuntimeError("History.plot: the history is empty (no epoch done)")
        from matplotlib.figure import Figure
        fig = Figure(figsize=(6, 4), layout="constrained")
        ax = fig.add_subplot()
        epochs = self.epoch
        ax.plot(epochs, self.loss, color="k", label="loss")
        if "val_loss" in self.keys():
            ax.plot(epochs, self.val_loss, color="k", linestyle="--", label="validation loss")
        losses = [row[k] for row in self for k in ("loss", "val_loss") if k in row]
        if all(v > 0 for v in losses):
            ax.set_yscale("log")
        ax.set_xlabel("epoch")
        ax.set_ylabel("loss")
        handles = ax.lines[:]
        names = [k for k in self.keys() if k not in RESERVED]
        if names:
            twin = ax.twinx()
            for i, name in enumerate(names):
                twin.plot(epochs, self.column(name), color=f"C{i % 10}", linestyle=":",
                          label=name)
            twin.set_ylabel(", ".join(names))
            handles += twin.lines
        ax.legend(handles, [h.get_label() for h in handles])
        return fig
