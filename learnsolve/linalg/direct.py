"""Sparse direct solves: SuperLU factorisations, reused by the backward pass."""
from __future__ import annotations

import numpy as np
import scipy.sparse
import scipy.sparse.linalg
import torch

from ..core._ops import ops
from ..core.csr import CSRMatrix
from ._checks import check_rhs, check_square
from .triangular import spsolve_triangular

__all__ = ["SparseLU", "splu", "spsolve"]


class SparseLU:
    """An LU factorisation of a square sparse matrix, solved differentiably.

    Create it with :func:`splu`. The factorisation is SuperLU's (through
    scipy: a fill-reducing column ordering and partial pivoting), computed
    once from the values the matrix has when it is factored. Each
    :meth:`solve` is differentiable in the matrix's values and in the
    right-hand side; its backward pass solves the transposed system with the
    same factors and never factors again.

    Where things happen: the factorisation always on the CPU. For a matrix
    on the CPU the solves are SuperLU's; for a matrix on another device, the
    factors ``L`` and ``U`` are moved to that device once and the solves are
    learnsolve's triangular solves there, so that right-hand sides never
    leave the device.

    Attributes
    ----------
    matrix : CSRMatrix
        The factored matrix; gradients of the solves flow into its values.
    shape : tuple of int
    fill_nnz : int
        Stored entries of the factors ``L`` and ``U`` together.

    Notes
    -----
    The CSR arrays of ``A`` are, read as CSC, those of ``A^T``: SuperLU
    factors ``A^T = P_r^T L U P_c^T`` with no conversion, and ``A x = b`` is
    solved as the transposed system of that factorisation (as scipy's
    ``spsolve`` does for CSR input).

    For ``x = A^{-1} b`` with incoming gradient ``v``: ``w = A^{-T} v`` (one
    transposed solve with the same factors), ``db = w`` and
    ``dA = -(w x^T) ⊙ mask(A)``, a sampled product on the pattern of ``A``.
    With ``trans=True`` (``x = A^{-T} b``): ``w = A^{-1} v``, ``db = w``,
    ``dA = -(x w^T) ⊙ mask(A)``. The backward is built from differentiable
    operations, so second derivatives work too.
    """

    def __init__(self, A: CSRMatrix, *, permc_spec: str = "COLAMD"):
        check_square(A)
        values = A.values.detach()
        if not bool(torch.isfinite(values).all()):
            raise ValueError("A: expected finite values, got NaN or infinity")
        self.matrix = A
        n = A.shape[0]
        crow = A.crow_indices.cpu().to(torch.int32).numpy()
        col = A.pattern.kernel_col().cpu().numpy()
        transposed = scipy.sparse.csc_array((values.cpu().numpy(), col, crow), shape=(n, n))
        try:
            self._lu = scipy.sparse.linalg.splu(transposed, permc_spec=permc_spec)
        except RuntimeError as error:
            raise torch.linalg.LinAlgError(
                f"splu: A is singular, it has no LU factorisation (SuperLU: {error})") from None
        self._factors = None

    @property
    def shape(self) -> tuple[int, int]:
        return self.matrix.shape

    @property
    def fill_nnz(self) -> int:
        return int(self._lu.L.nnz + self._lu.U.nnz)

    def solve(self, b: torch.Tensor, trans: bool = False) -> torch.Tensor:
        """Solve ``A x = b``, or ``A^T x = b`` with ``trans=True``.

        Parameters
        ----------
        b : torch.Tensor
            Shape ``(n,)`` or ``(n, k)``, dtype and device of the matrix.
        trans : bool
            Solve with the transpose.

        Returns
        -------
        torch.Tensor
            ``x``, shaped like ``b``.

        Examples
        --------
        >>> import torch, learnsolve
        >>> from learnsolve.linalg import splu
        >>> A = learnsolve.CSRMatrix.from_dense(torch.tensor([[0.0, 2.0], [1.0, 1.0]]))
        >>> lu = splu(A)
        >>> lu.solve(torch.tensor([2.0, 3.0]))
        tensor([2., 1.])
        >>> lu.solve(torch.tensor([1.0, 3.0]), trans=True)
        tensor([1., 1.])
        """
        check_rhs(self.matrix, b)
        return _FactorSolve.apply(self.matrix.values, b, self, bool(trans))

    def _solve_now(self, b: torch.Tensor, trans: bool) -> torch.Tensor:
        """The solve itself, not differentiable."""
        if b.device.type != "cpu":
            x = self._solve_with_factors(b, trans)
            finite = bool(torch.isfinite(x).all())
        else:
            # SuperLU factored A^T: A x = b is its transposed solve.
            array = self._lu.solve(b.detach().numpy(), trans="N" if trans else "T")
            finite = bool(np.isfinite(array).all())
            x = torch.from_numpy(np.ascontiguousarray(array))
        if not finite:
            raise torch.linalg.LinAlgError(
                "splu: the solution is not finite: A is numerically singular")
        return x

    def _factor_matrices(self, device: torch.device):
        """``(L, U, perm_r, perm_c)`` on ``device``, made once per device."""
        if self._factors is None or self._factors[0].device != device:
            dtype = self.matrix.dtype
            L = CSRMatrix.from_scipy(self._lu.L, dtype=dtype, device=device)
            U = CSRMatrix.from_scipy(self._lu.U, dtype=dtype, device=device)
            perm_r = torch.from_numpy(self._lu.perm_r.astype(np.int64)).to(device)
            perm_c = torch.from_numpy(self._lu.perm_c.astype(np.int64)).to(device)
            self._factors = (L, U, perm_r, perm_c)
        return self._factors

    def _solve_with_factors(self, b: torch.Tensor, trans: bool) -> torch.Tensor:
        """The solve by learnsolve's triangular solves on b's device.

        With ``F = A^T = P_r^T L U P_c^T`` (``(P_r y)[perm_r] = y`` and
        ``(P_c z) = z[perm_c]``):
        ``A x = b``:   ``c[perm_c] = b``, ``U^T L^T z = c``, ``x = z[perm_r]``;
        ``A^T x = b``: ``d[perm_r] = b``, ``L U z = d``,     ``x = z[perm_c]``.
        """
        L, U, perm_r, perm_c = self._factor_matrices(b.device)
        b = b.detach()
        if trans:
            d = torch.empty_like(b)
            d[perm_r] = b
            y = spsolve_triangular(L, d, lower=True, unit_diagonal=True)
            return spsolve_triangular(U, y, lower=False)[perm_c]
        c = torch.empty_like(b)
        c[perm_c] = b
        y = spsolve_triangular(U, c, lower=False, transpose=True)
        return spsolve_triangular(L, y, lower=True, unit_diagonal=True, transpose=True)[perm_r]


