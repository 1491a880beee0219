"""The Trainer: fits the parameters of a learned solver or preconditioner on problems,
and compares the result in PCG with classical preconditioners.

A trainable model is an ``nn.Module`` with a method ``loss(problem, X) ->
scalar Tensor``, its training loss on a block ``X`` of random vectors
``(n, J)`` (or any module, with a ``loss(model, problem, X)`` given to the
trainer). The trainer draws the vectors, steps the optimizer, records the
history, calls the callbacks, survives a non-finite loss and saves its state
so that a training can be resumed bit for bit, at an epoch's end or in its
middle.
"""
from __future__ import annotations

import math
import numbers
import time
import warnings
from importlib.util import find_spec
from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn

from .callbacks import Callback, _clone, _monitored
from .evaluation import (BASELINES, Evaluation, as_problems, compare_preconditioners,
                         preconditioner_of)
from .core.validation import check_count
from .problems.problem import Problem, ProblemSet

__all__ = ["Trainer", "History"]

OPTIMIZERS = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "sgd": torch.optim.SGD}

#: History entries written by the trainer itself; metrics may not take these names.
RESERVED = ("epoch", "loss", "val_loss", "lr", "time")

_FORMAT = "learnsolve.Trainer"
#: Version 2 adds the progress of an epoch stopped in its middle ("progress"). Entries
#: added since are optional and leave what older readers use as it was ("best", what
#: keep_best keeps, beside "model", still the parameters training continues from):
#: files without them load, and readers without them resume the same training.
_VERSION = 2


def _progress_bar(**kwargs):
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


