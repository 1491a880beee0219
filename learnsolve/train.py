"""The Trainer: fits the parameters of a learned solver or preconditioner on problems,
and compares the result in PCG with classical preconditioners.

A trainable model is an ``nn.Module`` with a method ``loss(problem, X) ->
scalar Tensor``, its training loss on a block ``X`` of random vectors
``(n, J)`` (or any module, with a ``loss(model, problem, X)`` given to the
trainer). The trainer draws the vectors, steps the optimizer, records the
history, calls the callbacks, survives a non-finite loss and saves its state
so that a training can be resumed bit for bit.
"""
from __future__ import annotations

import math
import numbers
import time
import warnings
from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn

from .callbacks import Callback, _clone
from .evaluation import BASELINES, Evaluation, as_problems, compare_preconditioners
from .problems.problem import Problem, ProblemSet, check_count

__all__ = ["Trainer", "History"]

OPTIMIZERS = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "sgd": torch.optim.SGD}

#: History entries written by the trainer itself; metrics may not take these names.
RESERVED = ("epoch", "loss", "val_loss", "lr", "time")

_FORMAT = "learnsolve.Trainer"


def _progress_bar(**kwargs):
    """A tqdm bar: the notebook widget where ipywidgets is installed, else text.

    ``tqdm.auto`` warns ("IProgress not found") at import in a Jupyter kernel
    without ipywidgets before it falls back to text; here the text bar is chosen
    without the warning.
    """
    try:
        import ipywidgets  # noqa: F401 (tqdm's notebook bar is an ipywidgets widget)
        from tqdm.auto import tqdm
    except ImportError:
        from tqdm import tqdm
    return tqdm(**kwargs)


