"""The file format of :meth:`Trainer.save <learnsolve.train.Trainer.save>` and
:meth:`~learnsolve.train.Trainer.load`, and copies of state dicts.

A file is a ``torch.save`` of a dict with only tensors, numbers, strings,
lists and dicts (it loads with ``torch.load(path, weights_only=True)``):
``format`` (``"learnsolve.Trainer"``), ``version``, ``model`` (the parameters
training continues from), ``optimizer``, ``history``, ``progress`` (an epoch
stopped in its middle, or None), ``stop_reason``, ``generator``,
``callbacks`` (type name and state of each) and, optional, ``best`` (what
``keep_best`` keeps) and ``problems_per_step`` (1 where absent).
"""
from __future__ import annotations

import torch

__all__ = ["FORMAT", "VERSION", "clone_state", "read", "write"]

FORMAT = "learnsolve.Trainer"
#: Version 2 adds the progress of an epoch stopped in its middle ("progress"); version 3
#: its vectors' seed ("progress"/"seed": the vectors are drawn per problem position since,
#: see :mod:`learnsolve.train.sampling`). Entries
#: added since are optional and leave what older readers use as it was ("best", what
#: keep_best keeps, beside "model", still the parameters training continues from;
#: "problems_per_step"): files without them load, and readers without them resume the
#: same training.
VERSION = 3


def clone_state(state):
    """A copy of a state dict whose tensors do not share memory with the original.

    Examples
    --------
    >>> state = {"w": torch.zeros(2), "n": [1, torch.ones(1)]}
    >>> copy = clone_state(state)
    >>> copy["w"].add_(1.0).data_ptr() != state["w"].data_ptr(), state["w"].tolist()
    (True, [0.0, 0.0])
    """
    if isinstance(state, torch.Tensor):
        return state.detach().clone()
    if isinstance(state, dict):
        return {k: clone_state(v) for k, v in state.items()}
    if isinstance(state, (list, tuple)):
        return type(state)(clone_state(v) for v in state)
    return state


def write(path, *, model: dict, optimizer: dict, history: list, progress: dict | None,
          stop_reason: str | None, generator: torch.Tensor, callbacks: list, best: dict | None,
          problems_per_step: int) -> None:
    """Write a trainer's state to ``path`` (the entries of the module's docstring);
    ``callbacks`` is the list of the callbacks themselves."""
    torch.save({"format": FORMAT, "version": VERSION,
                "model": model,
                "optimizer": optimizer,
                "history": [dict(row) for row in history],
                "progress": progress,
                "stop_reason": stop_reason,
                "generator": generator,
                "callbacks": [{"type": type(c).__name__, "state": c.state_dict()}
                              for c in callbacks],
                "best": best,
                "problems_per_step": problems_per_step}, path)


def read(path, *, callbacks: list, keep_best: str | None, problems_per_step: int) -> dict:
    """The state in ``path``, checked against the trainer that loads it: the same
    callbacks (by type), the same ``keep_best`` if the file has one, and, for an epoch
    stopped in its middle, the same ``problems_per_step``."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise ValueError(f"path: expected a file written by Trainer.save, got {path!r}")
    if state.get("version") not in range(1, VERSION + 1):
        raise ValueError(f"path: expected a Trainer.save file of version 1 to {VERSION}, "
                         f"got version {state.get('version')!r} ({path!r})")
    saved = [c["type"] for c in state["callbacks"]]
    mine = [type(c).__name__ for c in callbacks]
    if saved != mine:
        raise ValueError(f"callbacks: the saved trainer had {saved}, this one has {mine}")
    best = state.get("best")
    if best is not None and best["monitor"] != keep_best:
        raise ValueError(f"keep_best: the saved trainer kept the best by "
                         f"{best['monitor']!r}, this one has keep_best={keep_best!r}")
    saved_k = int(state.get("problems_per_step", 1))
    if state.get("progress") is not None and saved_k != problems_per_step:
        raise ValueError(f"problems_per_step: the saved trainer stopped in the middle of an "
                         f"epoch with problems_per_step={saved_k}, this one has "
                         f"{problems_per_step}")
    return state
