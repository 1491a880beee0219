"""Undoing a step: how far an epoch has gone (:class:`Progress`) and the copies that put
the trainable parameters and the optimizer back where a step started (:class:`Rollback`).

The trainer takes a copy once per step, when the step's first loss and
gradient are found finite, and restores it after a non-finite loss or
gradient, or after an exception in the middle of the step, so that the
training resumes bit for bit (see the Notes of
:class:`~learnsolve.train.Trainer`).
"""
from __future__ import annotations

import warnings
from typing import Sequence

import torch

from .sampling import stream_seed

__all__ = ["NonFinite", "Progress", "Rollback"]


class NonFinite(ArithmeticError):
    """A non-finite loss or gradient met in a step (caught by the trainer's loop).

    ``what`` is ``"loss"`` or ``"gradient"``, ``value`` the step's loss.
    """

    def __init__(self, what: str, value: float):
        super().__init__(f"non-finite {what} (loss {value:g})")
        self.what, self.value = what, value


class Progress:
    """How far the epoch under way has gone: what resuming it in its middle needs.

    ``order`` is the epoch's shuffled problem order, ``seed`` the seed of its
    vectors (:mod:`~learnsolve.train.sampling`), ``losses[:step]`` the losses of
    its ``step`` optimizer steps done (each over ``problems_per_step`` problems
    of ``order``, the last over what is left), ``elapsed`` the seconds the
    epoch has run. The trainer's generator draws the order and the seed when
    the epoch starts, and nothing while its steps run. While a step runs, the model
    and the optimizer may be past this boundary; the trainer's rewind brings
    them back.

    Examples
    --------
    >>> p = Progress(0, [2, 0, 1], 7, losses=[1.5])
    >>> p.step, p.state_dict()["order"], p.state_dict()["seed"]
    (1, [2, 0, 1], 7)
    """

    def __init__(self, epoch: int, order: Sequence[int], seed: int,
                 losses: Sequence[float] = (), elapsed: float = 0.0):
        self.epoch, self.order, self.seed = epoch, list(order), seed
        self.losses = list(losses)
        self.step = len(self.losses)
        self.elapsed = elapsed

    def state_dict(self) -> dict:
        """Numbers and lists only."""
        return {"epoch": self.epoch, "order": self.order, "seed": self.seed,
                "losses": self.losses[:self.step], "elapsed": self.elapsed}

    @classmethod
    def from_state(cls, state: dict, generator: torch.Tensor) -> "Progress":
        """The progress saved by :meth:`state_dict`. A state without ``seed`` (a file of
        version 2, whose epochs drew their vectors one step after the other from the
        trainer's generator) gets one drawn from a generator in the state ``generator``
        (the trainer's, saved with it): the rest of that epoch trains on other vectors
        than it would have, with a warning."""
        seed = state.get("seed")
        if seed is None:
            warnings.warn("Trainer.load: this file was saved in the middle of an epoch by an "
                          "older version, which drew the vectors differently; the rest of "
                          "that epoch trains on new vectors", UserWarning, stacklevel=3)
            g = torch.Generator()
            g.set_state(generator)
            seed = stream_seed(g)
        return cls(int(state["epoch"]), state["order"], int(seed), state["losses"],
                   float(state["elapsed"]))


def _params(optimizer: torch.optim.Optimizer) -> list[torch.Tensor]:
    return [p for group in optimizer.param_groups for p in group["params"]]


class _Saved:
    """A tensor of the optimizer's state, copied into a reused buffer; ``device``: where
    the original lives (the buffer may be on the CPU)."""

    __slots__ = ("buffer", "device")

    def __init__(self, buffer: torch.Tensor, device: torch.device):
        self.buffer, self.device = buffer, device


