"""Factored preconditioners ``M = L L^T``: a learned lower factor (paper section 4.3)
and the incomplete Cholesky factorisation IC(0), a fixed baseline."""
from __future__ import annotations

import torch
from torch import nn

from ..core import construct
from ..core._ops import ops
from ..core.csr import CSRMatrix
from ..core.pattern import Pattern
from ..linalg._checks import check_rhs, check_square
from ..linalg.triangular import spsolve_triangular
from .base import Apply, MatrixCache, Preconditioner, matrix_of
from .cg import check_spd

__all__ = ["LowerFactor", "IncompleteCholesky"]


def check_operator_matrix(module: nn.Module, A, shape: tuple[int, int], like: torch.Tensor
                          ) -> CSRMatrix:
    """Check the matrix ``A`` a preconditioner of ``shape``, whose tensors lie on
    ``like``'s device, is set up for."""
    A = check_square(A)
    if A.shape != shape:
        raise ValueError(f"A: expected shape {shape} (the shape of the {type(module).__name__}), "
                         f"got {A.shape}")
    if A.device != like.device:
        raise ValueError(f"A: expected a matrix on {like.device} (the device of the "
                         f"{type(module).__name__}; move it with .to()), got {A.device}")
    return A


def diagonal_positions(A: CSRMatrix, name: str) -> torch.Tensor:
    """The position of each row's stored diagonal entry; ValueError naming the
    first row that stores none."""
    n = A.shape[0]
    row = A.row_indices()
    on_diagonal = torch.nonzero(A.col_indices == row).flatten()
    position = torch.full((n,), -1, dtype=torch.long, device=A.device)
    position[row[on_diagonal]] = on_diagonal
    missing = torch.nonzero(position < 0)
    if missing.numel():
        raise ValueError(f"{name}: expected a stored diagonal entry in every row, row "
                         f"{int(missing[0, 0])} has none")
    return position


def check_init_values(init: torch.Tensor, nnz: int, like: torch.Tensor, what: str
                      ) -> torch.Tensor:
    """Initial values given as a tensor: 1-D float of length ``nnz``, copied onto
    ``like``'s device."""
    if init.dtype not in (torch.float32, torch.float64) or init.dim() != 1 or \
            init.shape[0] != nnz:
        raise ValueError(f"init: expected a 1-D float tensor of {nnz} values (one per stored "
                         f"entry of {what}), got {init.dtype} {tuple(init.shape)}")
    return init.detach().clone().to(like.device)


class SparseParameter(Preconditioner):
    """A preconditioner whose matrix has a fixed pattern and learned values.

    The pattern is kept as two buffers (``crow_indices``, ``col_indices``: they
    follow the module across devices and into its ``state_dict``), the values
    as one ``nn.Parameter``. The :class:`~learnsolve.core.pattern.Pattern`
    built on the buffers, with its caches (transpose, product patterns), is
    made once, and again only when the buffers are replaced (a move to another
    device) or changed in place (``load_state_dict``).
    """

    def __init__(self, pattern: CSRMatrix, values: torch.Tensor):
        super().__init__()
        self.register_buffer("crow_indices", pattern.crow_indices.clone())
        self.register_buffer("col_indices", pattern.col_indices.clone())
        self.shape = pattern.shape
        self.values = nn.Parameter(values)
        self._pattern = MatrixCache()

    def sparse(self, values: torch.Tensor | None = None) -> CSRMatrix:
        """The matrix with the learned values (or ``values``), differentiable."""
        pattern = self._pattern.get(
            (self.crow_indices, self.col_indices),
            lambda: Pattern(self.crow_indices, self.col_indices, self.shape))
        return CSRMatrix._from_pattern(pattern, self.values if values is None else values)

    def sparse_for(self, A) -> CSRMatrix:
        """The matrix in ``A``'s dtype, after checking ``A``'s shape and device."""
        A = check_operator_matrix(self, A, self.shape, self.values)
        return self.sparse(self.values.to(A.dtype))

    def extra_repr(self) -> str:
        return f"shape={self.shape}, nnz={self.col_indices.shape[0]}"


