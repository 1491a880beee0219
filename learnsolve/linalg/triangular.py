"""Sparse triangular solves, differentiable, with a level analysis cached per pattern."""
from __future__ import annotations

import torch

from ..core._ops import ops
from ..core.csr import CSRMatrix
from ..core.pattern import Pattern
from ..core.validation import check_bool
from ._checks import check_rhs, check_square

__all__ = ["spsolve_triangular", "triangular_levels"]


def triangular_levels(pattern: Pattern, lower: bool):
    """``(level_ptr, level_rows, diag)`` of the lower (upper) triangle of a square
    pattern: :meth:`Pattern.triangular_levels <learnsolve.core.pattern.Pattern.triangular_levels>`
    (computed once, cached on the pattern)."""
    return pattern.triangular_levels(check_bool(lower, "lower"))


def spsolve_triangular(A: CSRMatrix, b: torch.Tensor, lower: bool = True,
                       unit_diagonal: bool = False, *, transpose: bool = False) -> torch.Tensor:
    """Solve ``T x = b`` (or ``T^T x = b``) for ``T`` the lower or upper triangle of ``A``.

    Parameters
    ----------
    A : CSRMatrix
        Square matrix. Only the named triangle is read: entries of the other
        triangle take no part and get a zero gradient.
    b : torch.Tensor
        Right-hand side, shape ``(n,)`` or ``(n, k)`` for ``k`` systems; same
        dtype and device as ``A``.
    lower : bool
        Solve with the lower triangle (default) or the upper one.
    unit_diagonal : bool
        Take the diagonal as ones, without reading it (its gradient is zero).
    transpose : bool
        Solve with ``T^T`` instead, through the cached transpose of the
        pattern and the same level analysis (no copy of the values).

    The three flags are Python or numpy bools; anything else (``"no"``, 0,
    a tensor) is refused.

    Returns
    -------
    torch.Tensor
        ``x``, shaped like ``b``.

    Raises
    ------
    TypeError
        ``A`` not a CSRMatrix, ``b`` not a tensor of ``A``'s dtype, a flag not
        a bool.
    torch.linalg.LinAlgError
        If a diagonal entry is missing or zero (and ``unit_diagonal`` is
        False); the message names the first such row.

    Notes
    -----
    The rows are grouped once per pattern into levels (rows of one level
    depend only on earlier levels, cached on the matrix); a level with many
    rows is solved in parallel, a run of small levels on one thread.

    Differentiable in ``A.values`` and ``b``: with incoming gradient ``v`` and
    ``w = T^{-T} v`` (the transposed solve, same analysis), ``db = w`` and
    ``dT = -(w x^T) ⊙ mask(T)`` (for ``transpose=True``: ``dT = -(x w^T) ⊙
    mask(T)``).

    Examples
    --------
    >>> import torch, learnsolve
    >>> from learnsolve.linalg import spsolve_triangular
    >>> L = learnsolve.CSRMatrix.from_dense(torch.tensor([[2.0, 0.0], [1.0, 4.0]]))
    >>> spsolve_triangular(L, torch.tensor([2.0, 5.0]))
    tensor([1., 1.])
    >>> spsolve_triangular(L, torch.tensor([2.0, 5.0]), lower=False)  # diag(2, 4)
    tensor([1.0000, 1.2500])
    """
    check_square(A)
    check_rhs(A, b)
    lower = check_bool(lower, "lower")
    unit_diagonal = check_bool(unit_diagonal, "unit_diagonal")
    transpose = check_bool(transpose, "transpose")
    pattern = A.pattern
    levels = triangular_levels(pattern, lower)
    needs_transpose = transpose or (torch.is_grad_enabled()
                                    and (A.values.requires_grad or b.requires_grad))
    transposed = pattern.transpose_arrays() if needs_transpose else (None,) * 3
    return ops.sptrsv(pattern.crow, pattern.col, A.values, b, *levels, lower, unit_diagonal,
                      *transposed, transpose)
