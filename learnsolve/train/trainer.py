"""The :class:`Trainer`'s loop: ``fit`` -> ``run_epoch`` -> ``train_step``, and
:meth:`Trainer.notify`, which calls every callback's hook.

A trainable model is an ``nn.Module`` with a method ``loss(problem, X) ->
scalar Tensor``, its training loss on a block ``X`` of random vectors
``(n, J)`` (or any module, with a ``loss(model, problem, X)`` given to the
trainer). The trainer draws the vectors (:mod:`~learnsolve.train.sampling`),
steps the optimizer, records the :class:`~learnsolve.train.History`, calls
the callbacks (:mod:`~learnsolve.train.callbacks`), undoes a step that met a
non-finite loss (:mod:`~learnsolve.train.rollback`) and saves its state
(:mod:`~learnsolve.train.checkpoint`) so that a training can be resumed bit
for bit, at an epoch's end or in its middle.
"""
from __future__ import annotations

import math
import time
import warnings
from typing import Callable, Sequence

import torch
from torch import nn

from ..core.validation import check_bool, check_count
from ..evaluation import (BASELINES, Evaluation, as_problems, compare_preconditioners,
                          preconditioner_of)
from ..problems.batch import batch_problems
from ..problems.problem import Problem, ProblemSet
from . import checkpoint
from .best import KeepBest
from .callbacks import Callback, ProgressBar
from .checkpoint import clone_state
from .distributed import process_group, warn_idle
from .history import History
from .measure import Measure
from .options import build_optimizer, check_arguments, check_differentiable
from .rollback import NonFinite, Progress, Rollback
from .sampling import draw_rhs, stream_seed

__all__ = ["Trainer"]

