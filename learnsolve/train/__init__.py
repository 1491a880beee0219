"""Training: the :class:`Trainer`, its :class:`History` and its callbacks.

What is where:

- :mod:`~learnsolve.train.trainer`: :class:`Trainer`, the loop ``fit`` ->
  ``run_epoch`` -> ``train_step`` and ``notify``, which calls the callbacks'
  hooks; ``evaluate``, ``plot_history`` and ``plot_convergence`` delegate to
  :mod:`learnsolve.evaluation` and :class:`History`.
- :mod:`~learnsolve.train.callbacks`: :class:`Callback` (hooks at fit, epoch,
  step and gradient level, which do nothing by default), :class:`EarlyStopping`,
  :class:`LRScheduler`, :class:`ProgressBar` (added by ``progress=True``) and
  :class:`Checkpoint` (saves every k epochs).
- :mod:`~learnsolve.train.rollback`: :class:`Rollback`, the copies of the
  trainable parameters and optimizer state that undo a step after a
  non-finite loss or gradient or an exception; :class:`NonFinite`; the
  progress of an epoch under way.
- :mod:`~learnsolve.train.sampling`: the random right-hand sides of a step.
- :mod:`~learnsolve.train.history`: :class:`History` and its figure.
- :mod:`~learnsolve.train.checkpoint`: the file format of ``save`` / ``load``.
- :mod:`~learnsolve.train.best`: ``keep_best``.
- :mod:`~learnsolve.train.measure`: ``val_loss`` and the metrics after an epoch.
- :mod:`~learnsolve.train.options`: the checks of the Trainer's arguments, the optimizers.

Examples
--------
>>> from learnsolve.train import Trainer, EarlyStopping
>>> from learnsolve.problems import poisson_1d
>>> from learnsolve.solvers.jacobi import Jacobi
>>> trainer = Trainer(Jacobi(1.0, 8), epochs=3, seed=0, progress=False,
...                   callbacks=[EarlyStopping(patience=5)])
>>> trainer.fit(poisson_1d(8)).history_
History(3 epochs: epoch, loss, lr, time; last loss ...)
"""
from .callbacks import Callback, Checkpoint, EarlyStopping, LRScheduler, ProgressBar
from .history import History
from .rollback import NonFinite, Rollback
from .trainer import Trainer

__all__ = ["Callback", "Checkpoint", "EarlyStopping", "History", "LRScheduler", "NonFinite",
           "ProgressBar", "Rollback", "Trainer"]
