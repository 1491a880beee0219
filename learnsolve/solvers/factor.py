"""The paper's learned ``M = L L^T`` (section 4.3): a lower factor scaled by ``A``'s
diagonal, an approximate inverse applied by products; and what learned sparse
values share (:class:`SparseParameter`). The factorisations applied by triangular
solves (IC(k), ILU(k), the learned :class:`~learnsolve.solvers.IncompleteFactor`)
are in :mod:`learnsolve.solvers.incomplete`."""
from __future__ import annotations

import torch
from torch import nn

from ..core import construct
from ..core.csr import CSRMatrix
from ..core.pattern import Pattern
from ..linalg._checks import check_square
from .base import MatrixCache, Preconditioner, PreconditionerOperator, matrix_of

__all__ = ["LowerFactor", "SparseParameter"]


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
    """The position of each row's stored diagonal entry (cached on the pattern:
    :meth:`~learnsolve.core.pattern.Pattern.diagonal_positions`); ValueError naming
    the first row that stores none."""
    position = A.pattern.diagonal_positions()
    if not A.pattern.stores_diagonal():
        missing = torch.nonzero(position < 0)
        raise ValueError(f"{name}: expected a stored diagonal entry in every row, row "
                         f"{int(missing[0, 0])} has none")
    return position


def scaling_diagonal(A: CSRMatrix, module: nn.Module, *, positive: bool) -> torch.Tensor:
    """``diag(A)``, the scale a learned preconditioner's values are relative to
    (differentiable): ValueError naming the first row whose entry is zero or
    missing, or with ``positive`` not positive."""
    d = A.diagonal()
    bad = torch.nonzero(~(d.detach() > 0) if positive else d.detach() == 0)
    if bad.numel():
        i = int(bad[0, 0])
        raise ValueError(f"A: expected a {'positive' if positive else 'nonzero'} diagonal (the "
                         f"{type(module).__name__} is scaled by it), got a_ii = "
                         f"{float(d[i]):g} in row {i}")
    return d


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
        self._structure = MatrixCache()

    def sparse(self, values: torch.Tensor | None = None) -> CSRMatrix:
        """The matrix with the learned values (or ``values``), differentiable."""
        pattern = self._structure.get(
            (self.crow_indices, self.col_indices),
            lambda: Pattern.checked(self.crow_indices, self.col_indices, self.shape))
        return CSRMatrix.from_pattern(pattern, self.values if values is None else values)

    def _diagonal(self) -> torch.Tensor:
        """The positions of the diagonal entries among the values (cached on the pattern)."""
        M = self.sparse()
        return diagonal_positions(M, "pattern")

    def check_matrix(self, A) -> CSRMatrix:
        """``A`` after checking its shape and device against the module's."""
        return check_operator_matrix(self, A, self.shape, self.values)

    def extra_repr(self) -> str:
        return f"shape={self.shape}, nnz={self.col_indices.shape[0]}"