class Trainer(KeepBest, Measure):
    """Fits a model's parameters on problems: an epoch is one optimizer step per
    ``problems_per_step`` problems (default one).

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
    rhs_per_problem : int
        ``J``, the random right-hand sides drawn per problem per step: ``X =
        problem.random_rhs(J, distribution=distribution, normalize=True)``,
        unit 2-norm columns (:mod:`learnsolve.train.sampling`).
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
        Called at fit, epoch, step and gradient level (:class:`Callback`).
    progress : bool
        A tqdm progress bar over the epochs (epoch, loss, time left): a
        :class:`ProgressBar` put in front of the callbacks (unless one is
        among them).
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
    problems_per_step : int
        The problems of an optimizer step: it minimises the mean of their
        losses, each on its own block of ``rhs_per_problem`` vectors. An epoch
        takes the problems in its shuffled order, ``problems_per_step`` at a
        time (the last step what is left): ``ceil(len(problems) /
        problems_per_step)`` steps. With 1, one step per problem.
    batch : bool
        With ``problems_per_step > 1``: the problems of a step are one
        block-diagonal problem (:func:`~learnsolve.problems.batch_problems`) and
        their vectors are stacked, each problem's in its rows, so that the
        loss is one call (one graph for a network, one solve for all factors)
        instead of one per problem. ``pcg_loss`` (PCG solves each block as a
        system of its own) and ``gmres_loss`` then give the mean of the
        problems' losses, to rounding; other losses see the batch as one
        matrix (``spai_loss``'s norm of the whole, say). A model that needs a
        problem's partition cannot be batched.
    rollback_device : str or torch.device, optional
        Where the copies that undo a step are kept (:class:`Rollback`): beside
        the parameters (default), or ``"cpu"`` to spare a GPU's memory.
    distributed : bool, optional
        Train over several processes (``torch.distributed``, launched by
        ``torchrun``; :mod:`~learnsolve.train.distributed`): each process takes
        its share of every step's problems and DDP averages the gradients, so
        that the training is that of one process with the same
        ``problems_per_step``, to rounding. None (default): when a process group
        of more than one process is initialised. True: also initialise one
        from torchrun's environment if none is (NCCL for a CUDA ``device``,
        whose bare ``"cuda"`` then means the process's ``LOCAL_RANK`` GPU, gloo
        otherwise). False: one process.
    batch_size : int, optional
        Deprecated alias of ``rhs_per_problem`` (a DeprecationWarning).

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
    rollback_ : Rollback
        The copies that undo a step (see Notes).
    group_ : ProcessGroup or None
        The processes of a distributed training (its ``rank`` and
        ``world_size``), None in one process.
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
    interrupted: the model and the optimizer go back to where that step
    started (the random stream draws nothing during an epoch's steps: their
    vectors come from the epoch's seed), and the trainer keeps the epoch's order and the losses
    of its steps done. A ``fit`` in place, or after :meth:`save` and
    :meth:`load`, redoes that step on the same vectors and ends with the same
    parameters, history and random stream as a training never interrupted.
    Callbacks see ``on_epoch_start`` again for the resumed epoch. The cost is
    one copy of the trainable parameters and of the optimizer's state (not
    of the model's buffers or frozen parameters, which a step does not move),
    into buffers allocated once per ``fit`` and overwritten once a step when
    its first loss and gradient are found finite (not at the further closure
    calls of LBFGS): :class:`Rollback`.

    A non-finite loss or gradient stops training at once: the parameters and
    optimizer state go back to those the last step of the
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
    ({'iterations': 23.0}, [25.0, 25.0, 24.0])
    >>> trainer.best_epoch_, trainer.best_value_
    (18, 20.0)

    Two problems per step (an epoch of three problems is two steps):

    >>> steps = []
    >>> class Steps(Callback):
    ...     def on_step_end(self, trainer, step, loss):
    ...         steps.append(step)
    >>> trainer = Trainer(Jacobi(1.0, num_nodes=8), epochs=3, seed=0, progress=False,
    ...                   problems_per_step=2, callbacks=[Steps()])
    >>> trainer.fit([poisson_1d(8)] * 3).history_.epoch.tolist(), steps
    ([0, 1, 2], [0, 1, 0, 1, 0, 1])
    """


    def __init__(self, model: nn.Module, loss: Callable | None = None,
                 optimizer: str | type | Callable = "adam", lr: float = 1e-2, epochs: int = 100,
                 rhs_per_problem: int = 8, distribution: str = "normal",
                 device: str | torch.device | None = None, seed: int | None = None,
                 callbacks: Sequence[Callback] = (), progress: bool = True,
                 metrics: dict[str, Callable] | None = None, keep_best: str | None = None, *,
                 problems_per_step: int = 1, batch: bool = False,
                 rollback_device: str | torch.device | None = None,
                 distributed: bool | None = None, batch_size: int | None = None):
        (model, loss, optimizer, lr, device, rollback_device, seed, callbacks, metrics,
         keep_best, rhs_per_problem) = check_arguments(
            model, loss, optimizer, lr, distribution, device, rollback_device, seed, callbacks,
            metrics, keep_best, rhs_per_problem, batch_size)
        self.model = model
        self.loss = loss
        self.optimizer = optimizer
        self.lr = float(lr)
        self.epochs = check_count(epochs, "epochs")
        self.rhs_per_problem = check_count(rhs_per_problem, "rhs_per_problem")
        self.problems_per_step = check_count(problems_per_step, "problems_per_step")
        self.batch = check_bool(batch, "batch")
        self.distribution = distribution
        self.device = device
        self.rollback_device = rollback_device
        if distributed is not None:
            distributed = check_bool(distributed, "distributed")
        self.distributed = distributed
        self.seed = seed
        self.callbacks = callbacks
        self.progress = bool(progress)
        self._bar = ProgressBar() if self.progress and not any(
            isinstance(c, ProgressBar) for c in callbacks) else None
        self.metrics = metrics
        self.keep_best = keep_best
        self.stop_training = False
        self._callback_states = None
        self._progress = None

    @property
    def batch_size(self) -> int:
        """Deprecated: :attr:`rhs_per_problem`."""
        warnings.warn("Trainer.batch_size is deprecated; use rhs_per_problem",
                      DeprecationWarning, stacklevel=2)
        return self.rhs_per_problem

    def __repr__(self) -> str:
        optimizer = self.optimizer if isinstance(self.optimizer, str) else \
            getattr(self.optimizer, "__name__", type(self.optimizer).__name__)
        return (f"Trainer({type(self.model).__name__}, optimizer={optimizer!r}, lr={self.lr:g}, "
                f"epochs={self.epochs}, rhs_per_problem={self.rhs_per_problem}, "
                f"problems_per_step={self.problems_per_step}, seed={self.seed})")

    @property
    def epochs_done_(self) -> int:
        """The epochs done: the entries of ``history_``."""
        return len(self.history_)

    def notify(self, hook: str, **kwargs) -> None:
        """Call ``hook`` (``"on_epoch_end"``, ...) of every callback with this trainer and
        ``kwargs``: the progress bar's first (with ``progress=True``), then
        :attr:`callbacks` in order.

        Examples
        --------
        >>> from learnsolve.solvers.jacobi import Jacobi
        >>> class Hello(Callback):
        ...     def on_epoch_start(self, trainer, epoch):
        ...         print("hello from epoch", epoch)
        >>> Trainer(Jacobi(1.0, 4), callbacks=[Hello()]).notify("on_epoch_start", epoch=3)
        hello from epoch 3
        """
        others = getattr(self, "group_", None) is not None and self.group_.rank != 0
        for callback in ([] if self._bar is None else [self._bar]) + self.callbacks:
            if not (others and callback.rank_zero_only):
                getattr(callback, hook)(self, **kwargs)

    # ------------------------------------------------------------------ set-up
    def _initialize(self) -> None:
        """Find the processes, move the model, build the optimizer and the random stream;
        empty history."""
        self.group_, self._device = process_group(self.distributed, self.device)
        if self._device is not None:
            self.model.to(self._device)
        params = [p for p in self.model.parameters() if p.requires_grad]
        if not params:
            raise ValueError(f"model: expected trainable parameters, {type(self.model).__name__} "
                             f"has none (with requires_grad)")
        self._step_loss = None if self.group_ is None else self.group_.wrap(self.model,
                                                                             self._loss)
        self.optimizer_ = build_optimizer(self.optimizer, params, self.lr)
        self.generator_ = torch.Generator()
        seed = self.seed
        if self.group_ is not None:
            seed = self.group_.agree(seed, "seed")
        if seed is None:
            self.generator_.seed()
        else:
            self.generator_.manual_seed(seed)
        self.rollback_ = Rollback(self.rollback_device)
        self.history_ = History()
        self._progress = None
        self.stop_reason_ = None
        self.start_logs_ = self.best_epoch_ = self.best_value_ = None
        self._best_state = None     # the parameters keep_best keeps
        self._trained_state = None  # those training reached, while the model holds the best

    def _problems(self, problems, name: str) -> Sequence[Problem]:
        """Problems as a sequence, moved to the trainer's device."""
        problems = as_problems(problems, name)
        device = getattr(self, "_device", self.device)
        if device is None:
            return problems
        if isinstance(problems, ProblemSet):
            return problems.to(device)
        return [problem.to(device) for problem in problems]

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

        Runs epochs ``epochs_done_ .. epochs - 1`` (:meth:`run_epoch`); in each,
        the problems in an order shuffled by the trainer's generator, one
        optimizer step (:meth:`train_step`) per ``problems_per_step`` of them,
        each problem on a fresh block of ``rhs_per_problem`` random unit
        vectors. An epoch that an exception or a non-finite loss stopped in its
        middle is resumed at the step it stopped at (see the Notes of
        :class:`Trainer`). ``validation`` (same forms) is where the metrics and
        ``val_loss`` are measured. With ``keep_best``, ends with the best
        parameters (see the Notes of :class:`Trainer`). Returns self.
        """
        if self.keep_best == "val_loss" and validation is None:
            raise ValueError("validation: keep_best='val_loss' needs validation problems, got "
                             "None")
        if not hasattr(self, "optimizer_"):
            self._initialize()
        train = self._problems(problems, "problems")
        valid = None if validation is None else self._problems(validation, "validation")
        if self.group_ is not None:
            warn_idle(self.problems_per_step, self.group_.world_size)
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
        try:
            self.notify("on_fit_start")
            if self._callback_states is not None:
                for callback, state in zip(self.callbacks, self._callback_states):
                    callback.load_state_dict(state)
                self._callback_states = None
            if self.keep_best is not None and self.start_logs_ is None and \
                    self.epochs_done_ == 0 and self._progress is None:
                self._keep_start(train, valid)
            self._fit_loop(train, valid)
        except BaseException as error:
            self.notify("on_exception", error=error)
            raise
        finally:
            self.rollback_.release()
        trained = None if self._best_state is None else clone_state(self.model.state_dict())
        self.notify("on_fit_end")
        if trained is not None:
            self._restore_best(trained)
        return self

    def _fit_loop(self, train, valid) -> None:
        """The epochs of ``fit``: each run, recorded and seen by the callbacks."""
        first = self.epochs_done_
        for epoch in range(first, self.epochs):
            self.notify("on_epoch_start", epoch=epoch)
            try:
                logs = self.run_epoch(train, valid)
            except NonFinite as failure:
                self._give_up(failure, train, first)
                return
            self.history_.append(logs)
            if self.keep_best is not None:
                self._keep_if_better(epoch, logs)
            self._progress = None
            self.rollback_.clear()
            self.notify("on_epoch_end", epoch=epoch, logs=logs)
            if self.stop_training:
                self.stop_reason_ = "callback"
                return
        self.stop_reason_ = "epochs"

    def run_epoch(self, train: Sequence[Problem], valid: Sequence[Problem] | None = None) -> dict:
        """Run epoch ``epochs_done_`` (or the rest of the one stopped in its middle) and
        return its history entry, unrecorded: ``fit`` records it.

        ``train`` and ``valid`` are sequences of problems on the trainer's
        device. An exception undoes the step it interrupted before it leaves;
        a :class:`NonFinite` loss or gradient leaves the step for ``fit`` to
        undo (back to the last good step).
        """
        lr = self.optimizer_.param_groups[0]["lr"]
        self.model.train()
        if self._progress is None:
            order = torch.randperm(len(train), generator=self.generator_).tolist()
            seed = stream_seed(self.generator_)
            self._progress = Progress(self.epochs_done_, order, seed)
        progress = self._progress
        start = time.perf_counter()
        try:
            self._steps(train, progress)
            logs = {"epoch": progress.epoch, "loss": self._epoch_loss(progress),
                    "lr": float(lr)}
            logs.update(self._measure(train, valid))
        except NonFinite:
            raise
        except BaseException:
            self._rewind(progress)
            raise
        finally:
            progress.elapsed += time.perf_counter() - start
        logs["time"] = progress.elapsed
        return logs

    def _batches(self, order: Sequence[int]) -> list[list[int]]:
        """The problems of each step of an epoch of ``order``."""
        k = self.problems_per_step
        return [list(order[i:i + k]) for i in range(0, len(order), k)]

    def _epoch_loss(self, progress: Progress) -> float:
        """The mean over the epoch's problems of the loss of their step."""
        sizes = [len(batch) for batch in self._batches(progress.order)]
        return math.fsum(loss * size for loss, size in zip(progress.losses, sizes)) / sum(sizes)

    def _steps(self, train, progress: Progress) -> None:
        """The epoch's steps from ``progress.step`` on: each on the problems at its
        positions of the epoch's order (this process's share of them), each problem on
        the vectors of its position."""
        steps = self._batches(range(len(progress.order)))
        while progress.step < len(steps):
            positions = steps[progress.step]
            mine = positions if self.group_ is None else self.group_.share(
                positions, _known_costs(train, [progress.order[i] for i in positions]))
            problems = [train[progress.order[i]] for i in mine]
            X = draw_rhs(problems, self.rhs_per_problem, progress.seed, mine, self.distribution)
            progress.losses.append(self.train_step(problems, X, total=len(positions)))
            progress.step += 1

    def train_step(self, problems: Problem | Sequence[Problem],
                   X: torch.Tensor | Sequence[torch.Tensor], *, total: int | None = None
                   ) -> float:
        """One optimizer step on the mean loss of ``problems``, each on its block ``X``
        (one problem and one block, or sequences of them); returns the loss before the
        step.

        In a distributed training (:attr:`group_`), every process calls it with
        its share of the step's problems (possibly none) and the step is on the
        mean loss of all of them; ``total`` is their number on all processes
        (default: counted, one more collective).

        Calls the callbacks' ``on_step_start``, ``on_gradient`` (after the
        backward pass, at each closure call) and ``on_step_end``. Raises
        :class:`NonFinite` on a non-finite loss or gradient (the optimizer has
        not stepped then). The parameters and the optimizer's state at the
        step's start are copied into :attr:`rollback_` once the first loss and
        gradient are found finite. Needs the optimizer: call after ``fit`` (or
        :meth:`load`), or from a callback.

        Examples
        --------
        >>> from learnsolve.problems import poisson_1d
        >>> from learnsolve.solvers.jacobi import Jacobi
        >>> p = poisson_1d(8)
        >>> trainer = Trainer(Jacobi(1.0, 8), epochs=1, seed=0, progress=False).fit(p)
        >>> X = p.random_rhs(4, seed=1, normalize=True)
        >>> first = trainer.train_step(p, X)
        >>> bool(trainer.train_step(p, X) < first)
        True
        """
        self._check_started("train_step")
        if isinstance(problems, Problem):
            problems, X = [problems], [X]
        problems, X = list(problems), list(X)
        if len(problems) != len(X):
            raise ValueError(f"X: expected one block per problem ({len(problems)}), got "
                             f"{len(X)}")
        if self.group_ is None and not problems:
            raise ValueError("problems: expected at least one problem, got none")
        if self.group_ is not None and total is None:
            total = round(self.group_.sum([len(problems)])[0])
        progress = self._progress
        step = None if progress is None else progress.step
        self.notify("on_step_start", step=step, problems=problems, X=X)
        optimizer = self.optimizer_
        params = [p for group in optimizer.param_groups for p in group["params"]]
        values = []
        pairs = [(p, x, 1) for p, x in zip(problems, X)]
        if self.batch and len(problems) > 1:
            pairs = [(batch_problems(problems), torch.cat(X), len(problems))]

        def closure():
            optimizer.zero_grad()
            loss, value = self._step_loss_of(pairs, total)
            if not math.isfinite(value):
                raise NonFinite("loss", value)
            loss.backward()
            self.notify("on_gradient", step=step, loss=value)
            grads = [p.grad for p in params if p.grad is not None]
            if grads and not bool(torch.stack([torch.isfinite(g).all() for g in grads]).all()):
                raise NonFinite("gradient", value)
            if not values:
                # Finite at the step's start, before the optimizer moves anything:
                # what undoing this step needs.
                self.rollback_.take(optimizer, step)
            values.append(value)
            return loss if self.group_ is None else loss.new_tensor(value)

        optimizer.step(closure)
        self.notify("on_step_end", step=step, loss=values[0])
        return values[0]

    def _step_loss_of(self, pairs: list, total: int | None) -> tuple[torch.Tensor, float]:
        """The loss to differentiate for a step on ``pairs`` (``(problem, X, count)``)
        and the step's loss (a float: the mean over all the step's problems, on every
        process). In a distributed training, this process's share scaled for DDP's
        average (:mod:`~learnsolve.train.distributed`)."""
        if self.group_ is not None:
            loss, local = self._step_loss(pairs, self.group_.world_size / total)
            return loss, self.group_.sum([float(local)])[0] / total
        losses = [self._loss(p, x) for p, x, _ in pairs]
        loss = check_differentiable(losses[0] if len(losses) == 1 else
                                    torch.stack(losses).mean())
        return loss, float(loss.detach())

    def _rewind(self, progress: Progress, last_good: bool = False) -> bool:
        """Undo the step under way: back to its start (model, optimizer, losses; the
        generator draws nothing during an epoch's steps).

        The parameters and the optimizer come from the rollback copies where the
        step took them (the optimizer may have moved them since), else they have
        not moved. With ``last_good`` (after a non-finite loss or gradient),
        back to the copies' step whichever it is: the last of the epoch whose
        loss and gradient were finite at its start. Returns whether the copies
        were restored.
        """
        rollback = self.rollback_
        self.optimizer_.zero_grad()
        restored = rollback.held and (last_good or rollback.step == progress.step)
        if restored:
            rollback.restore(self.optimizer_)
            progress.step = rollback.step
        rollback.clear()
        del progress.losses[progress.step:]
        return restored

    def _give_up(self, failure: NonFinite, train, first: int) -> None:
        """Go back to the last good step after a non-finite loss or gradient, and warn.

        ``first`` is the first epoch of this fit: without rollback copies, no
        step of it succeeded, or the failure is at the first step of a later
        epoch.
        """
        progress = self._progress
        indices = self._batches(progress.order)[progress.step]
        if self._rewind(progress, last_good=True):
            kept = ("the parameters were restored to the last good ones (those the last step "
                    "with a finite loss and gradient started from)")
        elif progress.epoch == first:
            kept = "no step of this fit succeeded: the parameters are those it started with"
        else:
            kept = (f"the parameters are those epoch {progress.epoch} started with (a finished "
                    f"epoch is not undone)")
        self.stop_reason_ = f"non-finite {failure.what}"
        if len(indices) == 1:
            name = train[indices[0]].name
            where = f"problem {indices[0]}" + (f" ({name})" if name else "")
        else:
            where = f"problems {indices}"
        warnings.warn(f"Trainer.fit: non-finite {failure.what} at epoch {progress.epoch}, "
                      f"{where} (loss {failure.value:g}); training stopped and {kept}",
                      RuntimeWarning, stacklevel=4)

    # ------------------------------------------------------------------ saving
    def _check_started(self, what: str) -> None:
        if not hasattr(self, "optimizer_"):
            raise RuntimeError(f"{what}: this trainer has not been fitted; call fit (or load) "
                               f"first")

    def save(self, path) -> None:
        """Save what a resumed training needs: model and optimizer state, history,
        the random stream, the callbacks' states, ``problems_per_step``, for an
        epoch stopped in its middle, its order and the losses of its steps done,
        and with ``keep_best`` the best parameters, their epoch and value and
        ``start_logs_`` (entry ``"best"``; entry ``"model"`` holds the
        parameters training continues from). The format:
        :mod:`learnsolve.train.checkpoint`.

        Saved after an exception ended ``fit``, the states are those at the
        start of the step it interrupted (see the Notes of :class:`Trainer`),
        so a trainer loaded with :meth:`load` redoes that step. Only tensors,
        numbers, strings, lists and dicts: the file loads with
        ``torch.load(path, weights_only=True)``.

        In a distributed training every process calls it (as the
        :class:`~learnsolve.train.Checkpoint` callback does): rank 0 writes, and
        all return once the file is written.

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
        if self.group_ is None or self.group_.rank == 0:
            checkpoint.write(path, model=trained, optimizer=self.optimizer_.state_dict(),
                             history=self.history_, progress=progress,
                             stop_reason=self.stop_reason_,
                             generator=self.generator_.get_state(), callbacks=self.callbacks,
                             best=self._best_record(), problems_per_step=self.problems_per_step)
        if self.group_ is not None:
            self.group_.barrier()

    def load(self, path) -> "Trainer":
        """Restore a state written by :meth:`save` into this trainer (built with
        the same arguments); the next ``fit`` continues from ``epochs_done_``,
        in the middle of that epoch if it was saved there. Files of version 1
        (saved at the end of an epoch, before version 2 of this format) load
        too, and so do files without ``keep_best``'s entry: a trainer with
        ``keep_best`` then keeps the best of the epochs it runs from there.
        Returns self."""
        state = checkpoint.read(path, callbacks=self.callbacks, keep_best=self.keep_best,
                                problems_per_step=self.problems_per_step)
        self._initialize()
        self.model.load_state_dict(state["model"])
        self.optimizer_.load_state_dict(state["optimizer"])
        self.history_ = History(state["history"])
        self.stop_reason_ = state["stop_reason"]
        self.generator_.set_state(state["generator"])
        if state.get("progress") is not None:
            self._progress = Progress.from_state(state["progress"], self.generator_.get_state())
        self._callback_states = [c["state"] for c in state["callbacks"]]
        if state.get("best") is not None:
            self._load_best(state["best"], state["model"])
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
        """The loss per epoch (log scale where positive), the metrics on a twin axis:
        :meth:`History.plot` of ``history_``.

        Returns a :class:`matplotlib.figure.Figure` (not registered with pyplot).
        """
        if not getattr(self, "history_", None):
            raise RuntimeError("plot_history: there is no history yet; call fit first")
        return self.history_.plot()

    def plot_convergence(self, problem: Problem, rtol: float = 1e-6, maxiter: int | None = None,
                         baselines: Sequence[str] = BASELINES):
        """The relative residual of PCG against the iteration on ``problem``, with the
        trained preconditioner and the baselines (see :meth:`evaluate`). Returns a Figure."""
        if not isinstance(problem, Problem):
            raise TypeError(f"problem: expected a learnsolve.problems.Problem, got "
                            f"{type(problem).__name__}")
        return self.evaluate(problem, rtol, maxiter, baselines).plot()


def _known_costs(problems: Sequence[Problem], indices: list[int]) -> list[int] | None:
    """The stored entries of ``problems[i]`` for ``i`` in ``indices`` if all are known
    without making or reading a problem (:meth:`ProblemSet.nnz_of`), else None."""
    if not isinstance(problems, ProblemSet):
        return [problems[i].A.nnz for i in indices]
    costs = [problems.nnz_of(i) for i in indices]
    return None if None in costs else costs
