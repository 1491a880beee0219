"""Sparse approximate inverses (paper section 4.6): ``M ≈ A^{-1}`` on a fixed pattern,
learned by gradient descent on ``||I - M A||_F^2`` or computed the classical way."""
from __future__ import annotations

import torch

from ..core.arith import add
from ..core.csr import CSRMatrix
from ..linalg._checks import check_square
from .base import MatrixCache, Preconditioner, PreconditionerOperator, matrix_of
from .factor import SparseParameter, check_init_values, diagonal_positions, scaling_diagonal

__all__ = ["SPAI", "ClassicalSPAI", "spai_loss", "spai_classical"]


class SPAI(SparseParameter):
    """A sparse approximate inverse ``M = W D^{-1}`` (``D = diag(A)``) with a
    fixed pattern and learned values ``W``.

    ``W`` is the sparse approximate inverse of the row-scaled matrix
    ``D^{-1} A`` (unit diagonal), and ``M = W D^{-1}`` the one of ``A``: the
    same residual ``I - M A = I - W (D^{-1} A)``, so the loss
    :func:`spai_loss` is the same for ``M`` and for ``W``, and so is its
    minimiser over the pattern (:func:`spai_classical` is that of ``M``;
    ``W = M D``). ``D`` is the diagonal of the matrix :meth:`setup` is given.

    Parameters
    ----------
    pattern : CSRMatrix or Problem
        Square; the pattern of ``M`` (the paper: ``mask(M) = mask(A)``).
        Only the pattern is read, not the values.
    init : {"ones", "jacobi"} or Tensor
        ``"ones"``: every stored value of ``W`` 1, ``M = mask(A) D^{-1}`` (the
        paper starts from ``M = mask(A)``, which is not scale-free: it is
        this start for a matrix with a unit diagonal); ``"jacobi"``: ``W = I``
        (each row storing its diagonal entry), ``M = D^{-1}``; a tensor: the
        values of ``W``, in the pattern's storage order.
    symmetric : bool
        Apply ``(M + M^T) / 2`` rather than ``M``: a symmetric preconditioner,
        as CG needs (it is positive definite only if training makes it so).

    Attributes
    ----------
    values : nn.Parameter
        The stored values of ``W`` (dtype and device of ``pattern``).

    Raises
    ------
    ValueError
        A non-square pattern, ``init="jacobi"`` on a pattern with a row that
        stores no diagonal entry, an unknown ``init``; in :meth:`setup`, an
        ``A`` with a zero or missing diagonal entry (the message names the row).

    Notes
    -----
    :meth:`setup` applies ``M`` with one sparse product per call, and is
    differentiable in the values, in ``r`` and in ``A``'s diagonal. The
    default training loss, :meth:`loss`, is :func:`spai_loss` (eq. 50).

    The same ``W`` serves ``c A`` for every ``c != 0``: ``M(c A) = M(A) / c``
    and ``M(c A) (c A) = M(A) A``, so the loss, its gradient in ``W`` and a
    whole training are the same. (Learned directly, the values of ``M``
    would scale as ``1 / c`` while the optimiser's steps do not.)

    Examples
    --------
    >>> import torch
    >>> from learnsolve.problems import poisson_2d
    >>> from learnsolve.solvers.spai import SPAI, spai_classical, spai_loss
    >>> problem = poisson_2d(4, dtype=torch.float64)
    >>> model = SPAI(problem)                   # W = mask(A), M = mask(A) D^{-1}
    >>> float(spai_loss(model, problem).detach())
    47.5
    >>> optimiser = torch.optim.Adam(model.parameters(), lr=0.05)
    >>> for _ in range(100):
    ...     optimiser.zero_grad()
    ...     model.loss(problem, None).backward()
    ...     optimiser.step()
    >>> best = float(spai_loss(spai_classical(problem.A), problem))
    >>> float(spai_loss(model, problem).detach()) < 1.05 * best
    True
    >>> model.matrix(problem.A).values.shape      # M for A, the classical SPAI's pattern
    torch.Size([64])
    """

    def __init__(self, pattern, *, init: str | torch.Tensor = "ones", symmetric: bool = False):
        A = check_square(matrix_of(pattern), "pattern")
        values = A.values.detach()
        if isinstance(init, torch.Tensor):
            initial = check_init_values(init, A.nnz, values, "pattern")
        elif init == "ones":
            initial = torch.ones_like(values)
        elif init == "jacobi":
            initial = torch.zeros_like(values).index_fill(0, diagonal_positions(A, "pattern"), 1.0)
        else:
            raise ValueError(f"init: expected 'ones', 'jacobi' or a tensor of values, got "
                             f"{init!r}")
        if not isinstance(symmetric, bool):
            raise TypeError(f"symmetric: expected a bool, got {type(symmetric).__name__}")
        super().__init__(A, initial)
        self.symmetric = symmetric

    def matrix(self, A: CSRMatrix | None = None) -> CSRMatrix:
        """``M = W D^{-1}`` for ``A`` (in ``A``'s dtype), or ``W`` itself without
        ``A`` (``M`` for a matrix of unit diagonal); a CSRMatrix on the pattern,
        differentiable."""
        if A is None:
            return self.sparse()
        A = self.check_matrix(A)
        W = self.sparse(self.values.to(A.dtype))
        return W.with_values(W.values / scaling_diagonal(A, self, positive=False)[W.col_indices])

    def operator(self, A: CSRMatrix) -> CSRMatrix:
        """The matrix :meth:`setup` applies for ``A``: ``M``, or ``(M + M^T) / 2``
        with ``symmetric=True``, in ``A``'s dtype (differentiable)."""
        M = self.matrix(A)
        return add(M, M.T, 0.5, 0.5) if self.symmetric else M

    def setup(self, A: CSRMatrix) -> PreconditionerOperator:
        """``M`` (or ``(M + M^T) / 2``, symmetric) for ``A``: a sparse product with
        ``r`` of shape ``(n,)`` or ``(n, k)``; its transpose by ``M^T``'s."""
        M = self.operator(A)
        transpose = None if self.symmetric else (lambda r: M.T @ r)
        return PreconditionerOperator.like(A, M.__matmul__, symmetric=self.symmetric,
                                           transpose=transpose, name="SPAI")

    def loss(self, problem, X: torch.Tensor | None = None) -> torch.Tensor:
        """The default training loss, :func:`spai_loss` (paper eq. 50)."""
        return spai_loss(self, problem, X)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, symmetric={self.symmetric}"