class History(list):
    """The record of a training: a list with one dict per epoch.

    Each entry has ``epoch`` (counted from 0), ``loss`` (the mean of the
    epoch's step losses, each measured before its step), ``lr`` (the
    learning rate the epoch ran with, of the first parameter group), ``time``
    (seconds, the epoch's steps and evaluations), ``val_loss`` (with
    validation problems) and one value per metric. An entry's name as an
    attribute gives its values over the epochs as a numpy array.

    Examples
    --------
    >>> h = History([{"epoch": 0, "loss": 2.0}, {"epoch": 1, "loss": 1.0}])
    >>> h.loss
    array([2., 1.])
    >>> h[-1]["loss"], h.keys()
    (1.0, ['epoch', 'loss'])
    """

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

    Attributes
    ----------
    history_ : History
        One entry per epoch done.
    epochs_done_ : int
    stop_reason_ : str or None
        Why the last ``fit`` ended: ``"epochs"`` (all done), ``"callback"``
        (a callback set ``stop_training``), ``"non-finite loss"`` or
        ``"non-finite gradient"``.
    optimizer_ : torch.optim.Optimizer
    generator_ : torch.Generator
        The trainer's random stream (CPU).
    stop_training : bool
        Set by a callback to stop after the current epoch.

    Notes
    -----
    ``fit`` continues a training: it runs epochs ``epochs_done_ .. epochs -
    1``, so a second ``fit`` (after raising ``epochs``) or a ``fit`` after
    :meth:`load` goes on where the last one stopped, with the same optimizer
    state and random stream. With validation problems, ``val_loss`` is the
    mean loss on them for vectors drawn from a generator reseeded each epoch
    (the same vectors every epoch, so epochs compare).

    A non-finite loss or gradient stops training at once: the parameters and
    optimizer state go back to those of the last step whose loss and gradient
    were finite (from before its update), a RuntimeWarning says where it
    happened, and the unfinished epoch is not recorded.

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
    """

    def __init__(self, model: nn.Module, loss: Callable | None = None,
                 optimizer: str | type | Callable = "adam", lr: float = 1e-2, epochs: int = 100,
                 batch_size: int = 8, distribution: str = "normal",
                 device: str | torch.device | None = None, seed: int | None = None, callbacks: Sequence[Callback] = (),
                 progress: bool = True, metrics: dict[str, Callable] | None = None):
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
        self.stop_training = False
        self._callback_states = None
        self._last_good = None

    def __repr__(self) -> str:
        optimizer = self.optimizer if isinstance(self.optimizer, str) else \
            getattr(self.optimizer, "__name__", type(self.optimizer).__name__)
        return (f"Trainer({type(self.model).__name__}, optimizer={optimizer!r}, lr={self.lr:g}, "
                f"epochs={self.epochs}, batch_size={self.batch_size}, seed={self.seed})")

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
        self.epochs_done_ = 0
        self.stop_reason_ = None

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
        problem on a fresh block of ``batch_size`` random unit vectors.
        ``validation`` (same forms) is where the metrics and ``val_loss`` are
        measured. Returns self.
        """
        train = self._problems(problems, "problems")
        valid = None if validation is None else self._problems(validation, "validation")
        if not hasattr(self, "optimizer_"):
            self._initialize()
        if self.epochs_done_ >= self.epochs:
            warnings.warn(f"fit: all {self.epochs} epochs are done (epochs_done_ = "
                          f"{self.epochs_done_}); raise epochs to train further", UserWarning,
                          stacklevel=2)
            return self
        self.stop_training = False
        self.stop_reason_ = None
        self._last_good = None
        for callback in self.callbacks:
            callback.on_fit_start(self)
        if self._callback_states is not None:
            for callback, state in zip(self.callbacks, self._callback_states):
                callback.load_state_dict(state)
            self._callback_states = None
        bar = _progress_bar(total=self.epochs, initial=self.epochs_done_, disable=not self.progress,
                   unit="epoch", desc="training")
        try:
            self._run(train, valid, bar)
        finally:
            bar.close()
            self._last_good = None
        for callback in self.callbacks:
            callback.on_fit_end(self)
        return self

    def _run(self, train, valid, bar) -> None:
        for epoch in range(self.epochs_done_, self.epochs):
            for callback in self.callbacks:
                callback.on_epoch_start(self, epoch)
            start = time.perf_counter()
            lr = self.optimizer_.param_groups[0]["lr"]
            self.model.train()
            losses = []
            for index in torch.randperm(len(train), generator=self.generator_).tolist():
                problem = train[index]
                X = problem.random_rhs(self.batch_size, generator=self.generator_,
                                       distribution=self.distribution, normalize=True)
                try:
                    losses.append(self._step(problem, X))
                except _NonFinite as failure:
                    self._give_up(failure, epoch, index, problem)
                    return
            logs = {"epoch": epoch, "loss": _mean(losses), "lr": float(lr)}
            logs.update(self._measure(train, valid))
            logs["time"] = time.perf_counter() - start
            self.history_.append(logs)
            self.epochs_done_ = epoch + 1
            bar.set_postfix({k: f"{v:.4g}" for k, v in logs.items()
                             if k not in ("epoch", "lr", "time")}, refresh=False)
            bar.update()
            for callback in self.callbacks:
                callback.on_epoch_end(self, epoch, logs)
            if self.stop_training:
                self.stop_reason_ = "callback"
                return
        self.stop_reason_ = "epochs"

    def _step(self, problem: Problem, X: torch.Tensor) -> float:
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
            # Finite loss and gradient: these are the last good parameters.
            self._last_good = (_clone(self.model.state_dict()), _clone(optimizer.state_dict()))
            values.append(value)
            return loss

        optimizer.step(closure)
        return values[0]

    def _give_up(self, failure: _NonFinite, epoch: int, index: int, problem: Problem) -> None:
        """Restore the last good state after a non-finite loss or gradient, and warn."""
        self.optimizer_.zero_grad()
        if self._last_good is not None:
            model_state, optimizer_state = self._last_good
            self.model.load_state_dict(model_state)
            self.optimizer_.load_state_dict(optimizer_state)
            kept = ("the parameters were restored to the last good ones (those the last step "
                    "with a finite loss and gradient started from)")
        else:
            kept = "no step of this fit succeeded: the parameters are those it started with"
        self.stop_reason_ = f"non-finite {failure.what}"
        name = f" ({problem.name})" if problem.name else ""
        warnings.warn(f"Trainer.fit: non-finite {failure.what} at epoch {epoch}, problem "
                      f"{index}{name} (loss {failure.value:g}); training stopped and {kept}",
                      RuntimeWarning, stacklevel=4)

    @torch.no_grad()
    def _measure(self, train, valid) -> dict:
        """``val_loss`` and the metrics after an epoch (evaluation mode, no gradients)."""
        logs = {}
        if valid is None and not self.metrics:
            return logs
        self.model.eval()
        try:
            if valid is not None:
                generator = torch.Generator().manual_seed(self.seed or 0)
                logs["val_loss"] = _mean(float(self._loss(p, p.random_rhs(
                    self.batch_size, generator=generator, distribution=self.distribution,
                    normalize=True))) for p in valid)
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

    # ------------------------------------------------------------------ saving
    def _check_started(self, what: str) -> None:
        if not hasattr(self, "optimizer_"):
            raise RuntimeError(f"{what}: this trainer has not been fitted; call fit (or load) "
                               f"first")

    def save(self, path) -> None:
        """Save what a resumed training needs: model and optimizer state, history,
        epochs done, the random stream and the callbacks' states.

        Only tensors, numbers, strings, lists and dicts: the file loads with
        ``torch.load(path, weights_only=True)``.
        """
        self._check_started("save")
        torch.save({"format": _FORMAT, "version": 1,
                    "model": self.model.state_dict(),
                    "optimizer": self.optimizer_.state_dict(),
                    "history": [dict(row) for row in self.history_],
                    "epochs_done": self.epochs_done_,
                    "stop_reason": self.stop_reason_,
                    "generator": self.generator_.get_state(),
                    "callbacks": [{"type": type(c).__name__, "state": c.state_dict()}
                                  for c in self.callbacks]}, path)

    def load(self, path) -> "Trainer":
        """Restore a :meth:`save`d state into this trainer (built with the same
        arguments); the next ``fit`` continues from ``epochs_done_``. Returns self."""
        state = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(state, dict) or state.get("format") != _FORMAT:
            raise ValueError(f"path: expected a file written by Trainer.save, got {path!r}")
        saved = [c["type"] for c in state["callbacks"]]
        mine = [type(c).__name__ for c in self.callbacks]
        if saved != mine:
            raise ValueError(f"callbacks: the saved trainer had {saved}, this one has {mine}")
        self._initialize()
        self.model.load_state_dict(state["model"])
        self.optimizer_.load_state_dict(state["optimizer"])
        self.history_ = History(state["history"])
        self.epochs_done_ = int(state["epochs_done"])
        self.stop_reason_ = state["stop_reason"]
        self.generator_.set_state(state["generator"])
        self._callback_states = [c["state"] for c in state["callbacks"]]
        return self

    # ------------------------------------------------------------------ evaluation
    def _preconditioner(self, PCG):
        model = self.model
        if hasattr(model, "setup"):
            return model
        if isinstance(model, PCG) and getattr(model, "M", None) is not None:
            return model.M
        raise ValueError(f"model: evaluate needs a preconditioner (a module with setup(A)) or a "
                         f"PCG with a preconditioner M, got {type(model).__name__}")

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
        from .solvers.cg import PCG
        trained = self._preconditioner(PCG)
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
