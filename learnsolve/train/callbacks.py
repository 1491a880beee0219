"""Callbacks of the :class:`~learnsolve.train.Trainer`: hooks into its loop at fit, epoch,
step and gradient level, and the callbacks built on them (early stopping, learning-rate
schedules, the progress bar, periodic checkpoints).

A callback subclasses :class:`Callback` and overrides the hooks it needs; the
others do nothing. The trainer calls them through
:meth:`~learnsolve.train.Trainer.notify`, with keyword arguments. A callback
stops training by setting ``trainer.stop_training = True`` (the epoch under
way finishes first). What it must remember across a
:meth:`~learnsolve.train.Trainer.save` / ``load`` it returns from
:meth:`Callback.state_dict` (tensors, numbers, strings, lists and dicts only).
"""
from __future__ import annotations

import math
import numbers
import os
from importlib.util import find_spec

import torch

from ..core.validation import check_count
from .checkpoint import clone_state

__all__ = ["Callback", "Checkpoint", "EarlyStopping", "LRScheduler", "ProgressBar"]


class Callback:
    """Base of the callbacks: every hook does nothing.

    Hooks, in the order the trainer calls them (by keyword, through
    :meth:`~learnsolve.train.Trainer.notify`):

    - ``on_fit_start(trainer)``: once per :meth:`~learnsolve.train.Trainer.fit`
      (the optimizer exists);
    - ``on_epoch_start(trainer, epoch)``: before each epoch;
    - ``on_step_start(trainer, step, problems, X)``: before each optimizer
      step (``step`` counted in the epoch) on ``problems`` and their blocks
      of vectors ``X`` (lists, one entry per problem);
    - ``on_gradient(trainer, step, loss)``: after the backward pass, before
      the optimizer moves anything; the gradients are in ``p.grad`` of the
      model's parameters, which the hook may inspect or change (clip, say).
      ``loss`` is the step's loss (a float). A closure optimizer (LBFGS)
      calls it at each evaluation of its closure;
    - ``on_step_end(trainer, step, loss)``: after the step, with its loss
      (measured before it);
    - ``on_epoch_end(trainer, epoch, logs)``: after each epoch, ``logs`` its
      history entry;
    - ``on_fit_end(trainer)``: when the loop ends, however it ends short of
      an exception (all epochs done, stopped, a non-finite loss or gradient);
    - ``on_exception(trainer, error)``: instead of ``on_fit_end`` when an
      exception ends ``fit`` (after the trainer undid the step it interrupted).

    A ``fit`` that resumes an epoch stopped in its middle (by an exception or
    a non-finite loss, possibly saved and loaded) calls ``on_epoch_start`` for
    it again; ``on_epoch_end`` comes once per epoch. A step undone (a
    non-finite loss or gradient, an exception) gets no ``on_step_end``.

    Examples
    --------
    >>> class PrintLoss(Callback):
    ...     def on_epoch_end(self, trainer, epoch, logs):
    ...         print(f"epoch {epoch}: {logs['loss']:.3f}")
    >>> PrintLoss().on_epoch_end(None, 0, {"loss": 0.5})
    epoch 0: 0.500

    Clipping the gradients of every step:

    >>> class Clip(Callback):
    ...     def on_gradient(self, trainer, step, loss):
    ...         torch.nn.utils.clip_grad_norm_(trainer.model.parameters(), 1.0)
    """

    #: In a distributed training (:mod:`~learnsolve.train.distributed`), whether only
    #: rank 0 calls its hooks (a progress bar, a logger); the others are called on every
    #: rank, where the trainer's history, and so what they decide, is the same.
    rank_zero_only: bool = False

    def on_fit_start(self, trainer) -> None:
        """Called at the start of ``fit``, after the optimizer is built."""

    def on_epoch_start(self, trainer, epoch: int) -> None:
        """Called before epoch ``epoch`` (counted from 0 over the whole training), and
        again before its remaining steps when a ``fit`` resumes it in its middle."""

    def on_step_start(self, trainer, step: int | None, problems: list, X: list) -> None:
        """Called before step ``step`` of the epoch on ``problems`` with vectors ``X``."""

    def on_gradient(self, trainer, step: int | None, loss: float) -> None:
        """Called after the backward pass of step ``step``, before the optimizer's step:
        the parameters' ``grad`` may be inspected or modified."""

    def on_step_end(self, trainer, step: int | None, loss: float) -> None:
        """Called after step ``step`` with its loss (measured before the step)."""

    def on_epoch_end(self, trainer, epoch: int, logs: dict) -> None:
        """Called after epoch ``epoch`` with its history entry ``logs``."""

    def on_fit_end(self, trainer) -> None:
        """Called when ``fit`` ends (all epochs done, stopped, or a non-finite loss)."""

    def on_exception(self, trainer, error: BaseException) -> None:
        """Called when an exception ends ``fit`` (it is raised again after the hooks)."""

    def state_dict(self) -> dict:
        """What a resumed training needs of this callback (default: nothing); saved
        by :meth:`~learnsolve.train.Trainer.save` whenever it is called, in the
        middle of an epoch too."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        """Restore :meth:`state_dict`; called by the trainer after ``on_fit_start``."""


def _check_monitor(monitor) -> str:
    if not isinstance(monitor, str) or not monitor:
        raise TypeError(f"monitor: expected the name of a history entry (a string), got "
                        f"{monitor!r}")
    return monitor


def _monitored(logs: dict, monitor: str) -> float:
    if monitor not in logs:
        raise KeyError(f"monitor: {monitor!r} is not in the history; it has "
                       f"{sorted(logs)}")
    return float(logs[monitor])


class EarlyStopping(Callback):
    """Stop when a monitored quantity has stopped improving.

    Parameters
    ----------
    monitor : str
        A key of the history: ``"loss"``, ``"val_loss"`` (with validation
        problems) or the name of a metric.
    patience : int
        Epochs without improvement after which training stops.
    min_delta : float
        The least change that counts as an improvement.
    mode : {"min", "max"}
        Whether smaller or larger values are better.
    restore_best : bool
        At the end of a ``fit`` that ends the training (all epochs done, or
        stopped by a callback), put back the parameters of the best epoch (as
        they were at its end). Not after a non-finite loss or gradient: the
        trainer keeps the parameters a later ``fit`` resumes from.

    Attributes
    ----------
    best_ : float
        The best value seen.
    best_epoch_ : int
        Its epoch (-1 before any).
    stopped_epoch_ : int or None
        The epoch after which training was stopped (None if it was not).

    Notes
    -----
    An epoch improves on the best if its value is below ``best_ - min_delta``
    (``mode="min"``) or above ``best_ + min_delta`` (``mode="max"``); a NaN
    never improves. Training stops at the end of the epoch that makes
    ``patience`` epochs in a row without improvement. The ``"loss"`` of an
    epoch is measured during it, before its steps; the parameters kept for
    it are those at its end.

    Examples
    --------
    >>> from learnsolve.train import Trainer
    >>> from learnsolve.problems import poisson_1d
    >>> from learnsolve.solvers.jacobi import Jacobi
    >>> stop = EarlyStopping(patience=3)
    >>> trainer = Trainer(Jacobi(1.0, 8), epochs=500, lr=0.05, seed=0, progress=False,
    ...                   callbacks=[stop])
    >>> trainer.fit(poisson_1d(8)).stop_reason_, stop.stopped_epoch_ - stop.best_epoch_
    ('callback', 3)
    """

    def __init__(self, monitor: str = "loss", patience: int = 10, min_delta: float = 0.0,
                 mode: str = "min", restore_best: bool = True):
        self.monitor = _check_monitor(monitor)
        if isinstance(patience, bool) or not isinstance(patience, numbers.Integral) or \
                patience < 1:
            raise ValueError(f"patience: expected an integer >= 1, got {patience!r}")
        if isinstance(min_delta, bool) or not isinstance(min_delta, numbers.Real) or \
                not min_delta >= 0:
            raise ValueError(f"min_delta: expected a number >= 0, got {min_delta!r}")
        if mode not in ("min", "max"):
            raise ValueError(f"mode: expected 'min' or 'max', got {mode!r}")
        self.patience = int(patience)
        self.min_delta = float(min_delta)
        self.mode = mode
        self.restore_best = bool(restore_best)
        self._reset()

    def _reset(self) -> None:
        self.best_ = math.inf if self.mode == "min" else -math.inf
        self.best_epoch_ = -1
        self.stopped_epoch_ = None
        self.wait_ = 0
        self._best_state = None

    def _improves(self, value: float) -> bool:
        if self.mode == "min":
            return value < self.best_ - self.min_delta
        return value > self.best_ + self.min_delta

    def on_fit_start(self, trainer) -> None:
        # A fresh training starts afresh; a continued one (epochs already done)
        # keeps its best and its patience.
        if trainer.epochs_done_ == 0:
            self._reset()
        self.stopped_epoch_ = None

    def on_epoch_end(self, trainer, epoch: int, logs: dict) -> None:
        value = _monitored(logs, self.monitor)
        if self._improves(value):
            self.best_, self.best_epoch_, self.wait_ = value, epoch, 0
            if self.restore_best:
                self._best_state = clone_state(trainer.model.state_dict())
            return
        self.wait_ += 1
        if self.wait_ >= self.patience:
            self.stopped_epoch_ = epoch
            trainer.stop_training = True

    def on_fit_end(self, trainer) -> None:
        if self.restore_best and self._best_state is not None and \
                trainer.stop_reason_ in ("epochs", "callback"):
            trainer.model.load_state_dict(self._best_state)

    def state_dict(self) -> dict:
        return {"best": self.best_, "best_epoch": self.best_epoch_, "wait": self.wait_,
                "best_state": self._best_state}

    def load_state_dict(self, state: dict) -> None:
        self.best_, self.best_epoch_ = float(state["best"]), int(state["best_epoch"])
        self.wait_ = int(state["wait"])
        self._best_state = state["best_state"]

    def __repr__(self) -> str:
        return (f"EarlyStopping(monitor={self.monitor!r}, patience={self.patience}, "
                f"min_delta={self.min_delta:g}, mode={self.mode!r}, "
                f"restore_best={self.restore_best})")


class LRScheduler(Callback):
    """A ``torch.optim.lr_scheduler`` stepped once per epoch.

    Parameters
    ----------
    scheduler : type
        A scheduler class (``torch.optim.lr_scheduler.StepLR``, ...) or any
        callable ``(optimizer, **kwargs) -> scheduler``. It is built on the
        trainer's optimizer at the start of ``fit``.
    monitor : str
        For :class:`~torch.optim.lr_scheduler.ReduceLROnPlateau`: the history
        entry it is stepped with (default the epoch's loss).
    **kwargs
        The scheduler's arguments (``step_size=10, gamma=0.5``, ...).

    Attributes
    ----------
    scheduler_ : torch.optim.lr_scheduler.LRScheduler
        The scheduler, once ``fit`` has started.

    Notes
    -----
    The learning rate in the history is the one an epoch ran with: the
    scheduler steps after the epoch's entry is written. Its state is saved
    with the trainer, so a resumed training continues the schedule.

    Examples
    --------
    >>> from learnsolve.train import Trainer
    >>> from learnsolve.problems import poisson_1d
    >>> from learnsolve.solvers.jacobi import Jacobi
    >>> halve = LRScheduler(torch.optim.lr_scheduler.StepLR, step_size=2, gamma=0.5)
    >>> trainer = Trainer(Jacobi(1.0, 8), epochs=5, lr=0.1, progress=False, callbacks=[halve])
    >>> trainer.fit(poisson_1d(8)).history_.lr.tolist()
    [0.1, 0.1, 0.05, 0.05, 0.025]
    """

    def __init__(self, scheduler, monitor: str = "loss", **kwargs):
        if not callable(scheduler):
            raise TypeError(f"scheduler: expected a torch.optim.lr_scheduler class or a "
                            f"callable (optimizer, **kwargs) -> scheduler, got "
                            f"{type(scheduler).__name__}")
        self.scheduler = scheduler
        self.monitor = _check_monitor(monitor)
        self.kwargs = kwargs
        self.scheduler_ = None

    @property
    def _plateau(self) -> bool:
        return isinstance(self.scheduler_, torch.optim.lr_scheduler.ReduceLROnPlateau)

    def on_fit_start(self, trainer) -> None:
        # Built once per optimizer: a continued fit keeps its schedule.
        if self.scheduler_ is None or self.scheduler_.optimizer is not trainer.optimizer_:
            self.scheduler_ = self.scheduler(trainer.optimizer_, **self.kwargs)

    def on_epoch_end(self, trainer, epoch: int, logs: dict) -> None:
        if self._plateau:
            self.scheduler_.step(_monitored(logs, self.monitor))
        else:
            self.scheduler_.step()

    def state_dict(self) -> dict:
        return {} if self.scheduler_ is None else self.scheduler_.state_dict()

    def load_state_dict(self, state: dict) -> None:
        if not state:
            return
        self.scheduler_.load_state_dict(state)
        # Building the scheduler reset the learning rates: put back the saved ones.
        for group, lr in zip(self.scheduler_.optimizer.param_groups, state["_last_lr"]):
            group["lr"] = lr

    def __repr__(self) -> str:
        name = getattr(self.scheduler, "__name__", repr(self.scheduler))
        args = "".join(f", {k}={v!r}" for k, v in self.kwargs.items())
        return f"LRScheduler({name}{args})"


def _tqdm(**kwargs):
    """A tqdm bar: the notebook widget where ipywidgets is installed, else text.

    ``tqdm.auto`` warns ("IProgress not found") at import in a Jupyter kernel
    without ipywidgets before it falls back to text; here the text bar is chosen
    without the warning.
    """
    if find_spec("ipywidgets") is None:   # tqdm's notebook bar is an ipywidgets widget
        from tqdm import tqdm
    else:
        from tqdm.auto import tqdm
    return tqdm(**kwargs)


class ProgressBar(Callback):
    """A tqdm bar over the epochs, with the last epoch's loss, validation loss and metrics.

    The trainer adds one in front of its callbacks when built with
    ``progress=True`` (its default) and none is among them. The bar is the
    notebook widget in Jupyter where ipywidgets is installed, else text on
    stderr. In a distributed training, rank 0 shows it.

    Attributes
    ----------
    bar_ : tqdm or None
        The bar of the ``fit`` under way.

    Examples
    --------
    >>> import io
    >>> from learnsolve import Trainer, problems, solvers
    >>> text = io.StringIO()      # the keyword arguments go to tqdm
    >>> trainer = Trainer(solvers.Jacobi(1.0, 8), epochs=2, progress=False,
    ...                   callbacks=[ProgressBar(file=text)])
    >>> _ = trainer.fit(problems.poisson_1d(8))
    >>> "training: 100%" in text.getvalue() and "2/2" in text.getvalue()
    True
    """

    rank_zero_only = True

    def __init__(self, **kwargs):
        self.kwargs = {"unit": "epoch", "desc": "training", **kwargs}
        self.bar_ = None

    def on_fit_start(self, trainer) -> None:
        self.bar_ = _tqdm(total=trainer.epochs, initial=trainer.epochs_done_, **self.kwargs)

    def on_epoch_end(self, trainer, epoch: int, logs: dict) -> None:
        self.bar_.set_postfix({k: f"{v:.4g}" for k, v in logs.items()
                               if k not in ("epoch", "lr", "time")}, refresh=False)
        self.bar_.update()

    def _close(self) -> None:
        if self.bar_ is not None:
            self.bar_.close()
            self.bar_ = None

    def on_fit_end(self, trainer) -> None:
        self._close()

    def on_exception(self, trainer, error: BaseException) -> None:
        self._close()

    def __repr__(self) -> str:
        return "ProgressBar()"


class Checkpoint(Callback):
    """Save the trainer (:meth:`~learnsolve.train.Trainer.save`) every ``every`` epochs.

    Parameters
    ----------
    path : str or os.PathLike
        The file; ``{epoch}`` in it is replaced by the number of epochs done
        (one file per checkpoint), else each checkpoint replaces the last.
    every : int
        Save after the epochs whose number of epochs done is a multiple of
        ``every``, and after the last epoch of a ``fit``.

    Attributes
    ----------
    saved_ : list of str
        The files written, in order.

    Notes
    -----
    The file is written once every callback has seen the epoch's end (at the
    next ``on_epoch_start``, or at ``on_fit_end`` after the last epoch), so
    that it holds their states after the epoch: a trainer built with the same
    arguments and :meth:`~learnsolve.train.Trainer.load`-ed from it continues
    the training as if it had not stopped. At ``on_fit_end`` the model holds
    what the callbacks before this one left in it (``EarlyStopping`` may have
    put its best parameters back).

    Examples
    --------
    >>> import os, tempfile
    >>> from learnsolve.train import Trainer
    >>> from learnsolve.problems import poisson_1d
    >>> from learnsolve.solvers.jacobi import Jacobi
    >>> path = os.path.join(tempfile.mkdtemp(), "epoch{epoch}.pt")
    >>> save = Checkpoint(path, every=2)
    >>> _ = Trainer(Jacobi(1.0, 8), epochs=5, seed=0, progress=False,
    ...             callbacks=[save]).fit(poisson_1d(8))
    >>> [os.path.basename(f) for f in save.saved_]
    ['epoch2.pt', 'epoch4.pt', 'epoch5.pt']
    >>> Trainer(Jacobi(1.0, 8), epochs=5, progress=False,
    ...         callbacks=[Checkpoint(path)]).load(save.saved_[0]).epochs_done_
    2
    """

    def __init__(self, path, every: int = 1):
        if not isinstance(path, (str, os.PathLike)):
            raise TypeError(f"path: expected a str or os.PathLike, got {type(path).__name__}")
        self.path = os.fspath(path)
        self.every = check_count(every, "every")
        self.saved_ = []
        self._due = False

    def _save(self, trainer) -> None:
        if self._due:
            self._due = False
            path = self.path.replace("{epoch}", str(trainer.epochs_done_))
            trainer.save(path)
            self.saved_.append(path)

    def on_epoch_start(self, trainer, epoch: int) -> None:
        self._save(trainer)

    def on_epoch_end(self, trainer, epoch: int, logs: dict) -> None:
        self._due = (epoch + 1) % self.every == 0

    def on_fit_end(self, trainer) -> None:
        self._due = self._due or trainer.stop_reason_ in ("epochs", "callback")
        self._save(trainer)

    def __repr__(self) -> str:
        return f"Checkpoint({self.path!r}, every={self.every})"