def spai_loss(model, problem, X: torch.Tensor | None = None) -> torch.Tensor:
    """``||I - M A||_F^2`` (paper eq. 50), computed sparsely.

    Parameters
    ----------
    model : SPAI or CSRMatrix
        The approximate inverse: an :class:`SPAI` (the matrix it applies for
        ``A``, ``M = W D^{-1}``, or ``(M + M^T) / 2`` for a symmetric one) or a
        CSRMatrix ``M``.
    problem : Problem or CSRMatrix
        The square matrix ``A``.
    X : Tensor, optional
        Ignored: the loss needs no test vectors (the Trainer passes them to
        every loss).

    Returns
    -------
    Tensor
        A 0-d tensor, differentiable in the values of ``M`` and of ``A``.

    Notes
    -----
    For an :class:`SPAI` the loss is the same for ``c A`` as for ``A``
    (``c != 0``): ``M A`` does not change. ``C = M A`` is a sparse-sparse
    product (its pattern cached), and
    ``||I - C||_F^2 = sum_p (c_p - [p on the diagonal])^2 + (rows of C that
    store no diagonal entry)``: exact, with no cancellation (unlike
    ``||C||_F^2 - 2 tr C + n``) and nothing dense. The gradient is
    ``dC = 2 (C - I) ⊙ mask(C)``, then ``dM = (dC A^T) ⊙ mask(M)`` and
    ``dA = (M^T dC) ⊙ mask(A)`` (the SpGEMM backward).

    Examples
    --------
    >>> import torch, learnsolve
    >>> A = learnsolve.diags([2.0, 4.0], 0, dtype=torch.float64)
    >>> spai_loss(learnsolve.eye(2, dtype=torch.float64), A)    # (1 - 2)^2 + (1 - 4)^2
    tensor(10., dtype=torch.float64)
    """
    A = check_square(matrix_of(problem), "problem")
    if isinstance(model, SPAI):
        M = model.operator(A)
    elif isinstance(model, CSRMatrix):
        M = model
    else:
        raise TypeError(f"model: expected an SPAI or a CSRMatrix, got {type(model).__name__}")
    if M.shape != A.shape:
        raise ValueError(f"model: expected M of the shape of A {A.shape}, got {M.shape}")
    C = M @ A
    on_diagonal = C.col_indices == C.row_indices()
    residual = C.values - on_diagonal.to(C.dtype)
    return residual.square().sum() + (A.shape[0] - on_diagonal.sum())