class LowerFactor(SparseParameter):
    """``M = L L^T`` with ``L = D^{-1/2} L~``: ``L~`` lower triangular on a given
    pattern, learned, and ``D = diag(A)`` of the matrix ``M`` is set up for.

    The paper's learned PCG preconditioner (section 4.3, eq. 41), made
    independent of the scale of ``A``: ``L~`` is the factor for the
    Jacobi-scaled matrix ``D^{-1/2} A D^{-1/2}`` (unit diagonal), and

        M = D^{-1/2} L~ L~^T D^{-1/2},        D = diag(A).

    :meth:`setup` returns ``r -> L (L^T r)``, two sparse products,
    differentiable in the parameter, in ``r`` and in ``A``'s diagonal.

    ``M`` is an approximate inverse (``M ≈ A^{-1}``, applied by products, no
    solves) on the pattern of ``tril(A)``: ``L`` approximates a factor of
    ``A^{-1}``, not of ``A``. It cannot represent IC(0), whose preconditioner
    ``(L_0 L_0^T)^{-1}`` has the factor ``L_0^{-T}``, dense in general;
    started from IC(0)'s values it gives ``M ≈ A`` instead.

    Parameters
    ----------
    pattern : CSRMatrix or Problem
        Square; its lower triangle, diagonal included, is the pattern of
        ``L~`` (only the pattern is read, not the values). Every row must
        store its diagonal entry.
    init : "jacobi" or Tensor
        ``"jacobi"``: ``L~ = I``, so that ``M`` starts as Jacobi's ``D^{-1}``
        for every ``A``; a tensor: the values of ``L~`` (``nnz`` of the lower
        triangle, in its storage order), whose diagonal entries must be
        positive.

    Attributes
    ----------
    values : nn.Parameter
        ``L~`` as stored: its entries below the diagonal, and the logarithm
        of its diagonal entries (in the storage order of its pattern; dtype
        and device of ``pattern``). The diagonal of ``L~`` is the exponential
        of what is stored, positive whatever training does: ``L`` is
        nonsingular and ``M`` symmetric positive definite, so PCG can use it.

    Raises
    ------
    ValueError
        A non-square pattern, a row without a stored diagonal entry (the
        message names the first), an ``init`` tensor of the wrong length or
        with a diagonal entry ``<= 0``, an unknown ``init``; in
        :meth:`setup`, an ``A`` with a diagonal entry ``<= 0``.

    Notes
    -----
    The same ``L~`` serves ``c A`` for every ``c > 0``: ``D`` becomes
    ``c D``, so ``M(c A) = M(A) / c`` and ``M(c A) (c A) = M(A) A``. PCG's
    iterates on ``c A x = b`` are those on ``A x = b`` divided by ``c``, with
    the same residuals; :func:`~learnsolve.solvers.cg.pcg_loss` (relative
    residuals) and its gradient in the parameter are the same, and so is a
    whole training. (Learned directly, the values of ``L`` would scale as
    ``c^{-1/2}`` while the optimiser's steps do not.)

    Examples
    --------
    >>> import torch
    >>> from learnsolve.problems import poisson_1d
    >>> from learnsolve.solvers.factor import LowerFactor
    >>> A = poisson_1d(4, dtype=torch.float64).A
    >>> M = LowerFactor.banded(A, 1)        # a lower bidiagonal L: tridiagonal M
    >>> M.values.shape
    torch.Size([7])
    >>> r = torch.ones(4, dtype=torch.float64)
    >>> M.setup(A)(r).detach()              # Jacobi at first: D^{-1} r
    tensor([0.5000, 0.5000, 0.5000, 0.5000], dtype=torch.float64)
    >>> M.setup(10 * A)(r).detach()         # M(c A) = M(A) / c
    tensor([0.0500, 0.0500, 0.0500, 0.0500], dtype=torch.float64)
    >>> M.matrix(A).nnz
    10
    """

    def __init__(self, pattern, *, init: str | torch.Tensor = "jacobi"):
        A = check_square(matrix_of(pattern), "pattern")
        lower = A.tril()
        diagonal = diagonal_positions(lower, "pattern")
        values = A.values.detach()
        if isinstance(init, torch.Tensor):
            initial = check_init_values(init, lower.nnz, values, "the lower triangle of pattern")
            d = initial[diagonal]
            bad = torch.nonzero(~(d > 0))
            if bad.numel():
                i = int(bad[0, 0])
                raise ValueError(f"init: expected a positive diagonal in the values of L~ (it "
                                 f"is stored as its logarithm), got {float(d[i]):g} in row {i}")
            initial = initial.index_copy(0, diagonal, d.log())
        elif init == "jacobi":
            initial = values.new_zeros(lower.nnz)
        else:
            raise ValueError(f"init: expected 'jacobi' or a tensor of values, got {init!r}")
        super().__init__(lower, initial)

    @classmethod
    def banded(cls, A, bandwidth: int = 1, *, init: str | torch.Tensor = "jacobi"
               ) -> "LowerFactor":
        """``L~`` with the diagonal and the first ``bandwidth`` sub-diagonals.

        A true banded lower triangle of an ``n x n`` matrix, whatever the
        pattern of ``A``: ``A`` (a CSRMatrix or a Problem) gives ``n``, the
        dtype and the device. ``bandwidth=1`` is the paper's lower bidiagonal
        ``L`` (tridiagonal ``M``).
        """
        A = check_square(matrix_of(A))
        if isinstance(bandwidth, bool) or not isinstance(bandwidth, int) or bandwidth < 0:
            raise ValueError(f"bandwidth: expected an integer >= 0, got {bandwidth!r}")
        n = A.shape[0]
        ones = A.values.detach().new_ones(n)
        diagonals = [ones[k:] for k in range(min(bandwidth, n - 1) + 1)]
        offsets = [-k for k in range(len(diagonals))]
        return cls(construct.diags(diagonals, offsets, shape=(n, n)), init=init)

    def factor(self, A: CSRMatrix | None = None) -> CSRMatrix:
        """``L = D^{-1/2} L~`` for ``A`` (in ``A``'s dtype), or ``L~`` itself
        without ``A`` (the factor for a matrix of unit diagonal); a CSRMatrix
        on the pattern, differentiable."""
        if A is None:
            values = self.values
        else:
            A = self.check_matrix(A)
            values = self.values.to(A.dtype)
        diagonal = self._diagonal()
        L = self.sparse(values.index_copy(0, diagonal, values[diagonal].exp()))
        if A is None:
            return L
        scale = scaling_diagonal(A, self, positive=True).rsqrt()
        return L.with_values(scale[L.row_indices()] * L.values)

    def matrix(self, A: CSRMatrix | None = None) -> CSRMatrix:
        """``M = L L^T`` for ``A``, or ``L~ L~^T`` without ``A`` (see :meth:`factor`);
        a CSRMatrix (a sparse product, differentiable)."""
        L = self.factor(A)
        return L @ L.T

    def setup(self, A: CSRMatrix) -> PreconditionerOperator:
        """``r -> L (L^T r)`` with ``L = D^{-1/2} L~`` for ``A``, for ``r`` of shape
        ``(n,)`` or ``(n, k)`` in ``A``'s dtype; differentiable in the parameter, in
        ``r`` and in ``A``'s diagonal."""
        L = self.factor(A)
        Lt = L.T
        return PreconditionerOperator.like(A, lambda r: L @ (Lt @ r), symmetric=True,
                                           name="LowerFactor")
