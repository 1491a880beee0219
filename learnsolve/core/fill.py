"""The symbolic side of incomplete factorisations: the level-of-fill pattern of ILU(k)
and IC(k), and the reordering of a matrix's unknowns (reverse Cuthill-McKee)."""
from __future__ import annotations

import numbers

import numpy as np
import scipy.sparse as sp
import torch
from scipy.sparse.csgraph import reverse_cuthill_mckee

from ._ops import ops
from .csr import CSRMatrix
from .pattern import Pattern

__all__ = ["ORDERINGS", "check_ordering", "fill_pattern", "level_of_fill", "ordering", "permute"]

#: The orderings :func:`ordering` computes: None keeps the unknowns as they are.
ORDERINGS = (None, "rcm")


def _check_level(level) -> int:
    if isinstance(level, bool) or not isinstance(level, numbers.Integral) or level < 0:
        raise ValueError(f"level: expected an integer >= 0, got {level!r}")
    return int(level)


def level_of_fill(pattern: Pattern, level: int) -> tuple[Pattern, torch.Tensor]:
    """``(fill, positions)``: the pattern of an ILU(``level``) factorisation of a
    square ``pattern`` and the position in it of each stored entry of
    ``pattern``; computed once and cached on ``pattern``.

    The symbolic phase of ILU(k) (Saad, *Iterative Methods for Sparse Linear
    Systems*, 2nd ed., section 10.3.3): an entry of the matrix has level 0,
    eliminating row ``k`` from row ``i`` gives ``(i, j)`` the level
    ``lev(i, k) + lev(k, j) + 1`` (the smallest over the ``k`` that reach
    it), and the entries of level ``<= level`` are kept. ``level=0`` is the
    pattern itself; the diagonal is always included. Computed on the CPU
    (``learnsolve::iluk_symbolic``, row by row) and moved to the pattern's
    device. The lower triangle of the result is the pattern of IC(``level``)
    for a structurally symmetric ``pattern``.
    """
    level = _check_level(level)
    n, m = pattern.shape
    if n != m:
        raise ValueError(f"pattern: expected a square pattern, got shape {pattern.shape}")

    def compute():
        crow, col = ops.iluk_symbolic(pattern.crow.cpu(), pattern.col.cpu(), level)
        crow, col = crow.to(pattern.device), col.to(pattern.device)
        # The fill pattern contains the pattern: their union is the fill pattern,
        # and the merge's map of the first operand gives the positions.
        _, _, positions, _ = ops.csr_merge(pattern.crow, pattern.col, crow, col, False)
        return Pattern(crow, col, pattern.shape), positions
    return pattern.cached(("level_of_fill", level), compute)


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
    fill, positions = level_of_fill(A._pattern, level)
    values = A.values.new_zeros(fill.nnz).index_put((positions,), A.values)
    return CSRMatrix._from_pattern(fill, values)


def check_ordering(method) -> None:
    """ValueError unless ``method`` is one of :data:`ORDERINGS` (checked where a
    factorisation is configured, before any pattern is at hand)."""
    if method not in ORDERINGS:
        raise ValueError(f"ordering: expected one of {ORDERINGS}, got {method!r}")


def ordering(pattern: Pattern, method: str | None) -> torch.Tensor | None:
    """The permutation ``perm`` (new position -> old index) of a square pattern's
    unknowns by ``method``, computed once and cached on the pattern; None for
    ``method=None``.

    ``"rcm"``: reverse Cuthill-McKee (scipy's, on the pattern of ``A + A^T``),
    which gathers the entries near the diagonal. An incomplete factorisation
    depends on the order of the unknowns; that of a mesh generator can scatter
    neighbours far apart (the P1 matrix of an L-shaped mesh of 5,000 nodes
    has a bandwidth of 5,000, 89 after RCM), and IC(0) in such an order is a
    weaker preconditioner.
    """
    check_ordering(method)
    if method is None:
        return None
    n, m = pattern.shape
    if n != m:
        raise ValueError(f"pattern: expected a square pattern, got shape {pattern.shape}")

    def compute():
        graph = sp.csr_matrix((np.ones(pattern.nnz), pattern.col.cpu().numpy(),
                               pattern.crow.cpu().numpy()), shape=pattern.shape)
        perm = reverse_cuthill_mckee(graph, symmetric_mode=False)
        return torch.from_numpy(perm.astype(np.int64)).to(pattern.device)
    return pattern.cached(("ordering", method), compute)


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
    return CSRMatrix._from_pattern(pattern, A.values[source])