class _FactorSolve(torch.autograd.Function):
    """x = A^{-1} b (or A^{-T} b) with a factorisation made beforehand."""

    @staticmethod
    def forward(ctx, values, b, lu: SparseLU, trans: bool):
        x = lu._solve_now(b, trans).to(b.device)
        ctx.lu, ctx.trans = lu, trans
        ctx.save_for_backward(values, x)
        return x

    @staticmethod
    def backward(ctx, grad):
        values, x = ctx.saved_tensors
        lu, trans = ctx.lu, ctx.trans
        w = _FactorSolve.apply(values, grad.contiguous(), lu, not trans)
        grad_values = None
        if ctx.needs_input_grad[0]:
            # -(w x^T) ⊙ mask(A), or -(x w^T): the sign on the shorter vector.
            rows, cols = (x, -w) if trans else (-w, x)
            pattern = lu.matrix.pattern
            grad_values = ops.sampled_matmul(pattern.crow, pattern.kernel_col(), rows, cols)
        return grad_values, w, None, None


def splu(A: CSRMatrix, *, permc_spec: str = "COLAMD") -> SparseLU:
    """Factor a square sparse matrix once, to solve with it many times.

    Parameters
    ----------
    A : CSRMatrix
        Square, nonsingular, finite values.
    permc_spec : str
        SuperLU's fill-reducing column ordering: ``"COLAMD"`` (default),
        ``"MMD_AT_PLUS_A"``, ``"MMD_ATA"`` or ``"NATURAL"``.

    Returns
    -------
    SparseLU
        Its :meth:`SparseLU.solve` is differentiable in ``A.values`` and the
        right-hand side; the backward reuses the factors.

    Raises
    ------
    torch.linalg.LinAlgError
        If ``A`` is singular (exactly, or structurally: an empty row or column).

    Examples
    --------
    >>> import torch, learnsolve
    >>> from learnsolve.linalg import splu
    >>> A = learnsolve.diags([-1.0, 2.0, -1.0], [-1, 0, 1], shape=(4, 4), dtype=torch.float64)
    >>> values = A.values.clone().requires_grad_()
    >>> lu = splu(A.with_values(values))
    >>> x = lu.solve(torch.ones(4, dtype=torch.float64))
    >>> x
    tensor([2., 3., 3., 2.], dtype=torch.float64, grad_fn=<_FactorSolveBackward>)
    >>> x.sum().backward()          # reuses the factors: no second factorisation
    >>> values.grad.shape           # one number per stored entry of A
    torch.Size([10])
    """
    return SparseLU(A, permc_spec=permc_spec)


def spsolve(A: CSRMatrix, b: torch.Tensor, *, permc_spec: str = "COLAMD") -> torch.Tensor:
    """Solve ``A x = b`` for square nonsingular sparse ``A``; differentiable.

    The same as ``splu(A).solve(b)``: to solve with one matrix several times,
    keep the factorisation of :func:`splu` instead.

    Parameters
    ----------
    A : CSRMatrix
        Square, nonsingular.
    b : torch.Tensor
        Shape ``(n,)`` or ``(n, k)``, the dtype and device of ``A``.

    Returns
    -------
    torch.Tensor
        ``x``, shaped like ``b``.

    Notes
    -----
    Gradients: ``db = A^{-T} v`` and ``dA = -(A^{-T} v) x^T ⊙ mask(A)`` for an
    incoming gradient ``v``, with the forward's factors (see :class:`SparseLU`).

    Examples
    --------
    >>> import torch, learnsolve
    >>> from learnsolve.linalg import spsolve
    >>> A = learnsolve.CSRMatrix.from_dense(torch.tensor([[4.0, 1.0], [2.0, 3.0]]))
    >>> spsolve(A, torch.tensor([5.0, 5.0]))
    tensor([1., 1.])
    """
    return SparseLU(A, permc_spec=permc_spec).solve(b)