class LowerFactor(SparseParameter):
    """``M = L L^T`` with ``L`` lower triangular on a given pattern, learned.

    The paper's learned PCG preconditioner (section 4.3, eq. 41): the values
    of ``L`` are one ``nn.Parameter``; :meth:`setup` returns ``r -> L (L^T r)``,
    two sparse products, differentiable in the values of ``L`` and in ``r``.
    ``M`` is symmetric positive definite whenever no diagonal entry of ``L``
    is zero (``L`` is then nonsingular), so PCG can use it; nothing keeps a
    diagonal entry from crossing zero during training, but a preconditioner
    near singular preconditions badly, so the optimisation avoids it.

    Parameters
    ----------
    pattern : CSRMatrix or Problem
        Square; its lower triangle, diagonal included, is the pattern of
        ``L``. Every row must store its diagonal entry.
    init : {"jacobi", "identity"} or Tensor
        ``"jacobi"``: ``L = D^{-1/2}`` from the diagonal of ``pattern``'s
        values (which must be positive), so that ``M`` starts as Jacobi's
        ``D^{-1}``; ``"identity"``: ``L = I``; a tensor: the values of ``L``
        (``nnz`` of the lower triangle, in its storage order).

    Attributes
    ----------
    values : nn.Parameter
        The stored values of ``L`` (dtype and device of ``pattern``).

    Raises
    ------
    ValueError
        A non-square pattern, a row without a stored diagonal entry (the
        message names the first), a non-positive diagonal with
        ``init="jacobi"``, an unknown ``init``.

    Examples
    --------
    >>> import torch
    >>> from learnsolve.problems import poisson_1d
    >>> from learnsolve.solvers.factor import LowerFactor
    >>> A = poisson_1d(4, dtype=torch.float64).A
    >>> M = LowerFactor.banded(A, 1)        # a lower bidiagonal L: tridiagonal M
    >>> M.values.shape
    torch.Size([7])
    >>> M.setup(A)(torch.ones(4, dtype=torch.float64)).detach()  # Jacobi at first: D^{-1} r
    tensor([0.5000, 0.5000, 0.5000, 0.5000], dtype=torch.float64)
    >>> M.matrix().nnz
    10
    """

    def __init__(self, pattern, *, init: str | torch.Tensor = "jacobi"):
        A = check_square(matrix_of(pattern), "pattern")
        lower = A.tril()
        diagonal = diagonal_positions(lower, "pattern")
        values = A.values.detach()
        if isinstance(init, torch.Tensor):
            initial = check_init_values(init, lower.nnz, values, "the lower triangle of pattern")
        elif init == "jacobi":
            d = lower.values.detach()[diagonal]
            bad = torch.nonzero(~(d > 0))
            if bad.numel():
                i = int(bad[0, 0])
                raise ValueError(f"init='jacobi': expected a positive diagonal in pattern's "
                                 f"values (L_ii = 1/sqrt(a_ii)), got a_ii = {float(d[i]):g} "
                                 f"in row {i}")
            initial = values.new_zeros(lower.nnz).index_put((diagonal,), d.rsqrt())
        elif init == "identity":
            initial = values.new_zeros(lower.nnz).index_fill(0, diagonal, 1.0)
        else:
            raise ValueError(f"init: expected 'jacobi', 'identity' or a tensor of values, got "
                             f"{init!r}")
        super().__init__(lower, initial)

    @classmethod
    def banded(cls, A, bandwidth: int = 1, *, init: str | torch.Tensor = "jacobi"
               ) -> "LowerFactor":
        """``L`` with the diagonal and the first ``bandwidth`` sub-diagonals.

        A true banded lower triangle of an ``n x n`` matrix, whatever the
        pattern of ``A``: ``A`` (a CSRMatrix or a Problem) gives ``n``, the
        dtype, the device and, for ``init="jacobi"``, its diagonal.
        ``bandwidth=1`` is the paper's lower bidiagonal ``L`` (tridiagonal
        ``M``).
        """
        A = check_square(matrix_of(A))
        if isinstance(bandwidth, bool) or not isinstance(bandwidth, int) or bandwidth < 0:
            raise ValueError(f"bandwidth: expected an integer >= 0, got {bandwidth!r}")
        n = A.shape[0]
        d = A.diagonal().detach()
        diagonals = [d] + [d.new_zeros(n - k) for k in range(1, min(bandwidth, n - 1) + 1)]
        offsets = [-k for k in range(len(diagonals))]
        return cls(construct.diags(diagonals, offsets, shape=(n, n)), init=init)

    def factor(self) -> CSRMatrix:
        """``L``, a CSRMatrix whose values are the parameter (differentiable)."""
        return self.sparse()

    def matrix(self) -> CSRMatrix:
        """``M = L L^T`` as a CSRMatrix (a sparse product, differentiable)."""
        L = self.sparse()
        return L @ L.T

    def setup(self, A: CSRMatrix) -> Apply:
        """``r -> L (L^T r)`` for ``r`` of shape ``(n,)`` or ``(n, k)`` in ``A``'s
        dtype; differentiable in the values of ``L`` and in ``r``."""
        L = self.sparse_for(A)
        Lt = L.T
        return lambda r: L @ (Lt @ r)