class History(list):
    """The record of a training: a list with one dict per epoch.

    Each entry has ``epoch`` (counted from 0), ``loss`` (the mean of the
    epoch's step losses, each measured before its step), ``lr`` (the
    learning rate the epoch ran with, of the first parameter group), ``time``
    (seconds, the epoch's steps and evaluations, summed over the fits an
    interrupted epoch ran in), ``val_loss`` (with validation problems) and
    one value per metric. An entry's name as an attribute gives its values
    over the epochs as a numpy array.

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


class _NonFinite(Exception):
    """A non-finite loss or gradient met in a step (caught by the loop)."""

    def __init__(self, what: str, value: float):
        super().__init__(what)
        self.what, self.value = what, value


def _mean(values) -> float:
    values = list(values)
    return math.fsum(values) / len(values)


def _beats(value: float, best: float | None) -> bool:
    """Whether ``value`` replaces the best kept (None: none yet): finite, and strictly
    smaller than a finite best (a non-finite value never wins, a non-finite best loses)."""
    return math.isfinite(value) and (best is None or not math.isfinite(best) or value < best)


class _Progress:
    """How far the epoch under way has gone: what resuming it in its middle needs.

    ``order`` is the epoch's shuffled problem order, ``losses[:step]`` the
    losses of its ``step`` steps done, ``generator`` the trainer's generator
    state before step ``step`` draws its vectors, ``elapsed`` the seconds the
    epoch has run. While a step runs, the model and the optimizer may be past
    this boundary; :meth:`Trainer._rewind` brings them back.
    """

    def __init__(self, epoch: int, order: Sequence[int], generator: torch.Tensor,
                 losses: Sequence[float] = (), elapsed: float = 0.0):
        self.epoch, self.order, self.generator = epoch, list(order), generator
        self.losses = list(losses)
        self.step = len(self.losses)
        self.elapsed = elapsed

    def state_dict(self) -> dict:
        """Numbers and lists only (the generator's state is saved with the trainer's)."""
        return {"epoch": self.epoch, "order": self.order, "losses": self.losses[:self.step],
                "elapsed": self.elapsed}

    @classmethod
    def from_state(cls, state: dict, generator: torch.Tensor) -> "_Progress":
        return cls(int(state["epoch"]), state["order"], generator, state["losses"],
                   float(state["elapsed"]))


class _Snapshot:
    """Copies of the model's and optimizer's states at the start of step ``step`` of the
    epoch under way, with the generator's state before that step's draw."""

    def __init__(self, progress: _Progress, model: nn.Module, optimizer: torch.optim.Optimizer):
        self.step, self.generator = progress.step, progress.generator
        self.model = _clone(model.state_dict())
        self.optimizer = _clone(optimizer.state_dict())

    def restore(self, progress: _Progress, model: nn.Module,
                optimizer: torch.optim.Optimizer) -> None:
        """Put the states back and move ``progress`` back to this step (once: the
        optimizer may keep the copies as its own state)."""
        model.load_state_dict(self.model)
        optimizer.load_state_dict(self.optimizer)
        progress.generator, progress.step = self.generator, self.step


class Trainer:
    """Fits a model's parameters on problems: an epoch is one optimizer step per problem.

    Parameters
    ----------
    model : nn.Module
        What is trained: its parameters with ``requires_grad``.
    loss : callable, optional
        ``loss(model, problem, X) -> scalar Tensor``; default the model's own
        ``model.loss(problem, X)``.
    optimizer : {"adam", "adamw", "sgd"}, Optimizer class or callable
        A name or a ``torch.optim.Optimizer`` subclass (built with ``lr``), or
        a callable ``params -> optimizer`` (``lr`` unused). Steps go through
        ``optimizer.step(closure)``, so closure optimizers such as LBFGS work.
    lr : float
        The learning rate.
    epochs : int
        The epochs of a whole training (a resumed one included).
    batch_size : int
        ``J``, the random vectors drawn per problem per step: ``X =
        problem.random_rhs(J, distribution=distribution, normalize=True)``,
        unit 2-norm columns.
    distribution : {"normal", "uniform"}
        Their entries before the normalisation: standard normal, or uniform
        in ``[0, 1)`` (paper eq. 49: vectors with a large smooth part, the
        error that domain decomposition reduces slowest).
    device : str or torch.device, optional
        Where to train: the model and the problems are moved there
        (``problem.to(device)``). Default: where they are.
    seed : int, optional
        Seeds the trainer's own generator, which draws the vectors and
        shuffles the problems. Torch's global generator is not touched.
    callbacks : sequence of Callback
    progress : bool
        A tqdm progress bar over the epochs (epoch, loss, time left).
    metrics : dict, optional
        ``name -> metric(model, problem) -> float``, evaluated without
        gradients after each epoch on the validation problems (the training
        problems without them), averaged over the problems, and recorded.
        :func:`~learnsolve.evaluation.pcg_iterations` makes one.
    keep_best : {"loss", "val_loss"} or str, optional
        A history entry (``"loss"``, ``"val_loss"``, which needs validation
        problems, or a metric's name), minimised: ``fit`` ends with the
        parameters of the epoch where it was smallest, or with the starting
        ones if no epoch beat them (Notes).

    Attributes
    ----------
    history_ : History
        One entry per epoch done.
    epochs_done_ : int
        The epochs done: the entries of ``history_``.
    stop_reason_ : str or None
        Why the last ``fit`` ended: ``"epochs"`` (all done), ``"callback"``
        (a callback set ``stop_training``), ``"non-finite loss"`` or
        ``"non-finite gradient"``.
    optimizer_ : torch.optim.Optimizer
    generator_ : torch.Generator
        The trainer's random stream (CPU).
    stop_training : bool
        Set by a callback to stop after the current epoch.
    start_logs_ : dict or None
        With ``keep_best``: ``val_loss`` and the metrics of the model the
        training started from, measured as after an epoch, and its ``loss``
        (on the fixed vectors of ``val_loss``) with ``keep_best="loss"``.
    best_epoch_ : int or None
        With ``keep_best``: the epoch whose parameters are kept, -1 for the
        start. None before any (in a training resumed from a file saved
        without ``keep_best``) and without ``keep_best``.
    best_value_ : float or None
        Its value of the ``keep_best`` entry.

    Notes
    -----
    ``fit`` continues a training: it runs epochs ``epochs_done_ .. epochs -
    1``, so a second ``fit`` (after raising ``epochs``) or a ``fit`` after
    :meth:`load` goes on where the last one stopped, with the same optimizer
    state and random stream. With validation problems, ``val_loss`` is the
    mean loss on them for vectors drawn from a generator reseeded each epoch
    (the same vectors every epoch, so epochs compare).

    It also resumes an epoch stopped in its middle, bit for bit. An exception
    that ends ``fit`` there (a ``KeyboardInterrupt`` in the loss, in the
    backward pass or in the optimizer's step, say) undoes the step it
    interrupted: the model, the optimizer and the generator go back to where
    that step started, and the trainer keeps the epoch's order and the losses
    of its steps done. A ``fit`` in place, or after :meth:`save` and
    :meth:`load`, redoes that step on the same vectors and ends with the same
    parameters, history and random stream as a training never interrupted.
    Callbacks see ``on_epoch_start`` again for the resumed epoch. The cost is
    one copy of the model's and the optimizer's states, taken once a step
    when its first loss and gradient are found finite (not at the further
    closure calls of LBFGS).

    A non-finite loss or gradient stops training at once: the parameters,
    optimizer state and random stream go back to those the last step of the
    epoch under way with a finite loss and gradient started from (a step of
    LBFGS whose first loss and gradient were finite goes back to its own
    start), a RuntimeWarning says where it happened, and the unfinished epoch
    is not recorded; a later ``fit`` continues it from there. A finished
    epoch is never undone (its entry is written and the callbacks have seen
    it): when an epoch's first step fails, the parameters stay as the
    previous epoch left them.

    With ``keep_best``, the start of a training (no step done) and the end
    of each epoch are candidates: a copy of the model's state is kept when
    its value is finite and strictly below the best so far (a tie keeps the
    earlier, the start first). When ``fit`` ends short of an exception (all
    epochs done, a callback's stop, a non-finite loss or gradient), after
    the callbacks' ``on_fit_end``, the model gets the best parameters, with
    a UserWarning if no epoch beat the start (they are the starting ones).
    The parameters training had reached are kept aside, and saved: a later
    ``fit`` continues from them, so keep_best does not change the training.
    An epoch's ``loss`` is measured during it, before its steps, while the
    parameters kept for it are those at its end: ``val_loss`` or a metric
    compares them better.

    Examples
    --------
    >>> from learnsolve.problems import poisson_1d
    >>> from learnsolve.solvers.jacobi import Jacobi
    >>> trainer = Trainer(Jacobi(1.0, num_nodes=16), lr=0.05, epochs=100, seed=0,
    ...                   progress=False)
    >>> trainer.fit(poisson_1d(16)).epochs_done_, trainer.stop_reason_
    (100, 'epochs')
    >>> bool(trainer.history_.loss[-10:].mean() < trainer.history_.loss[:10].mean())
    True

    Keeping the best of a learned factor by its PCG iterations:

    >>> import torch
    >>> from learnsolve.evaluation import pcg_iterations
    >>> from learnsolve.problems import poisson_2d
    >>> from learnsolve.solvers import PCG, LowerFactor
    >>> p = poisson_2d(8, dtype=torch.float64)
    >>> trainer = Trainer(PCG(M=LowerFactor.banded(p, 1), maxiter=4, rtol=0.0), epochs=20,
    ...                   seed=0, progress=False, metrics={"iterations": pcg_iterations()},
    ...                   keep_best="iterations")
    >>> trainer.fit(p).start_logs_, trainer.history_.iterations[:3].tolist()
    ({'iterations': 23.0}, [25.0, 22.0, 24.0])
    >>> trainer.best_epoch_, trainer.best_value_
    (19, 20.0)
    """

    def __init__(self, model: nn.Module, loss: Callable | None = None,
                 optimizer: str | type | Callable = "adam", lr: float = 1e-2, epochs: int = 100,
                 batch_size: int = 8, distribution: str = "normal",
                 device: str | torch.device | None = None, seed: int | None = None, callbacks: Sequence[Callback] = (),
                 progress: bool = True, metrics: dict[str, Callable] | None = None,
                 keep_best: str | None = None):
        if not isinstance(model, nn.Module):
            raise TypeError(f"model: expected a torch.nn.Module, got {type(model).__name__}")
        if loss is None and not callable(getattr(model, "loss", None)):
            raise TypeError(f"loss: the model ({type(model).__name__}) has no method "
                            f"loss(problem, X); pass loss=callable(model, problem, X)")
        if loss is not None and not callable(loss):
            raise TypeError(f"loss: expected None or a callable (model, problem, X) -> Tensor, "
                            f"got {type(loss).__name__}")
        if isinstance(optimizer, str):
            if optimizer.lower() not in OPTIMIZERS:
                raise ValueError(f"optimizer: expected one of {sorted(OPTIMIZERS)}, an "
                                 f"Optimizer class or a callable, got {optimizer!r}")
        elif isinstance(optimizer, type):
            if not issubclass(optimizer, torch.optim.Optimizer):
                raise TypeError(f"optimizer: expected a torch.optim.Optimizer subclass, got "
                                f"{optimizer.__name__}")
        elif not callable(optimizer):
            raise TypeError(f"optimizer: expected a name, an Optimizer class or a callable "
                            f"params -> optimizer, got {type(optimizer).__name__}")
        if distribution not in ("normal", "uniform"):
            raise ValueError(f"distribution: expected 'normal' or 'uniform', got "
                             f"{distribution!r}")
        if isinstance(lr, bool) or not isinstance(lr, numbers.Real) or not lr > 0:
            raise ValueError(f"lr: expected a positive number, got {lr!r}")
        if device is not None:
            try:
                device = torch.device(device)
            except (TypeError, RuntimeError) as error:
                raise ValueError(f"device: expected a torch device, got {device!r}") from error
        if seed is not None:
            seed = check_count(seed, "seed", 0)
        callbacks = list(callbacks)
        for i, callback in enumerate(callbacks):
            if not isinstance(callback, Callback):
                raise TypeError(f"callbacks[{i}]: expected a learnsolve.callbacks.Callback, got "
                                f"{type(callback).__name__}")
        metrics = dict(metrics or {})
        for name, metric in metrics.items():
            if not isinstance(name, str) or name in RESERVED:
                raise ValueError(f"metrics: expected names other than {RESERVED}, got {name!r}")
            if not callable(metric):
                raise TypeError(f"metrics[{name!r}]: expected a callable (model, problem) -> "
                                f"float, got {type(metric).__name__}")
        if keep_best is not None and keep_best not in ("loss", "val_loss", *metrics):
            raise ValueError(f"keep_best: expected None, 'loss', 'val_loss' or the name of a "
                             f"metric {sorted(metrics)}, got {keep_best!r}")
        self.model = model
        self.loss = loss
        self.optimizer = optimizer
        self.lr = float(lr)
        self.epochs = check_count(epochs, "epochs")
        self.batch_size = check_count(batch_size, "batch_size")
        self.distribution = distribution
        self.device = device
        self.seed = seed
        self.callbacks = callbacks
        self.progress = bool(progress)
        self.metrics = metrics
        self.keep_best = keep_best
        self.stop_training = False
        self._callback_states = None
        self._snapshot = None

    def __repr__(self) -> str:
        optimizer = self.optimizer if isinstance(self.optimizer, str) else \
            getattr(self.optimizer, "__name__", type(self.optimizer).__name__)
        return (f"Trainer({type(self.model).__name__}, optimizer={optimizer!r}, lr={self.lr:g}, "
                f"epochs={self.epochs}, batch_size={self.batch_size}, seed={self.seed})")

    @property
    def epochs_done_(self) -> int:
        """The epochs done: the entries of ``history_``."""
        return len(self.history_)

    # ------------------------------------------------------------------ set-up
    def _initialize(self) -> None:
        """Move the model, build the optimizer and the random stream; empty history."""
        if self.device is not None:
            self.model.to(self.device)
        params = [p for p in self.model.parameters() if p.requires_grad]
        if not params:
            raise ValueError(f"model: expected trainable parameters, {type(self.model).__name__} "
                             f"has none (with requires_grad)")
        if isinstance(self.optimizer, str):
            optimizer = OPTIMIZERS[self.optimizer.lower()](params, lr=self.lr)
        elif isinstance(self.optimizer, type):
            optimizer = self.optimizer(params, lr=self.lr)
        else:
            optimizer = self.optimizer(params)
            if not isinstance(optimizer, torch.optim.Optimizer):
                raise TypeError(f"optimizer: expected the callable to return a "
                                f"torch.optim.Optimizer, got {type(optimizer).__name__}")
        self.optimizer_ = optimizer
        self.generator_ = torch.Generator()
        if self.seed is None:
            self.generator_.seed()
        else:
            self.generator_.manual_seed(self.seed)
        self.history_ = History()
        self._progress = None
        self.stop_reason_ = None
        self.start_logs_ = self.best_epoch_ = self.best_value_ = None
        self._best_state = None     # the parameters keep_best keeps
        self._trained_state = None  # those training reached, while the model holds the best

    def _problems(self, problems, name: str) -> Sequence[Problem]:
        """Problems as a sequence, moved to the trainer's device."""
        problems = as_problems(problems, name)
        if self.device is None:
            return problems
        if isinstance(problems, ProblemSet):
            return problems.to(self.device)
        return [problem.to(self.device) for problem in problems]

    def _loss(self, problem: Problem, X: torch.Tensor) -> torch.Tensor:
        loss = self.model.loss(problem, X) if self.loss is None else \
            self.loss(self.model, problem, X)
        if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
            got = f"shape {tuple(loss.shape)}" if isinstance(loss, torch.Tensor) else \
                type(loss).__name__
            raise TypeError(f"loss: expected a scalar Tensor, got {got}")
        return loss.reshape(())

    # ------------------------------------------------------------------ training
    def fit(self, problems, validation=None) -> "Trainer":
        """Train on ``problems`` (a Problem, a sequence of them or a ProblemSet).

        Runs epochs ``epochs_done_ .. epochs - 1``; in each, the problems in
        an order shuffled by the trainer's generator, one optimizer step per
        problem on a fresh block of ``batch_size`` random unit vectors. An
        epoch that an exception or a non-finite loss stopped in its middle is
        resumed at the step it stopped at (see the Notes of :class:`Trainer`).
        ``validation`` (same forms) is where the metrics and ``val_loss`` are
        measured. With ``keep_best``, ends with the best parameters (see the
        Notes of :class:`Trainer`). Returns self.
        """
        train = self._problems(problems, "problems")
        valid = None if validation is None else self._problems(validation, "validation")
        if self.keep_best == "val_loss" and valid is None:
            raise ValueError("validation: keep_best='val_loss' needs validation problems, got "
                             "None")
        if not hasattr(self, "optimizer_"):
            self._initialize()
        if self._progress is not None and len(self._progress.order) != len(train):
            raise ValueError(f"problems: expected the {len(self._progress.order)} problems epoch "
                             f"{self._progress.epoch} was stopped in the middle of, got "
                             f"{len(train)}")
        if self.epochs_done_ >= self.epochs:
            warnings.warn(f"fit: all {self.epochs} epochs are done (epochs_done_ = "
                          f"{self.epochs_done_}); raise epochs to train further", UserWarning,
                          stacklevel=2)
            return self
        self._resume_trained()
        self.stop_training = False
        self.stop_reason_ = None
        for callback in self.callbacks:
            callback.on_fit_start(self)
        if self._callback_states is not None:
            for callback, state in zip(self.callbacks, self._callback_states):
                callback.load_state_dict(state)
            self._callback_states = None
        if self.keep_best is not None and self.start_logs_ is None and \
                self.epochs_done_ == 0 and self._progress is None:
            self._keep_start(train, valid)
        bar = _progress_bar(total=self.epochs, initial=self.epochs_done_, disable=not self.progress,
                   unit="epoch", desc="training")
        try:
            self._run(train, valid, bar)
        finally:
            bar.close()
            self._snapshot = None
        trained = None if self._best_state is None else _clone(self.model.state_dict())
        for callback in self.callbacks:
            callback.on_fit_end(self)
        if trained is not None:
            self._restore_best(trained)
        return self

    def _run(self, train, valid, bar) -> None:
        first = self.epochs_done_
        for epoch in range(first, self.epochs):
            for callback in self.callbacks:
                callback.on_epoch_start(self, epoch)
            lr = self.optimizer_.param_groups[0]["lr"]
            self.model.train()
            if self._progress is None:
                order = torch.randperm(len(train), generator=self.generator_).tolist()
                self._progress = _Progress(epoch, order, self.generator_.get_state())
            progress = self._progress
            start = time.perf_counter()
            try:
                self._steps(train, progress)
                logs = {"epoch": epoch, "loss": _mean(progress.losses), "lr": float(lr)}
                logs.update(self._measure(train, valid))
            except _NonFinite as failure:
                self._give_up(failure, progress, train, first)
                return
            except BaseException:
                self._rewind(progress)
                raise
            finally:
                progress.elapsed += time.perf_counter() - start
            logs["time"] = progress.elapsed
            self.history_.append(logs)
            if self.keep_best is not None:
                self._keep_if_better(epoch, logs)
            self._progress = self._snapshot = None
            bar.set_postfix({k: f"{v:.4g}" for k, v in logs.items()
                             if k not in ("epoch", "lr", "time")}, refresh=False)
            bar.update()
            for callback in self.callbacks:
                callback.on_epoch_end(self, epoch, logs)
            if self.stop_training:
                self.stop_reason_ = "callback"
                return
        self.stop_reason_ = "epochs"

    def _steps(self, train, progress: _Progress) -> None:
        """The epoch's steps from ``progress.step`` on, one per problem."""
        while progress.step < len(progress.order):
            problem = train[progress.order[progress.step]]
            X = problem.random_rhs(self.batch_size, generator=self.generator_,
                                   distribution=self.distribution, normalize=True)
            progress.losses.append(self._step(problem, X, progress))
            # The generator's state before the step count: until the count moves
            # on, the step's snapshot says where it started (see _rewind).
            progress.generator = self.generator_.get_state()
            progress.step += 1

    def _step(self, problem: Problem, X: torch.Tensor, progress: _Progress) -> float:
        """One optimizer step; returns the loss before it. Raises _NonFinite."""
        optimizer = self.optimizer_
        params = [p for group in optimizer.param_groups for p in group["params"]]
        values = []

        def closure():
            optimizer.zero_grad()
            loss = self._loss(problem, X)
            value = float(loss.detach())
            if not math.isfinite(value):
                raise _NonFinite("loss", value)
            if not loss.requires_grad:
                raise ValueError("loss: expected a tensor that depends on the model's "
                                 "parameters, got one without gradient")
            loss.backward()
            grads = [p.grad for p in params if p.grad is not None]
            if grads and not bool(torch.stack([torch.isfinite(g).all() for g in grads]).all()):
                raise _NonFinite("gradient", value)
            if not values:
                # Finite at the step's start, before the optimizer moves anything:
                # what undoing this step needs. The last copy goes first, so that
                # two never coexist.
                self._snapshot = None
                self._snapshot = _Snapshot(progress, self.model, optimizer)
            values.append(value)
            return loss

        optimizer.step(closure)
        return values[0]

    def _rewind(self, progress: _Progress, last_good: bool = False) -> bool:
        """Undo the step under way: back to its start (model, optimizer, generator, losses).

        The model and the optimizer come from the step's snapshot where one was
        taken (the optimizer may have moved them since), else they have not
        moved. With ``last_good`` (after a non-finite loss or gradient), back
        to the snapshot's step whichever it is: the last of the epoch whose
        loss and gradient were finite at its start. Returns whether the
        snapshot was restored.
        """
        snapshot, self._snapshot = self._snapshot, None
        self.optimizer_.zero_grad()
        restored = snapshot is not None and (last_good or snapshot.step == progress.step)
        if restored:
            snapshot.restore(progress, self.model, self.optimizer_)
        del progress.losses[progress.step:]
        self.generator_.set_state(progress.generator)
        return restored

    def _give_up(self, failure: _NonFinite, progress: _Progress, train, first: int) -> None:
        """Go back to the last good step after a non-finite loss or gradient, and warn.

        ``first`` is the first epoch of this fit: without a snapshot, no step
        of it succeeded, or the failure is at the first step of a later epoch.
        """
        index = progress.order[progress.step]
        problem = train[index]
        if self._rewind(progress, last_good=True):
            kept = ("the parameters were restored to the last good ones (those the last step "
                    "with a finite loss and gradient started from)")
        elif progress.epoch == first:
            kept = "no step of this fit succeeded: the parameters are those it started with"
        else:
            kept = (f"the parameters are those epoch {progress.epoch} started with (a finished "
                    f"epoch is not undone)")
        self.stop_reason_ = f"non-finite {failure.what}"
        name = f" ({problem.name})" if problem.name else ""
        warnings.warn(f"Trainer.fit: non-finite {failure.what} at epoch {progress.epoch}, "
                      f"problem {index}{name} (loss {failure.value:g}); training stopped and "
                      f"{kept}", RuntimeWarning, stacklevel=4)

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
                logs[name] = _mean(values)
        finally:
            self.model.train()
        return logs

    def _fixed_vectors_loss(self, problems) -> float:
        """The mean loss on ``problems`` for vectors from a generator seeded anew with the
        trainer's seed: the same vectors at every call, so that calls compare."""
        generator = torch.Generator().manual_seed(self.seed or 0)
        return _mean(float(self._loss(p, p.random_rhs(
            self.batch_size, generator=generator, distribution=self.distribution,
            normalize=True))) for p in problems)

    # ------------------------------------------------------------------ keep_best
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
        self._best_state = _clone(self.model.state_dict())

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

    # ------------------------------------------------------------------ saving
    def _check_started(self, what: str) -> None:
        if not hasattr(self, "optimizer_"):
            raise RuntimeError(f"{what}: this trainer has not been fitted; call fit (or load) "
                               f"first")

    def save(self, path) -> None:
        """Save what a resumed training needs: model and optimizer state, history,
        the random stream, the callbacks' states, for an epoch stopped in its
        middle, its order and the losses of its steps done, and with
        ``keep_best`` the best parameters, their epoch and value and
        ``start_logs_`` (entry ``"best"``; entry ``"model"`` holds the
        parameters training continues from).

        Saved after an exception ended ``fit``, the states are those at the
        start of the step it interrupted (see the Notes of :class:`Trainer`),
        so a trainer loaded with :meth:`load` redoes that step. Only tensors,
        numbers, strings, lists and dicts: the file loads with
        ``torch.load(path, weights_only=True)``.

        Examples
        --------
        >>> import os, tempfile
        >>> from learnsolve.problems import poisson_1d
        >>> from learnsolve.solvers.jacobi import Jacobi
        >>> def trainer():
        ...     return Trainer(Jacobi(1.0, 8), epochs=4, seed=0, progress=False)
        >>> path = os.path.join(tempfile.mkdtemp(), "trainer.pt")
        >>> trainer().fit(poisson_1d(8)).save(path)
        >>> trainer().load(path).epochs_done_
        4
        """
        self._check_started("save")
        progress = None if self._progress is None else self._progress.state_dict()
        trained = self.model.state_dict() if self._trained_state is None else \
            self._trained_state
        torch.save({"format": _FORMAT, "version": _VERSION,
                    "model": trained,
                    "optimizer": self.optimizer_.state_dict(),
                    "history": [dict(row) for row in self.history_],
                    "progress": progress,
                    "stop_reason": self.stop_reason_,
                    "generator": self.generator_.get_state(),
                    "callbacks": [{"type": type(c).__name__, "state": c.state_dict()}
                                  for c in self.callbacks],
                    "best": self._best_record()}, path)

    def load(self, path) -> "Trainer":
        """Restore a state written by :meth:`save` into this trainer (built with
        the same arguments); the next ``fit`` continues from ``epochs_done_``,
        in the middle of that epoch if it was saved there. Files of version 1
        (saved at the end of an epoch, before version 2 of this format) load
        too, and so do files without ``keep_best``'s entry: a trainer with
        ``keep_best`` then keeps the best of the epochs it runs from there.
        Returns self."""
        state = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(state, dict) or state.get("format") != _FORMAT:
            raise ValueError(f"path: expected a file written by Trainer.save, got {path!r}")
        if state.get("version") not in range(1, _VERSION + 1):
            raise ValueError(f"path: expected a Trainer.save file of version 1 to {_VERSION}, "
                             f"got version {state.get('version')!r} ({path!r})")
        saved = [c["type"] for c in state["callbacks"]]
        mine = [type(c).__name__ for c in self.callbacks]
        if saved != mine:
            raise ValueError(f"callbacks: the saved trainer had {saved}, this one has {mine}")
        best = state.get("best")
        if best is not None and best["monitor"] != self.keep_best:
            raise ValueError(f"keep_best: the saved trainer kept the best by "
                             f"{best['monitor']!r}, this one has keep_best={self.keep_best!r}")
        self._initialize()
        self.model.load_state_dict(state["model"])
        self.optimizer_.load_state_dict(state["optimizer"])
        self.history_ = History(state["history"])
        self.stop_reason_ = state["stop_reason"]
        self.generator_.set_state(state["generator"])
        if state.get("progress") is not None:
            self._progress = _Progress.from_state(state["progress"], self.generator_.get_state())
        self._callback_states = [c["state"] for c in state["callbacks"]]
        if best is not None:
            self._load_best(best, state["model"])
        return self

    # ------------------------------------------------------------------ evaluation
    @torch.no_grad()
    def evaluate(self, problems, rtol: float = 1e-6, maxiter: int | None = None,
                 baselines: Sequence[str] = BASELINES) -> Evaluation:
        """PCG iterations to reach ``rtol`` with the trained preconditioner and the
        baselines: :func:`~learnsolve.evaluation.compare_preconditioners` (its
        parameters, returns an :class:`~learnsolve.evaluation.Evaluation`).

        The trained preconditioner is the model if it has ``setup`` (a
        preconditioner), else ``model.M`` if the model is a PCG; it is
        evaluated in eval mode, on the trainer's device.
        """
        trained = preconditioner_of(self.model, "evaluate")
        problems = self._problems(problems, "problems")
        if self.device is not None:
            self.model.to(self.device)
        training = self.model.training
        self.model.eval()
        try:
            return compare_preconditioners(trained, problems, rtol, maxiter, baselines)
        finally:
            self.model.train(training)

    # ------------------------------------------------------------------ plots
    def plot_history(self):
        """The loss per epoch (log scale where positive), the metrics on a twin axis.

        Returns a :class:`matplotlib.figure.Figure` (not registered with pyplot).
        """
        if not getattr(self, "history_", None):
            raise RuntimeError("plot_history: there is no history yet; call fit first")
        from matplotlib.figure import Figure
        fig = Figure(figsize=(6, 4), layout="constrained")
        ax = fig.add_subplot()
        history = self.history_
        epochs = history.epoch
        ax.plot(epochs, history.loss, color="k", label="loss")
        if "val_loss" in history.keys():
            ax.plot(epochs, history.val_loss, color="k", linestyle="--", label="validation loss")
        losses = [row[k] for row in history for k in ("loss", "val_loss") if k in row]
        if all(v > 0 for v in losses):
            ax.set_yscale("log")
        ax.set_xlabel("epoch")
        ax.set_ylabel("loss")
        handles = ax.lines[:]
        names = [k for k in history.keys() if k not in RESERVED]
        if names:
            twin = ax.twinx()
            for i, name in enumerate(names):
                twin.plot(epochs, history.column(name), color=f"C{i % 10}", linestyle=":",
                          label=name)
            twin.set_ylabel(", ".join(names))
            handles += twin.lines
        ax.legend(handles, [h.get_label() for h in handles])
        return fig

    def plot_convergence(self, problem: Problem, rtol: float = 1e-6, maxiter: int | None = None,
                         baselines: Sequence[str] = BASELINES):
        """The relative residual of PCG against the iteration on ``problem``, with the
        trained preconditioner and the baselines (see :meth:`evaluate`). Returns a Figure."""
        if not isinstance(problem, Problem):
            raise TypeError(f"problem: expected a learnsolve.problems.Problem, got "
                            f"{type(problem).__name__}")
        return self.evaluate(problem, rtol, maxiter, baselines).plot()
