"""Checks of the operands of the solves."""
from __future__ import annotations

import torch

from ..core import validation as V
from ..core.csr import CSRMatrix


def check_square(A, name: str = "A") -> CSRMatrix:
    if not isinstance(A, CSRMatrix):
        raise TypeError(f"{name}: expected a learnsolve.CSRMatrix, got {type(A).__name__}")
    if A.shape[0] != A.shape[1]:
        raise ValueError(f"{name}: expected a square matrix, got shape {A.shape}")
    return A


def check_rhs(A, b, name: str = "b") -> torch.Tensor:
    """A right-hand side of ``A x = b``: 1-D, or 2-D with one column per system.

    ``A`` is a CSRMatrix or any square operator with ``shape``, ``dtype`` and
    ``device`` (a solver's :class:`~learnsolve.solvers.base.Operator`)."""
    V.check_tensor(b, name)
    V.check_same_dtype("A", A, name, b)
    V.check_same_device("A", A, name, b)
    if b.dim() not in (1, 2) or b.shape[0] != A.shape[0]:
        raise ValueError(f"{name}: expected shape ({A.shape[0]},) or ({A.shape[0]}, k) for the "
                         f"{A.shape[0]}x{A.shape[1]} matrix, got {tuple(b.shape)}")
    return b