class IncompleteCholesky(Preconditioner):
    """IC(0): ``M = (L L^T)^{-1}`` with ``L`` the incomplete Cholesky factor of
    ``A`` on the pattern of its lower triangle (zero fill). A fixed baseline.

    ``L_ik = (a_ik - sum_{j<k} L_ij L_kj) / L_kk`` for the stored ``k < i`` and
    ``L_ii = sqrt(a_ii - sum_{j<i} L_ij^2)``: the exact Cholesky factor
    wherever the factorisation makes no fill (a tridiagonal matrix), an
    approximation otherwise. It exists for M-matrices and diagonally dominant
    SPD matrices, and may break down (a non-positive pivot) for other SPD
    matrices.

    Where things happen: the factorisation always runs on the CPU (the native
    op ``learnsolve::ic0``, sequential, float64 accumulation), once per matrix
    (it is cached, and redone when the pattern, the values tensor or its
    contents change); ``L`` is then moved to ``A``'s device, where the two
    triangular solves of each application run.

    Notes
    -----
    ``L`` is detached: no gradient reaches ``A``'s values through ``M``.
    Gradients reach ``r``: ``M`` is linear and symmetric, so the backward of
    ``z = M r`` is ``dr = M dz``, the same two solves (learnsolve's triangular
    solves differentiate themselves).

    SPD is checked as far as it is cheap (:func:`~learnsolve.solvers.cg.check_spd`:
    a symmetric pattern and values, a positive diagonal); the rest shows as a
    breakdown.

    Examples
    --------
    >>> import torch
    >>> from learnsolve.problems import poisson_1d
    >>> from learnsolve.solvers.factor import IncompleteCholesky
    >>> A = poisson_1d(4, dtype=torch.float64).A
    >>> apply = IncompleteCholesky().setup(A)   # tridiagonal: IC(0) is exact
    >>> A @ apply(torch.ones(4, dtype=torch.float64))
    tensor([1.0000, 1.0000, 1.0000, 1.0000], dtype=torch.float64)
    """

    def __init__(self):
        super().__init__()
        self._factor = MatrixCache()

    def factor(self, A: CSRMatrix) -> CSRMatrix:
        """``L`` for ``A`` on ``A``'s device (cached per matrix, detached).

        Raises
        ------
        ValueError
            ``A`` not symmetric or with a non-positive diagonal entry
            (:func:`~learnsolve.solvers.cg.check_spd`).
        torch.linalg.LinAlgError
            A breakdown: ``"IC(0) broke down at row i: ..."``.
        """
        A = check_square(A)
        return self._factor.get((A._pattern, A.values), lambda: self._compute(A))

    @staticmethod
    def _compute(A: CSRMatrix) -> CSRMatrix:
        check_spd(A)
        lower = A.tril()
        with torch.inference_mode(False):  # L must be usable by a later backward
            values = ops.ic0(lower.crow_indices.cpu(), lower.col_indices.cpu(),
                             lower.values.detach().cpu()).to(A.device)
        return CSRMatrix._from_pattern(lower._pattern, values)

    def setup(self, A: CSRMatrix) -> Apply:
        """``r -> L^{-T} (L^{-1} r)`` for ``r`` of shape ``(n,)`` or ``(n, k)``."""
        L = self.factor(A)

        def apply(r: torch.Tensor) -> torch.Tensor:
            check_rhs(L, r, "r")
            y = spsolve_triangular(L, r, lower=True)
            return spsolve_triangular(L, y, lower=True, transpose=True)
        return apply
