"""A preconditioner predicted from the matrix: an incomplete Cholesky factor whose values
a graph network computes from ``A``, for any SPD matrix of any size."""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch
from torch import nn

from ..core.cache import values_cache
from ..core.csr import CSRMatrix
from ..core.fill import check_ordering, fill_pattern, permute
from ..core.validation import check_bool, check_count
from ..linalg._checks import check_square
from ..nn.factor_net import FactorNet
from .base import Preconditioner, PreconditionerOperator, matrix_of
from .cg import PCG, check_spd
from .incomplete import _factorize, solves

__all__ = ["NeuralFactor"]


@dataclass(frozen=True)
class _Reference:
    """What a NeuralFactor derives from one matrix without its network (cached per
    values tensor): the graph the network reads, the classical factor of the
    scaled matrix and where its entries sit in that graph."""

    graph: CSRMatrix            # A~ = D^{-1/2} A D^{-1/2} on its IC(k) pattern, symmetric
    factor: CSRMatrix           # L~0 = IC(k) of A~, lower triangle of the graph's pattern
    lower: torch.Tensor         # position in the graph of each entry of the factor
    features: torch.Tensor      # L~0 mirrored onto the graph (the network's reference input)
    diagonal: torch.Tensor      # mask over the factor's entries: on the diagonal
    root: torch.Tensor          # D^{1/2}, in the factor's order
    shift: float                # the diagonal shift IC(k) needed (0 without breakdown)
    permutation: torch.Tensor | None   # the factor is of P A P^T (None: of A)


def _reference(A: CSRMatrix, fill: int, shift: bool, ordering: str | None) -> _Reference:
    check_spd(A)
    A = A.detach()
    permutation = A.pattern.ordering(ordering)
    if permutation is not None:
        A = permute(A, permutation)
    d = A.diagonal()
    s = d.rsqrt()
    scaled = A.with_values(s[A.row_indices()] * A.values * s[A.col_indices])
    graph = fill_pattern(scaled, fill)
    row = graph.row_indices()
    lower_pattern, lower = graph.pattern.select(("tril", 0), lambda: graph.col_indices <= row)
    start = _factorize(CSRMatrix.from_pattern(lower_pattern, graph.values[lower]), "cholesky",
                       fill, shift)
    on_lower = torch.zeros(graph.nnz, dtype=graph.values.dtype, device=graph.device)
    on_lower[lower] = start.matrix.values
    _, perm = graph.pattern.transpose()
    features = torch.where(graph.col_indices <= row, on_lower, on_lower[perm])
    factor = start.matrix
    diagonal = factor.col_indices == factor.row_indices()
    return _Reference(graph, factor, lower, features, diagonal, d.sqrt(), start.shift,
                      permutation)


