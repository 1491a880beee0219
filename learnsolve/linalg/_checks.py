"""Checks of the operands of the solves, and whether a matrix can be SPD (:func:`check_spd`,
which conjugate gradients and the loaders of problems from files use)."""
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


#: Values of A may differ from those of A^T by this many ulps of A's largest entry.
SYMMETRY_ULPS = 100


def check_spd(A, name: str = "A") -> CSRMatrix:
    """Check that ``A`` can be symmetric positive definite, in O(nnz).

    ``A`` must be a square :class:`~learnsolve.CSRMatrix` with a symmetric
    pattern, finite values that are symmetric to rounding (``|a_ij - a_ji|``
    at most 100 ulps of the largest ``|a_ij|``; ``A^T``'s pattern is cached on
    the matrix, so this is one gather) and a positive diagonal. These are
    necessary, not sufficient: an indefinite matrix that passes shows as a
    ``"breakdown"`` of :class:`~learnsolve.solvers.PCG`.

    Returns
    -------
    CSRMatrix
        ``A``.

    Raises
    ------
    TypeError
        ``A`` not a CSRMatrix.
    ValueError
        Not square, pattern not symmetric, values not finite or not symmetric,
        a diagonal entry ``<= 0`` (or missing); the message says which, where.

    Examples
    --------
    >>> import torch, learnsolve
    >>> from learnsolve.solvers import check_spd
    >>> A = learnsolve.CSRMatrix.from_dense(torch.tensor([[2.0, -1.0], [-1.0, 0.0]]))
    >>> check_spd(A)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: A: expected a symmetric ... but the diagonal entry at row 1 is 0 (<= 0)
    """
    A = check_square(A, name)
    expected = f"{name}: expected a symmetric positive definite matrix, but"
    original, A = A, A.detach()
    At = A.T
    if not (torch.equal(At.crow_indices, A.crow_indices) and
            torch.equal(At.col_indices, A.col_indices)):
        n = A.shape[0]
        keys = A.row_indices() * n + A.col_indices
        keys_t = At.row_indices() * n + At.col_indices    # (i, j) of A^T: a_ji is stored
        found = torch.searchsorted(keys, keys_t).clamp_max(max(A.nnz - 1, 0))
        missing = int(torch.nonzero(keys[found] != keys_t)[0]) if A.nnz else 0
        i, j = int(At.row_indices()[missing]), int(At.col_indices[missing])
        raise ValueError(f"{expected} its pattern is not symmetric: entry ({j}, {i}) is stored "
                         f"and ({i}, {j}) is not")
    values = A.values
    if A.nnz:
        finite = torch.isfinite(values)
        if not bool(finite.all()):
            p = int(torch.nonzero(~finite)[0])
            raise ValueError(f"{expected} its values are not finite: {float(values[p])} at "
                             f"({int(A.row_indices()[p])}, {int(A.col_indices[p])})")
        asymmetry = (values - At.values).abs()
        worst, p = asymmetry.max(0)
        tolerance = SYMMETRY_ULPS * torch.finfo(values.dtype).eps * float(values.abs().max())
        if float(worst) > tolerance:
            p = int(p)
            raise ValueError(f"{expected} its values are not symmetric: the largest asymmetry "
                             f"|a_ij - a_ji| is {float(worst):.3e} at (i, j) = "
                             f"({int(A.row_indices()[p])}, {int(A.col_indices[p])}), more than "
                             f"rounding ({tolerance:.1e})")
    diagonal = A.diagonal()
    bad = torch.nonzero(diagonal <= 0)
    if bad.numel():
        i = int(bad[0, 0])
        raise ValueError(f"{expected} the diagonal entry at row {i} is {float(diagonal[i]):g} "
                         f"(<= 0)")
    return original
