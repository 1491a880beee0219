"""The checks of the :class:`~learnsolve.train.Trainer`'s arguments, and the optimizers it
builds by name."""
from __future__ import annotations

import numbers
import warnings

import torch
from torch import nn

from ..core.validation import check_count
from .callbacks import Callback
from .history import RESERVED

__all__ = ["OPTIMIZERS", "check_arguments", "check_differentiable", "build_optimizer"]

OPTIMIZERS = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "sgd": torch.optim.SGD}


def check_arguments(model, loss, optimizer, lr, distribution, device, rollback_device, seed,
                    callbacks, metrics, keep_best, rhs_per_problem, batch_size):
    """The Trainer's arguments checked (an exception naming the first that is not what
    it should be) and normalised: ``(model, loss, optimizer, lr, device,
    rollback_device, seed, callbacks, metrics, keep_best, rhs_per_problem)``."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model: expected a torch.nn.Module, got {type(model).__name__}")
    if loss is None and not callable(getattr(model, "loss", None)):
        raise TypeError(f"loss: the model ({type(model).__name__}) has no method "
                        f"loss(problem, X); pass loss=callable(model, problem, X)")
    if loss is not None and not callable(loss):
        raise TypeError(f"loss: expected None or a callable (model, problem, X) -> Tensor, "
                        f"got {type(loss).__name__}")
    _check_optimizer(optimizer)
    if distribution not in ("normal", "uniform"):
        raise ValueError(f"distribution: expected 'normal' or 'uniform', got "
                         f"{distribution!r}")
    if isinstance(lr, bool) or not isinstance(lr, numbers.Real) or not lr > 0:
        raise ValueError(f"lr: expected a positive number, got {lr!r}")
    device = _device(device, "device")
    rollback_device = _device(rollback_device, "rollback_device")
    if seed is not None:
        seed = check_count(seed, "seed", 0)
    callbacks = list(callbacks)
    for i, callback in enumerate(callbacks):
        if not isinstance(callback, Callback):
            raise TypeError(f"callbacks[{i}]: expected a learnsolve.train.Callback, got "
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
    if batch_size is not None:
        rhs_per_problem = check_count(batch_size, "batch_size")
        warnings.warn("Trainer: batch_size is deprecated; it is rhs_per_problem, the "
                      "random right-hand sides per problem and step (problems_per_step "
                      "is the problems per step)", DeprecationWarning, stacklevel=3)
    return (model, loss, optimizer, float(lr), device, rollback_device, seed, callbacks,
            metrics, keep_best, rhs_per_problem)


def check_differentiable(loss: torch.Tensor) -> torch.Tensor:
    """``loss``, if it depends on the model's parameters (a ValueError otherwise)."""
    if not loss.requires_grad:
        raise ValueError("loss: expected a tensor that depends on the model's parameters, got "
                         "one without gradient")
    return loss


def build_optimizer(optimizer, params: list, lr: float) -> torch.optim.Optimizer:
    """The optimizer of ``params``: by name, by class (with ``lr``) or by a callable
    ``params -> optimizer``."""
    if isinstance(optimizer, str):
        return OPTIMIZERS[optimizer.lower()](params, lr=lr)
    if isinstance(optimizer, type):
        return optimizer(params, lr=lr)
    built = optimizer(params)
    if not isinstance(built, torch.optim.Optimizer):
        raise TypeError(f"optimizer: expected the callable to return a "
                        f"torch.optim.Optimizer, got {type(built).__name__}")
    return built


def _check_optimizer(optimizer) -> None:
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


def _device(device, name: str) -> torch.device | None:
    if device is None:
        return None
    try:
        return torch.device(device)
    except (TypeError, RuntimeError) as error:
        raise ValueError(f"{name}: expected a torch device, got {device!r}") from error
