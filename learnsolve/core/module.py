"""CSRBuffer: a CSRMatrix owned by an ``nn.Module``, moved and saved with it."""
from __future__ import annotations

import torch
from torch import nn

from . import validation as V
from .cache import MatrixCache
from .csr import CSRMatrix
from .pattern import Pattern

__all__ = ["CSRBuffer"]


class CSRBuffer(nn.Module):
    """A sparse matrix held by a module as its buffers (and, if learnable, a parameter).

    ``nn.Module`` knows tensors, not :class:`~learnsolve.CSRMatrix`: a matrix
    kept as a plain attribute is left behind by ``module.to(device)`` and
    ``module.double()`` and missing from ``state_dict()``. Assign a
    ``CSRBuffer`` instead: its index arrays are the buffers ``crow_indices``
    and ``col_indices``, its values the buffer ``values`` (or an
    ``nn.Parameter`` with ``learnable=True``), so the matrix follows the
    module across devices and dtypes (the values convert, the indices stay
    int64) and into its ``state_dict``.

    Calling it (or :attr:`matrix`) gives the CSRMatrix, differentiable in the
    values. Its :class:`~learnsolve.core.pattern.Pattern`, with the caches
    built on it (transpose, product patterns, triangular levels), is made
    once and made again only when the index buffers are replaced (a move) or
    changed in place (``load_state_dict``).

    Parameters
    ----------
    A : CSRMatrix
        The matrix; its arrays are copied (detached).
    learnable : bool, default False
        Make the values an ``nn.Parameter``.

    Examples
    --------
    >>> import torch, learnsolve
    >>> class Smoother(torch.nn.Module):
    ...     def __init__(self, A):
    ...         super().__init__()
    ...         self.A = learnsolve.CSRBuffer(A)
    ...     def forward(self, x):
    ...         return x - 0.5 * (self.A() @ x)
    >>> model = Smoother(learnsolve.eye(3)).double()
    >>> model.A().dtype, sorted(model.state_dict())
    (torch.float64, ['A.col_indices', 'A.crow_indices', 'A.values'])
    >>> model(torch.ones(3, dtype=torch.float64))
    tensor([0.5000, 0.5000, 0.5000], dtype=torch.float64)
    """

    def __init__(self, A: CSRMatrix, *, learnable: bool = False):
        super().__init__()
        if not isinstance(A, CSRMatrix):
            raise TypeError(f"A: expected a CSRMatrix, got {type(A).__name__}")
        learnable = V.check_bool(learnable, "learnable")
        self.register_buffer("crow_indices", A.crow_indices.clone())
        self.register_buffer("col_indices", A.col_indices.clone())
        values = A.values.detach().clone()
        if learnable:
            self.values = nn.Parameter(values)
        else:
            self.register_buffer("values", values)
        self.shape = A.shape
        self._structure = MatrixCache()

    @property
    def matrix(self) -> CSRMatrix:
        """The matrix, differentiable in :attr:`values`."""
        return self.with_values(self.values)

    def forward(self) -> CSRMatrix:
        return self.matrix

    def with_values(self, values: torch.Tensor) -> CSRMatrix:
        """The held pattern with other values (as :meth:`CSRMatrix.with_values`)."""
        return CSRMatrix.from_pattern(self.pattern(), V.check_values(values))

    def pattern(self) -> Pattern:
        """The pattern of the index buffers, rebuilt only when they were replaced or
        changed in place (a load checks them again, as the constructor does)."""
        return self._structure.get((self.crow_indices, self.col_indices), lambda: Pattern.checked(
            self.crow_indices, self.col_indices, self.shape))

    def extra_repr(self) -> str:
        return f"shape={self.shape}, nnz={self.col_indices.shape[0]}"