class Rollback:
    """Copies of the trainable parameters and the optimizer's state at the start of a
    step, in buffers allocated once and overwritten (``copy_``) at every step.

    Only what an optimizer step moves is kept: the parameters the optimizer
    holds, its per-parameter state (Adam's moments and step counts, LBFGS's
    history, ...) and its groups' settings (``lr``, ...). Buffers and frozen
    parameters are not copied: a step does not change them (a model whose
    forward pass updates a buffer, such as BatchNorm's running statistics,
    keeps the update of an undone step).

    Parameters
    ----------
    device : str or torch.device, optional
        Where the copies live: ``None`` beside each tensor (on the GPU for a
        GPU model), ``"cpu"`` in host memory, which a GPU model's training
        then does not spend (the copy costs a device-to-host transfer a step).

    Attributes
    ----------
    step : int or None
        The step (counted in the epoch) the copies are of; None when none is held.

    Examples
    --------
    >>> from torch import nn
    >>> model = nn.Linear(3, 2)
    >>> model.register_buffer("big", torch.zeros(1000))
    >>> optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    >>> rollback = Rollback()
    >>> rollback.take(optimizer, step=0)
    >>> rollback.nbytes                       # the 8 parameters in float32, no buffer
    32
    >>> start = model.weight.detach().clone()
    >>> with torch.no_grad():
    ...     _ = model.weight.add_(1.0)
    >>> rollback.restore(optimizer)
    >>> torch.equal(model.weight, start)
    True
    """

    def __init__(self, device: str | torch.device | None = None):
        self.device = None if device is None else torch.device(device)
        self._pool: dict[tuple, torch.Tensor] = {}   # the buffers, by where they are used
        self._state: dict[int, dict] = {}            # per parameter index: its state's copy
        self._groups: list[dict] = []
        self.step = None

    @property
    def held(self) -> bool:
        """Whether copies are held (taken and not cleared since)."""
        return self.step is not None

    @property
    def nbytes(self) -> int:
        """The bytes of the buffers (all allocated, held or not)."""
        return sum(buffer.nbytes for buffer in self._pool.values())

    def clear(self) -> None:
        """Forget the copies (the buffers stay, for the next step)."""
        self.step = None

    def release(self) -> None:
        """Forget the copies and free the buffers."""
        self.clear()
        self._pool, self._state, self._groups = {}, {}, []

    def _copy(self, value, key: tuple):
        """``value`` with its tensors copied into the buffers at ``key``."""
        if isinstance(value, torch.Tensor):
            device = value.device if self.device is None else self.device
            buffer = self._pool.get(key)
            if buffer is None or buffer.shape != value.shape or buffer.dtype != value.dtype \
                    or buffer.device != device:
                buffer = self._pool[key] = torch.empty_like(value, device=device)
            buffer.copy_(value.detach())
            return _Saved(buffer, value.device)
        if isinstance(value, dict):
            return {k: self._copy(v, key + (k,)) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return type(value)(self._copy(v, key + (i,)) for i, v in enumerate(value))
        return value

    @staticmethod
    def _fresh(value):
        """A copy of a saved value with tensors of their own, where the originals lived."""
        if isinstance(value, _Saved):
            return value.buffer.to(value.device, copy=True)
        if isinstance(value, dict):
            return {k: Rollback._fresh(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return type(value)(Rollback._fresh(v) for v in value)
        return value

    @torch.no_grad()
    def take(self, optimizer: torch.optim.Optimizer, step: int | None) -> None:
        """Copy the optimizer's parameters and state (the start of step ``step``)."""
        self.step = None     # a copy interrupted half-way is no copy
        self._groups = [{k: v for k, v in group.items() if k != "params"}
                        for group in optimizer.param_groups]
        state = {}
        for i, param in enumerate(_params(optimizer)):
            self._copy(param, ("param", i))
            if optimizer.state.get(param):
                state[i] = self._copy(optimizer.state[param], ("state", i))
        self._state = state
        self.step = step

    @torch.no_grad()
    def restore(self, optimizer: torch.optim.Optimizer) -> None:
        """Put the parameters, the optimizer's state and its groups' settings back."""
        for i, param in enumerate(_params(optimizer)):
            param.copy_(self._pool[("param", i)])
            if i in self._state:
                optimizer.state[param] = self._fresh(self._state[i])
            else:
                optimizer.state.pop(param, None)
        for group, saved in zip(optimizer.param_groups, self._groups):
            group.update(saved)