class NeuralFactor(Preconditioner):
    """``M = (L L^T)^{-1}`` with ``L`` predicted from ``A`` by a graph network, applied
    by two triangular solves: a preconditioner for any SPD matrix, of any size.

    The network (:class:`~learnsolve.nn.FactorNet`) reads the scaled matrix
    ``Ã = D^{-1/2} A D^{-1/2}`` (``D = diag(A)``) on the pattern of its IC(k)
    factor, with that factor's entries ``l0_ij`` as edge features, and gives a
    number ``g_ij`` per entry of the factor. The factor of ``Ã`` is then

    - ``correction=True`` (PreCorrector, Trifonov et al. 2024): ``l_ij = l0_ij +
      α |l0_ij| tanh(g_ij)`` off the diagonal and ``l_ii = l0_ii exp(α
      tanh(g_ii))``, with ``α`` a learned scalar that starts at 0: an
      untrained NeuralFactor *is* IC(k), training starts from it, and each
      entry moves by at most ``|α|`` times its IC(k) value;
    - ``correction=False`` (NeuralIF, Häusner et al. 2024): ``l_ij = g_ij`` off
      the diagonal and ``l_ii = exp(g_ii)``: the factor predicted outright.

    and ``L = D^{1/2} L~``. The diagonal is positive by construction, so ``M``
    is SPD for PCG. A factor whose entries are not finite (an overflowing
    network) is replaced by IC(k), with a RuntimeWarning, and the operator's
    ``message`` (which PCG and GMRES add to their Solution's) says so.

    What depends on ``A`` alone (its check, the scaled matrix, IC(k) of it) is
    computed once per matrix and kept while its values tensor lives
    (:func:`~learnsolve.core.cache.values_cache`): a training over a set of
    problems factors each once.

    Parameters
    ----------
    net : nn.Module, optional
        ``net(graph, reference) -> (nnz,)`` numbers per stored entry of the
        graph; default ``FactorNet()``. Its dtype is its own: the features
        are cast to it and the output to ``A``'s.
    correction : bool
        PreCorrector's bounded correction of IC(k) (True) or NeuralIF's direct
        prediction (False).
    fill : int
        ``k`` of the IC(k) pattern the factor lives on.
    shift : bool
        Whether a breakdown of IC(k) shifts the diagonal (with a warning) or
        raises.
    ordering : None or "rcm"
        The order of the unknowns the factor is built in: as given, or
        reverse Cuthill-McKee (``M = P^T (L L^T)^{-1} P`` for the factor of
        ``P A P^T``; see :meth:`~learnsolve.core.pattern.Pattern.ordering`).
        The network reads the same graph either way (it is equivariant to the
        numbering); IC(k), its start, depends on the order.
    guard : int
        0 (the default): none. ``g > 0``: each set-up that records no gradient
        (evaluation, not training) runs ``g`` PCG iterations on one fixed
        random right-hand side with the predicted factor and with IC(k) in the
        same order, and uses the predicted one only if its residual is not
        larger; otherwise IC(k), which the operator's ``message`` (and so the
        solve's) says. It costs ``2 g`` PCG iterations per set-up: worth it
        where a matrix is solved with many times, or where a loss on an unseen
        kind of matrix must not happen silently.

    Attributes
    ----------
    net : nn.Module
    alpha : nn.Parameter or None
        The correction's scale (0 at the start); None without correction.

    Examples
    --------
    >>> import torch
    >>> from learnsolve.problems import poisson_2d
    >>> from learnsolve.solvers import PCG, IncompleteCholesky, NeuralFactor
    >>> M = NeuralFactor().double()
    >>> for n in (8, 16):                     # one network, any size
    ...     A = poisson_2d(n, dtype=torch.float64).A
    ...     b = torch.ones(n * n, dtype=torch.float64)
    ...     print(PCG(M=M)(A, b).iterations == PCG(M=IncompleteCholesky())(A, b).iterations)
    True
    True
    """

    def __init__(self, net: nn.Module | None = None, *, correction: bool = True, fill: int = 0,
                 shift: bool = True, ordering: str | None = None, guard: int = 0):
        super().__init__()
        if net is not None and not isinstance(net, nn.Module):
            raise TypeError(f"net: expected None or an nn.Module, got {type(net).__name__}")
        self.net = FactorNet() if net is None else net
        self.correction = check_bool(correction, "correction")
        self.fill = check_count(fill, "fill", 0)
        self.shift = check_bool(shift, "shift")
        check_ordering(ordering)
        self.ordering = ordering
        self.guard = check_count(guard, "guard", 0)
        dtype = next(iter(self.net.parameters()), torch.zeros(())).dtype
        self.alpha = nn.Parameter(torch.zeros((), dtype=dtype)) if self.correction else None

    def reference(self, A: CSRMatrix) -> _Reference:
        """What the factor for ``A`` is built on (cached per matrix; see the class)."""
        A = check_square(matrix_of(A))
        key = f"NeuralFactor/IC({self.fill}), shift={self.shift}, ordering={self.ordering}"
        return values_cache(A.values, key).get(
            (A.pattern, A.values), lambda: _reference(A, self.fill, self.shift, self.ordering))

    def factor(self, A: CSRMatrix) -> CSRMatrix:
        """``L`` for ``A`` (lower triangular, A's dtype), differentiable in the
        network's parameters and ``α``; not checked (see :meth:`setup`)."""
        ref = self.reference(A)
        l0 = ref.factor.values.to(A.dtype)
        g = self.net(ref.graph, ref.features)[ref.lower].to(A.dtype)
        if self.correction:
            t = self.alpha.to(A.dtype) * torch.tanh(g)
            values = torch.where(ref.diagonal, l0 * torch.exp(t), l0 + l0.abs() * t)
        else:
            values = torch.where(ref.diagonal, torch.exp(g), g)
        row = ref.factor.row_indices()
        return ref.factor.with_values(ref.root.to(A.dtype)[row] * values)

    def permutation(self, A: CSRMatrix) -> torch.Tensor | None:
        """The order :meth:`factor` is in (``perm[i]``: the unknown of row ``i``), None
        for A's own."""
        return self.reference(A).permutation

    def setup(self, A: CSRMatrix) -> PreconditionerOperator:
        """``M`` for ``A``: two triangular solves with :meth:`factor`, symmetric.

        A factor with a non-finite entry is replaced by IC(k) (warned, and said
        in the operator's ``message``)."""
        A = check_square(matrix_of(A))
        L = self.factor(A)
        ref = self.reference(A)
        if not bool(torch.isfinite(L.values).all()):
            message = (f"NeuralFactor: the predicted factor has non-finite entries; IC("
                       f"{self.fill}) was used instead")
            warnings.warn(message, RuntimeWarning, stacklevel=2)
            return self._classical(ref, A.dtype, message)
        operator = solves(L, "cholesky", permutation=ref.permutation, name="NeuralFactor")
        if self.guard and not torch.is_grad_enabled():
            classical = self._classical(ref, A.dtype, "")
            learned, start = (_residual_after(A, M, self.guard) for M in (operator, classical))
            if learned > start:
                classical.message = (
                    f"NeuralFactor: on this matrix the predicted factor left a larger residual "
                    f"after {self.guard} PCG iterations than IC({self.fill}) ({learned:.2e} "
                    f"against {start:.2e}); IC({self.fill}) was used instead (guard)")
                return classical
        return operator

    def _classical(self, ref: _Reference, dtype: torch.dtype, message: str
                   ) -> PreconditionerOperator:
        """IC(k) in the factor's order, as an operator with ``message``."""
        L = ref.factor.with_values(ref.root[ref.factor.row_indices()] * ref.factor.values)
        operator = solves(L.to(dtype), "cholesky", permutation=ref.permutation,
                          name=f"IC({self.fill})")
        operator.message = message
        return operator

    def extra_repr(self) -> str:
        return (f"correction={self.correction}, fill={self.fill}, ordering={self.ordering!r}, "
                f"guard={self.guard}")


def _residual_after(A: CSRMatrix, M: PreconditionerOperator, iterations: int) -> float:
    """``||r||`` after ``iterations`` PCG iterations preconditioned by ``M``, from 0, on a
    right-hand side of unit normal entries drawn from a generator seeded with 0."""
    b = torch.randn(A.shape[0], generator=torch.Generator().manual_seed(0), dtype=A.dtype)
    solution = PCG(M=M, maxiter=iterations, rtol=0.0, check_spd=False)(A, b.to(A.device))
    return float(solution.residuals[-1])
