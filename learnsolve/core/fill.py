"""The symbolic side of incomplete factorisations: the level-of-fill pattern of ILU(k)
and IC(k), and the reordering of a matrix's unknowns (reverse Cuthill-McKee)."""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch

from .csr import CSRMatrix
from .pattern import ORDERINGS, Pattern

__all__ = ["ORDERINGS", "check_ordering", "fill_pattern", "level_of_fill", "ordering", "permute"]


def level_of_fill(pattern: Pattern, level: int) -> tuple[Pattern, torch.Tensor]:
    """``(fill, positions)``: the ILU(``level``) pattern of a square ``pattern``
    and the position in it of each stored entry (:meth:`Pattern.level_of_fill`,
    which says how it is computed; cached on ``pattern``)."""
    return pattern.level_of_fill(level)


def fill_pattern(A: CSRMatrix, level: int) -> CSRMatrix:
    """``A`` on the pattern of its ILU(``level``) factorisation: ``A``'s values at
    its own entries and explicit zeros at the fill (differentiable in ``A``'s
    values).

    Parameters
    ----------
    A : CSRMatrix
        Square.
    level : int
        The level of fill ``k >= 0`` (see :func:`level_of_fill`); 0 gives
        ``A``'s pattern with every diagonal entry stored.

    Returns
    -------
    CSRMatrix
        The input of a numeric ILU(k) (or, its lower triangle, IC(k)).

    Examples
    --------
    >>> import torch
    >>> from learnsolve.core.fill import fill_pattern
    >>> from learnsolve.problems import poisson_2d
    >>> A = poisson_2d(4, dtype=torch.float64).A
    >>> A.nnz, fill_pattern(A, 1).nnz, fill_pattern(A, 2).nnz
    (64, 82, 94)
    """
    if not isinstance(A, CSRMatrix):
        raise TypeError(f"A: expected a CSRMatrix, got {type(A).__name__}")
    fill, positions = level_of_fill(A.pattern, level)
    values = A.values.new_zeros(fill.nnz).index_put((positions,), A.values)
    return CSRMatrix.from_pattern(fill, values)


def check_ordering(method) -> None:
    """ValueError unless ``method`` is one of :data:`ORDERINGS` (checked where a
    factorisation is configured, before any pattern is at hand)."""
    if method not in ORDERINGS:
        raise ValueError(f"ordering: expected one of {ORDERINGS}, got {method!r}")


def ordering(pattern: Pattern, method: str | None) -> torch.Tensor | None:
    """The permutation ``perm`` (new position -> old index) of a square pattern's
    unknowns by ``method`` (:meth:`Pattern.ordering`, which says what each
    ordering does; cached on ``pattern``); None for ``method=None``."""
    return pattern.ordering(method)


def permute(A: CSRMatrix, perm: torch.Tensor) -> CSRMatrix:
    """``P A P^T``: the entry ``(i, j)`` of the result is ``A[perm[i], perm[j]]``;
    differentiable in ``A``'s values (a gather). The permuted pattern is built by
    scipy on the CPU (once per call: cache the result where it is reused).

    Examples
    --------
    >>> import torch
    >>> from learnsolve import CSRMatrix
    >>> from learnsolve.core.fill import permute
    >>> A = CSRMatrix.from_dense(torch.tensor([[1.0, 2.0], [0.0, 3.0]]))
    >>> permute(A, torch.tensor([1, 0])).to_dense()
    tensor([[3., 0.],
            [2., 1.]])
    """
    n = A.shape[0]
    if A.shape[1] != n:
        raise ValueError(f"A: expected a square matrix, got shape {A.shape}")
    if not isinstance(perm, torch.Tensor) or perm.dtype != torch.long or perm.shape != (n,) or \
            not torch.equal(perm.sort().values.cpu(), torch.arange(n)):
        raise ValueError(f"perm: expected a permutation of 0..{n - 1} (int64, shape ({n},))")
    # Carry each entry's position through scipy's permutation as its value (exact
    # in float64), so the result's values are a gather of A's.
    index = sp.csr_array((np.arange(1, A.nnz + 1, dtype=np.float64), A.col_indices.cpu().numpy(),
                          A.crow_indices.cpu().numpy()), shape=A.shape)
    order = perm.cpu().numpy()
    permuted = sp.csr_array(index[order][:, order])
    permuted.sort_indices()
    device = A.device
    pattern = Pattern(torch.from_numpy(permuted.indptr.astype(np.int64)).to(device),
                      torch.from_numpy(permuted.indices.astype(np.int64)).to(device), A.shape)
    source = torch.from_numpy(permuted.data.astype(np.int64) - 1).to(device)
    return CSRMatrix.from_pattern(pattern, A.values[source])
