"""Incomplete factorisations applied by triangular solves: the classical IC(k) and
ILU(k), fixed baselines that factor each matrix they are set up for, and
:class:`IncompleteFactor`, a factor of one matrix's pattern whose values are
learned, started from the classical ones.

All of them are preconditioners ``M = (L L^T)^{-1}`` (``kind="cholesky"``, SPD,
for PCG) or ``M = (L U)^{-1}`` (``kind="lu"``, ``L`` unit lower, for GMRES),
applied by two sparse triangular solves (level-scheduled, the analysis cached
on the factor's pattern; the same native ops on CPU and CUDA).
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, replace

import torch

from ..core._ops import ops
from ..core.csr import CSRMatrix
from ..core.fill import check_ordering, fill_pattern, ordering as reorder, permute
from ..core.validation import check_count
from ..linalg._checks import check_rhs, check_square
from ..linalg.triangular import spsolve_triangular
from .base import Apply, MatrixCache, Preconditioner, PreconditionerOperator, matrix_of
from .cg import check_spd
from .factor import SparseParameter, check_init_values, diagonal_positions, scaling_diagonal

__all__ = ["KINDS", "Factorization", "IncompleteCholesky", "IncompleteFactor", "IncompleteLU",
           "incomplete_cholesky", "incomplete_lu"]

#: The kinds of factor: ``M = (L L^T)^{-1}`` and ``M = (L U)^{-1}``.
KINDS = ("cholesky", "lu")

#: The first diagonal shift tried after a breakdown (relative to ``a_ii``),
#: doubled until the factorisation goes through or exceeds the last.
FIRST_SHIFT, LAST_SHIFT = 1e-3, 1e3


@dataclass(frozen=True)
class Factorization:
    """A classical incomplete factorisation of one matrix.

    Attributes
    ----------
    matrix : CSRMatrix
        ``kind="cholesky"``: ``L``, on the lower triangle of the level-of-fill
        pattern. ``kind="lu"``: ``L`` (below the diagonal, its unit diagonal
        not stored) and ``U`` (diagonal and above) together on the
        level-of-fill pattern. Detached.
    kind : {"cholesky", "lu"}
    fill : int
        The level of fill ``k``.
    shift : float
        0, or after a breakdown the ``alpha`` for which ``A + alpha diag(A)``
        was factored instead of ``A``.
    permutation : Tensor or None
        With an ordering, ``perm`` (new position -> old index): the factor is
        that of ``P A P^T``, ``(P A P^T)_ij = A[perm[i], perm[j]]``.
    """

    matrix: CSRMatrix
    kind: str
    fill: int
    shift: float
    permutation: torch.Tensor | None = None

    @property
    def name(self) -> str:
        return _name(self.kind, self.fill)

    def apply(self) -> PreconditionerOperator:
        """``M``, two triangular solves (between the permutations)."""
        return solves(self.matrix, self.kind, permutation=self.permutation, name=self.name)


def _name(kind: str, fill: int) -> str:
    """``"IC(k)"`` or ``"ILU(k)"``."""
    return f"{'IC' if kind == 'cholesky' else 'ILU'}({fill})"


def _check_kind(kind) -> str:
    if kind not in KINDS:
        raise ValueError(f"kind: expected one of {KINDS}, got {kind!r}")
    return kind


def _factorize(F: CSRMatrix, kind: str, fill: int, shift: bool) -> Factorization:
    """The numeric factorisation of ``F`` (``A`` on the pattern of its factor), on the
    CPU, with the diagonal shifted after a breakdown where ``shift`` allows."""
    name = _name(kind, fill)
    numeric = ops.ic0 if kind == "cholesky" else ops.ilu
    with torch.inference_mode(False):  # the factor must be usable by a later backward
        crow, col = F.crow_indices.cpu(), F.col_indices.cpu()
        values = F.values.detach().cpu()
        diagonal = diagonal_positions(F, "A").cpu()
        alpha, first = 0.0, None
        while True:
            shifted = values if alpha == 0 else \
                values.index_add(0, diagonal, alpha * values[diagonal])
            try:
                factor = numeric(crow, col, shifted)
                break
            except torch.linalg.LinAlgError as error:
                if not shift:
                    raise torch.linalg.LinAlgError(f"{name} {error}") from None
                first = first or f"{name} {error}"
                alpha = FIRST_SHIFT if alpha == 0 else 2 * alpha
                if alpha > LAST_SHIFT:
                    raise torch.linalg.LinAlgError(
                        f"{first}; no diagonal shift up to {LAST_SHIFT:g} diag(A) "
                        f"helped") from None
    if alpha:
        warnings.warn(f"{first}; factored A + {alpha:g} diag(A) instead (a diagonal shift, "
                      f"as classical incomplete factorisations do)", RuntimeWarning,
                      stacklevel=3)
    return Factorization(F.with_values(factor.to(F.device)), kind, fill, alpha)


def incomplete_cholesky(A: CSRMatrix, fill: int = 0, *, shift: bool = True,
                        ordering: str | None = None) -> Factorization:
    """IC(``fill``): ``L`` lower triangular with ``L L^T ≈ A`` on the lower triangle of
    the level-of-fill pattern (:func:`~learnsolve.core.fill.level_of_fill`).

    ``L_ik = (a_ik - sum_{j<k} L_ij L_kj) / L_kk`` for the stored ``k < i`` and
    ``L_ii = sqrt(a_ii - sum_{j<i} L_ij^2)`` (native op ``learnsolve::ic0``,
    on the CPU, float64 accumulation; ``L`` is moved to ``A``'s device). It
    exists for M-matrices and diagonally dominant SPD matrices; on other SPD
    matrices a pivot may be ``<= 0`` (a breakdown). With ``shift`` the
    factorisation is then redone for ``A + alpha diag(A)`` (the diagonal
    moved away from zero) with ``alpha = 1e-3, 2e-3, 4e-3, ...`` (the
    shifted IC of Manteuffel, 1980) until it goes
    through, and a RuntimeWarning says which ``alpha``; without,
    ``torch.linalg.LinAlgError`` names the row. With ``ordering="rcm"`` the
    factor is that of ``P A P^T``, the unknowns in reverse Cuthill-McKee order
    (:func:`~learnsolve.core.fill.ordering`), and ``M = P^T (L L^T)^{-1} P``.

    Raises
    ------
    ValueError
        ``A`` not symmetric or with a non-positive diagonal entry
        (:func:`~learnsolve.solvers.cg.check_spd`).
    torch.linalg.LinAlgError
        A breakdown without ``shift``, or none of the shifts up to
        ``1e3 diag(A)`` helped.

    Examples
    --------
    >>> import torch
    >>> from learnsolve.problems import poisson_2d
    >>> from learnsolve.solvers.incomplete import incomplete_cholesky
    >>> A = poisson_2d(8, dtype=torch.float64).A
    >>> [incomplete_cholesky(A, k).matrix.nnz for k in (0, 1, 2)]
    [176, 225, 267]
    """
    A = check_square(A)
    fill = check_count(fill, "fill", 0)
    check_spd(A)
    A, perm = _reordered(A.detach(), ordering)
    return replace(_factorize(fill_pattern(A, fill).tril(), "cholesky", fill, shift),
                   permutation=perm)


def incomplete_lu(A: CSRMatrix, fill: int = 0, *, shift: bool = True,
                  ordering: str | None = None) -> Factorization:
    """ILU(``fill``): ``L`` unit lower and ``U`` upper triangular with ``L U ≈ A`` on
    the level-of-fill pattern (:func:`~learnsolve.core.fill.level_of_fill`),
    stored together.

    The IKJ elimination without pivoting, updates outside the pattern dropped
    (native op ``learnsolve::ilu``, on the CPU, float64 accumulation). A zero
    or non-finite pivot is a breakdown, handled as in
    :func:`incomplete_cholesky` (``shift``), and so is ``ordering``. Every
    row needs a stored diagonal entry.

    Examples
    --------
    >>> import torch
    >>> from learnsolve.problems import load_example
    >>> from learnsolve.solvers.incomplete import incomplete_lu
    >>> A = load_example("recirc_flow", dtype=torch.float64).A
    >>> factor = incomplete_lu(A)
    >>> factor.matrix.nnz == A.nnz, factor.shift
    (True, 0.0)
    """
    A = check_square(A)
    fill = check_count(fill, "fill", 0)
    A, perm = _reordered(A.detach(), ordering)
    return replace(_factorize(fill_pattern(A, fill), "lu", fill, shift), permutation=perm)


def _reordered(A: CSRMatrix, ordering: str | None) -> tuple[CSRMatrix, torch.Tensor | None]:
    """``(P A P^T, perm)`` for an ordering, ``(A, None)`` without."""
    perm = reorder(A.pattern, ordering)
    return (A, None) if perm is None else (permute(A, perm), perm)


def _permuted(x: torch.Tensor, index: torch.Tensor | None) -> torch.Tensor:
    return x if index is None else x.index_select(0, index)


def _inverse(perm: torch.Tensor | None) -> torch.Tensor | None:
    return None if perm is None else torch.argsort(perm)


def solves(F: CSRMatrix, kind: str, permutation: torch.Tensor | None = None,
           name: str = "M") -> PreconditionerOperator:
    """``M: r -> P^T (L L^T)^{-1} P r`` (cholesky: ``L`` the lower triangle of
    ``F``; symmetric) or ``r -> P^T (L U)^{-1} P r`` (lu: ``L`` unit lower below
    ``F``'s diagonal, ``U`` its upper triangle; ``M^T`` by the transposed solves
    in the other order), ``(P r)_i = r[permutation[i]]`` (the identity where
    None): two triangular solves, differentiable in ``F``'s values and ``r``."""
    inverse = _inverse(permutation)

    def solve(r: torch.Tensor, steps) -> torch.Tensor:
        check_rhs(F, r, "r")
        y = _permuted(r, permutation)
        for lower, unit, transpose in steps:
            y = spsolve_triangular(F, y, lower=lower, unit_diagonal=unit, transpose=transpose)
        return _permuted(y, inverse)
    if kind == "cholesky":
        steps = ((True, False, False), (True, False, True))
        return PreconditionerOperator.like(F, lambda r: solve(r, steps), symmetric=True,
                                           name=name)
    steps = ((True, True, False), (False, False, False))
    transposed = ((False, False, True), (True, True, True))
    return PreconditionerOperator.like(F, lambda r: solve(r, steps),
                                       transpose=lambda r: solve(r, transposed), name=name)


def products(F: CSRMatrix, kind: str, permutation: torch.Tensor | None = None) -> Apply:
    """``z -> P^T L L^T P z`` or ``z -> P^T L U P z``: the inverse of :func:`solves`'
    map, ``M^{-1}``, by sparse products (differentiable)."""
    if kind == "cholesky":
        first, second = F.T, F
    else:
        first, second = F.triu(), F.tril(-1)
    inverse = _inverse(permutation)

    def apply(z: torch.Tensor) -> torch.Tensor:
        check_rhs(F, z, "z")
        y = first @ _permuted(z, permutation)
        y = second @ y if kind == "cholesky" else y + second @ y
        return _permuted(y, inverse)
    return apply


class _Classical(Preconditioner):
    """A classical incomplete factorisation of each matrix it is set up for."""

    kind = "cholesky"

    def __init__(self, fill: int = 0, *, shift: bool = True, ordering: str | None = None):
        super().__init__()
        self.fill = check_count(fill, "fill", 0)
        self.shift = bool(shift)
        check_ordering(ordering)
        self.ordering = ordering
        self._factorization = MatrixCache()

    def factorization(self, A: CSRMatrix) -> Factorization:
        """The factorisation of ``A`` (cached per matrix: redone when its pattern, its
        values tensor or their contents change)."""
        A = check_square(A)
        compute = incomplete_cholesky if self.kind == "cholesky" else incomplete_lu
        return self._factorization.get((A.pattern, A.values), lambda: compute(
            A, self.fill, shift=self.shift, ordering=self.ordering))

    def factor(self, A: CSRMatrix) -> CSRMatrix:
        """The factor's matrix for ``A`` (see :class:`Factorization`; of ``P A P^T``
        with an ordering), detached."""
        return self.factorization(A).matrix

    def setup(self, A: CSRMatrix) -> PreconditionerOperator:
        """``M`` for ``A``, applied to ``r`` of shape ``(n,)`` or ``(n, k)``: two
        triangular solves (symmetric for IC(k); ILU(k)'s with its transpose)."""
        return self.factorization(A).apply()

    def setup_inverse(self, A: CSRMatrix) -> Apply:
        """``z -> M^{-1} z``: the factors' product."""
        factorization = self.factorization(A)
        return products(factorization.matrix, self.kind, permutation=factorization.permutation)

    def extra_repr(self) -> str:
        return f"fill={self.fill}, shift={self.shift}, ordering={self.ordering!r}"


class IncompleteCholesky(_Classical):
    """IC(k): ``M = (L L^T)^{-1}`` with ``L`` the incomplete Cholesky factor of ``A``
    with level of fill ``k`` (:func:`incomplete_cholesky`). A fixed baseline.

    Where things happen: the factorisation always runs on the CPU, once per
    matrix (cached, and redone when the pattern, the values tensor or its
    contents change); ``L`` is then moved to ``A``'s device, where the two
    triangular solves of each application run. A breakdown shifts the
    diagonal (``shift=True``, reported by a RuntimeWarning and in
    ``factorization(A).shift``) or raises ``torch.linalg.LinAlgError``.

    Notes
    -----
    ``L`` is detached: no gradient reaches ``A``'s values through ``M``.
    Gradients reach ``r``: ``M`` is linear and symmetric, so the backward of
    ``z = M r`` is ``dr = M dz``, the same two solves.

    Examples
    --------
    >>> import torch
    >>> from learnsolve.problems import poisson_1d
    >>> from learnsolve.solvers import IncompleteCholesky
    >>> A = poisson_1d(4, dtype=torch.float64).A
    >>> apply = IncompleteCholesky().setup(A)   # tridiagonal: IC(0) is exact
    >>> A @ apply(torch.ones(4, dtype=torch.float64))
    tensor([1.0000, 1.0000, 1.0000, 1.0000], dtype=torch.float64)
    """

    kind = "cholesky"


class IncompleteLU(_Classical):
    """ILU(k): ``M = (L U)^{-1}`` with ``L U`` the incomplete LU factorisation of ``A``
    with level of fill ``k`` (:func:`incomplete_lu`). A fixed baseline for GMRES
    (nonsymmetric in general). Where things happen, breakdowns, gradients: as
    :class:`IncompleteCholesky`.

    Examples
    --------
    >>> import torch
    >>> from learnsolve.problems import load_example
    >>> from learnsolve.solvers import GMRES, IncompleteLU
    >>> A = load_example("recirc_flow", dtype=torch.float64).A
    >>> b = torch.ones(A.shape[0], dtype=torch.float64)
    >>> GMRES(M=IncompleteLU(), rtol=1e-8)(A, b).converged
    True
    """

    kind = "lu"


class IncompleteFactor(SparseParameter):
    """A learned incomplete factorisation: ``M = (L L^T)^{-1}`` or ``M = (L U)^{-1}``
    on the level-of-fill pattern of one matrix, its values trained, started from
    the classical IC(k) / ILU(k) factor, applied by two triangular solves.

    The values are those of the factor of the Jacobi-scaled matrix ``Ã = D^{-1/2}
    A D^{-1/2}`` (``D = |diag(A)|`` of the matrix ``M`` is set up for):

        cholesky:  M = D^{-1/2} (L~ L~^T)^{-1} D^{-1/2}   (L = D^{1/2} L~)
        lu:        M = D^{-1/2} (L~ U~)^{-1} D^{-1/2}     (L = D^{1/2} L~ D^{-1/2},
                                                           U = D^{1/2} U~ D^{1/2})

    so that an untrained factor (``init="classical"``) *is* IC(k) / ILU(k) of
    ``A`` (the classical factorisations commute with diagonal scaling), and the
    same values serve ``c A`` for every ``c > 0``.

    Parameters
    ----------
    A : CSRMatrix or Problem
        The matrix whose level-of-fill pattern the factor lives on (its
        values give the classical start). Square; cholesky needs it SPD
        (symmetric, positive diagonal), lu a nonzero diagonal.
    kind : {"cholesky", "lu"}
        ``"cholesky"``: ``L`` on the lower triangle of the pattern, ``M`` SPD
        for PCG. ``"lu"``: unit lower ``L`` and upper ``U`` on the whole
        pattern, for GMRES.
    fill : int
        The level of fill ``k`` (:func:`~learnsolve.core.fill.level_of_fill`):
        0 is ``A``'s own pattern.
    init : "classical" or Tensor
        ``"classical"``: IC(k) / ILU(k) of ``Ã`` (with a reported diagonal
        shift if it breaks down, see :func:`incomplete_cholesky`); a tensor:
        the values of ``L~`` (or of ``L~`` and ``U~`` together) in the
        pattern's storage order, with nonzero (cholesky: positive) diagonal.
    shift : bool
        Whether a breakdown of the classical start shifts the diagonal or raises.
    ordering : None or "rcm"
        The order of the unknowns the factor is built in
        (:func:`~learnsolve.core.fill.ordering`): as given, or reverse
        Cuthill-McKee (``M = P^T M_P P`` for the factor ``M_P`` of ``P A
        P^T``; the permutation is the buffer ``permutation``). The order of a
        mesh generator can make IC(0) much weaker than after RCM, and a
        learned factor with it.

    Attributes
    ----------
    values : nn.Parameter
        The factor of ``Ã`` as stored: entries off the diagonal as they are,
        the diagonal entries as the logarithm of their magnitude. Their sign
        is the buffer ``diagonal_sign`` (fixed at the start: +1 for cholesky),
        so no training step can flip a pivot's sign or make it zero (short
        of a logarithm below -745 in float64, -103 in float32, where the
        exponential underflows; a solve then raises): ``M`` stays
        nonsingular, and SPD for cholesky.
    kind, fill : the arguments.
    shift_ : float
        The diagonal shift the classical start needed (0 without breakdown).

    Raises
    ------
    ValueError
        A non-square or (cholesky) non-SPD ``A``, a zero diagonal entry, an
        unknown ``kind`` or ``init``, a bad ``fill`` or ``init`` tensor; in
        :meth:`setup`, an ``A`` of another shape or device, or with a zero
        (cholesky: non-positive) diagonal.

    Notes
    -----
    ``setup(A)`` reads only ``diag(A)`` of the matrix it is given: the factor
    belongs to the pattern and values it was built from; used with another
    matrix of that pattern (another coefficient field), it is a factor
    learned for the first one.

    Differentiable in the values (the triangular solves' gradient is the
    masked outer product ``-(w x^T) ⊙ mask``, paper table 1), in ``r`` and in
    ``diag(A)``. Its training loss is :func:`~learnsolve.solvers.pcg_loss`
    (as ``PCG(M=factor)``), :func:`~learnsolve.solvers.gmres_loss` (lu) or one
    of :mod:`learnsolve.solvers.losses`.

    Examples
    --------
    >>> import torch
    >>> from learnsolve.problems import poisson_2d
    >>> from learnsolve.solvers import PCG, IncompleteCholesky, IncompleteFactor
    >>> A = poisson_2d(16, dtype=torch.float64).A
    >>> M = IncompleteFactor(A)                 # starts as IC(0)
    >>> b = torch.ones(A.shape[0], dtype=torch.float64)
    >>> PCG(M=M)(A, b).iterations == PCG(M=IncompleteCholesky())(A, b).iterations
    True
    >>> torch.allclose(M.factor(A).values, IncompleteCholesky().factor(A).values)
    True
    >>> M.values.requires_grad, M.factor(441 * A).nnz == A.tril().nnz
    (True, True)
    """

    def __init__(self, A, *, kind: str = "cholesky", fill: int = 0,
                 init: str | torch.Tensor = "classical", shift: bool = True,
                 ordering: str | None = None):
        A = check_square(matrix_of(A), "A")
        kind = _check_kind(kind)
        fill = check_count(fill, "fill", 0)
        check_ordering(ordering)
        if kind == "cholesky":
            check_spd(A)
        A, permutation = _reordered(A.detach(), ordering)
        d = scaling_diagonal(A, self, positive=kind == "cholesky").abs()
        F = fill_pattern(A, fill)
        if kind == "cholesky":
            F = F.tril()
        diagonal = diagonal_positions(F, "A")
        shift_used = 0.0
        if isinstance(init, torch.Tensor):
            values = check_init_values(init, F.nnz, F.values, f"the {kind} factor")
        elif init == "classical":
            s = d.rsqrt()
            scaled = F.with_values(s[F.row_indices()] * F.values * s[F.col_indices])
            start = _factorize(scaled, kind, fill, shift)
            values, shift_used = start.matrix.values, start.shift
        else:
            raise ValueError(f"init: expected 'classical' or a tensor of values, got {init!r}")
        pivots = values[diagonal]
        bad = torch.nonzero(~(pivots > 0) if kind == "cholesky" else ~(pivots != 0))
        if bad.numel():
            i = int(bad[0, 0])
            raise ValueError(f"init: expected a {'positive' if kind == 'cholesky' else 'nonzero'} "
                             f"diagonal in the factor's values, got {float(pivots[i]):g} in "
                             f"row {i}")
        super().__init__(F, values.index_copy(0, diagonal, pivots.abs().log()))
        self.register_buffer("diagonal_sign", pivots.sign())
        self.register_buffer("permutation", permutation)
        self.kind = kind
        self.fill = fill
        self.ordering = ordering
        self.shift_ = shift_used

    def _scaled_factor(self, dtype: torch.dtype) -> CSRMatrix:
        """The factor of ``Ã`` (``L~``, or ``L~`` and ``U~``), differentiable."""
        values = self.values.to(dtype)
        diagonal = self._diagonal()
        pivots = self.diagonal_sign.to(dtype) * values[diagonal].exp()
        return self.sparse(values.index_copy(0, diagonal, pivots))

    def _root(self, A: CSRMatrix) -> torch.Tensor:
        """``D^{1/2}`` for ``A`` (in the factor's order): ``|diag(A)|^{1/2}``,
        differentiable."""
        d = scaling_diagonal(A, self, positive=self.kind == "cholesky")
        return _permuted(d, self.permutation).abs().sqrt()

    def factor(self, A: CSRMatrix | None = None) -> CSRMatrix:
        """The factor for ``A`` (``L``, or ``L`` and ``U`` together, in ``A``'s dtype),
        or that of the scaled matrix ``Ã`` without ``A``; a CSRMatrix,
        differentiable. With an ordering, the factor of ``P A P^T``."""
        if A is None:
            return self._scaled_factor(self.values.dtype)
        A = self.check_matrix(A)
        F = self._scaled_factor(A.dtype)
        root = self._root(A)
        rows, cols = F.row_indices(), F.col_indices
        if self.kind == "cholesky":
            return F.with_values(root[rows] * F.values)
        column = torch.where(cols < rows, 1 / root[cols], root[cols])
        return F.with_values(root[rows] * F.values * column)

    def setup(self, A: CSRMatrix) -> PreconditionerOperator:
        """``M`` for ``A``: two triangular solves with the factor for ``A``
        (:meth:`factor`, scaled once per setup), for ``r`` of shape ``(n,)`` or
        ``(n, k)`` in ``A``'s dtype; symmetric for ``kind="cholesky"``, with its
        transpose for ``"lu"``."""
        return solves(self.factor(A), self.kind, permutation=self.permutation,
                      name=type(self).__name__)

    def setup_inverse(self, A: CSRMatrix) -> Apply:
        """``z -> M^{-1} z`` for ``A`` (``L L^T z`` or ``L U z``, sparse products):
        what the sketched and low-frequency losses compare with ``A z``."""
        return products(self.factor(A), self.kind, permutation=self.permutation)

    def extra_repr(self) -> str:
        return (f"kind={self.kind!r}, fill={self.fill}, ordering={self.ordering!r}, "
                f"{super().extra_repr()}")