def spai_classical(A, pattern=None) -> CSRMatrix:
    """The classical static-pattern SPAI (Grote and Huckle 1997): the minimiser
    of ``||I - M A||_F`` over the ``M`` with a given pattern.

    Parameters
    ----------
    A : CSRMatrix or Problem
        Square and nonsingular.
    pattern : CSRMatrix or Problem, optional
        The pattern of ``M`` (default ``mask(A)``), same shape and device.

    Returns
    -------
    CSRMatrix
        ``M`` on ``pattern``'s pattern, in ``A``'s dtype; computed without
        gradients.

    Notes
    -----
    The loss splits by rows: ``||I - M A||_F^2 = sum_k ||A^T m_k - e_k||^2``
    with ``m_k`` row ``k`` of ``M``. Its unknowns are the columns ``J`` of
    row ``k`` of the pattern, and ``A^T[:, J]`` is nonzero only in the rows
    ``I`` = the columns of the rows ``J`` of ``A``, which are the columns of
    row ``k`` of ``mask(M) mask(A)``: one small least-squares problem
    ``min ||A^T[I, J] m - e_k[I]||`` per row. All of them are gathered into
    one padded batch and solved by one batched ``torch.linalg.lstsq`` (QR).
    Padding rows are zero, which changes nothing; each padding column gets a
    1 in a row of its own, which pins its unknown to 0 and keeps every
    problem of full rank (for nonsingular ``A``).

    Examples
    --------
    >>> import torch, learnsolve
    >>> from learnsolve.solvers.spai import spai_classical
    >>> A = learnsolve.diags([2.0, 4.0], 0, dtype=torch.float64)
    >>> spai_classical(A).values
    tensor([0.5000, 0.2500], dtype=torch.float64)
    """
    A = check_square(matrix_of(A)).detach()
    P = A if pattern is None else matrix_of(pattern).detach()
    if P.shape != A.shape:
        raise ValueError(f"pattern: expected the shape of A {A.shape}, got {P.shape}")
    if P.device != A.device:
        raise ValueError(f"pattern: expected a matrix on {A.device} (the device of A), got "
                         f"{P.device}")
    n = A.shape[0]
    if P.nnz == 0:
        return CSRMatrix.from_pattern(P.pattern, A.values.new_zeros(0))
    with torch.no_grad():
        # Every entry (k, j) of the pattern, expanded over row j of A: (k, j, i, a_ji).
        k_of = P.row_indices()
        j_local = torch.arange(P.nnz, device=A.device) - P.crow_indices[k_of]
        lengths = A.crow_indices.diff()[P.col_indices]
        entry = torch.repeat_interleave(torch.arange(P.nnz, device=A.device), lengths)
        starts = torch.cumsum(lengths, 0) - lengths
        position = (A.crow_indices[P.col_indices][entry] + torch.arange(entry.numel(),
                    device=A.device) - starts[entry])
        k, i = k_of[entry], A.col_indices[position]
        # I_k, the rows of problem k: the columns of row k of mask(M) mask(A).
        rows = P.pattern.product(A.pattern)
        row_keys = rows.row() * n + rows.col
        i_local = torch.searchsorted(row_keys, k * n + i) - rows.crow[k]
        n_rows, n_cols = int(rows.crow.diff().max()), int(P.crow_indices.diff().max())
        batch = A.values.new_zeros(n, n_rows + n_cols, n_cols)
        batch[k, i_local, j_local[entry]] = A.values[position]
        padding = torch.arange(n_cols, device=A.device) >= P.crow_indices.diff()[:, None]
        batch[:, n_rows:, :] = torch.diag_embed(padding.to(A.dtype))
        # e_k restricted to I_k: a 1 where k is among them.
        rhs = A.values.new_zeros(n, n_rows + n_cols)
        on_diagonal = torch.nonzero(rows.col == rows.row()).flatten()
        diagonal_row = rows.col[on_diagonal]
        rhs[diagonal_row, on_diagonal - rows.crow[diagonal_row]] = 1.0
        solution = torch.linalg.lstsq(batch, rhs.unsqueeze(-1)).solution.squeeze(-1)
        values = solution[k_of, j_local]
    return CSRMatrix.from_pattern(P.pattern, values)


class ClassicalSPAI(Preconditioner):
    """The classical static-pattern SPAI of each matrix it is set up for:
    :func:`spai_classical` on ``A``'s own pattern (Grote and Huckle 1997),
    computed once per matrix (cached: redone when its pattern, its values
    tensor or their contents change) and applied as a sparse product, with its
    transpose. A fixed baseline, no parameters.

    Examples
    --------
    >>> import torch
    >>> from learnsolve.problems import poisson_2d
    >>> from learnsolve.solvers import PCG, ClassicalSPAI
    >>> A = poisson_2d(16, dtype=torch.float64).A
    >>> b = torch.ones(256, dtype=torch.float64)
    >>> PCG(rtol=1e-8)(A, b).iterations > PCG(M=ClassicalSPAI(), rtol=1e-8)(A, b).iterations
    True
    """

    def __init__(self):
        super().__init__()
        self._inverse = MatrixCache()

    def matrix(self, A: CSRMatrix) -> CSRMatrix:
        """``M`` for ``A`` (detached; cached per matrix)."""
        A = check_square(A)
        return self._inverse.get((A.pattern, A.values), lambda: spai_classical(A))

    def setup(self, A: CSRMatrix) -> PreconditionerOperator:
        """``M`` for ``A``, a sparse product; not symmetric in general, with its
        transpose (for symmetric use, CG, on a symmetric ``A``: ``M`` is close to
        symmetric, not exactly)."""
        M = self.matrix(A)
        return PreconditionerOperator.like(A, M.__matmul__, transpose=lambda r: M.T @ r,
                                           name="SPAI (classical)")
