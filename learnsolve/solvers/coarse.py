"""Coarse spaces of two-level Schwarz methods: the basis ``Z`` (``n x`` a few columns
per subdomain) from which :class:`~learnsolve.solvers.RAS` builds the coarse
correction ``Q = Z A_0^{-1} Z^T``, ``A_0 = Z^T A Z``.

One-level Schwarz only exchanges information between neighbouring subdomains,
so its iterations grow with their number; ``Q`` corrects, in one global solve,
the error that lies in the span of ``Z``. :class:`Nicolaides` takes the
indicator of each subdomain's core (a partition of unity: the error constant on
each subdomain); :class:`Linear` adds the linear functions of each core. Either
can be smoothed by damped Jacobi steps, whose weights can be learned. ``Z`` is a
sparse :class:`~learnsolve.CSRMatrix` built by sparse products, so ``A_0`` and
every gradient keep their sparsity.
"""
from __future__ import annotations

import weakref
from functools import partial

import torch
from torch import nn

from ..core.arith import add
from ..core.cache import MatrixCache
from ..core.construct import from_coo
from ..core.csr import CSRMatrix
from ..core.pattern import Pattern
from ..core.validation import check_bool
from ..problems.decomposition import Partition

__all__ = ["CoarseSpace", "Nicolaides", "Linear", "Quadratic", "Enrichment", "as_coarse_space",
           "COARSE_SPACES"]

# Partition -> device -> the pattern of its indicator basis; the partition held weakly.
_INDICATORS: "weakref.WeakKeyDictionary[Partition, dict]" = weakref.WeakKeyDictionary()


def indicator_pattern(partition: Partition, device: torch.device) -> Pattern:
    """The pattern of the core indicators (``n x S``, one entry a row), cached."""
    by_device = _INDICATORS.setdefault(partition, {})
    pattern = by_device.get(device)
    if pattern is None:
        n, S = partition.num_nodes, partition.num_parts
        pattern = by_device[device] = Pattern(torch.arange(n + 1, device=device),
                                              partition.membership.to(device), (n, S))
    return pattern


class CoarseSpace(nn.Module):
    r"""Base of the coarse spaces: :meth:`basis` gives ``Z`` for a matrix and a partition.

    A subclass gives the unsmoothed basis (:meth:`raw_basis`); the base smooths it
    by ``steps`` damped Jacobi steps, ``Z <- (I - omega_k D^{-1} A) Z``
    (``D = diag(A)``), each of which widens a column by one layer of nodes and
    lets it follow the solution across the interfaces, as smoothed aggregation
    smooths its tentative prolongator.

    Parameters
    ----------
    steps : int
        The smoothing steps (0: none).
    omega : float
        The damping of every step (2/3: damped Jacobi's classical weight).
    learnable : bool
        Make the weights ``omega_k`` (one per step, float64) ``nn.Parameter``\ s,
        trained with the rest of the preconditioner (``pcg_loss``, ``gmres_loss``).

    Notes
    -----
    ``Z`` is built by sparse products (``A Z`` is an SpGEMM whose pattern is
    cached), so it is differentiable in ``A.values`` and in the weights. The
    scale of ``A`` cancels in ``D^{-1} A``: the space is the same for ``c A``.
    """

    needs_coordinates = False

    def __init__(self, steps: int = 0, omega: float = 2.0 / 3.0, *, learnable: bool = False):
        super().__init__()
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
            raise ValueError(f"steps: expected an integer >= 0, got {steps!r}")
        if isinstance(omega, bool) or not isinstance(omega, (int, float)) or not 0 < omega < 2:
            raise ValueError(f"omega: expected a number in (0, 2), got {omega!r}")
        learnable = check_bool(learnable, "learnable")
        weights = torch.full((steps,), float(omega), dtype=torch.float64)
        if learnable:
            self.omega = nn.Parameter(weights)
        else:
            self.register_buffer("omega", weights)

    def raw_basis(self, A: CSRMatrix, partition: Partition,
                  coordinates: torch.Tensor | None) -> CSRMatrix:  # pragma: no cover
        raise NotImplementedError

    def basis(self, A: CSRMatrix, partition: Partition,
              coordinates: torch.Tensor | None = None) -> CSRMatrix:
        """``Z`` (``n x`` columns, sparse, differentiable) for ``A`` under ``partition``;
        ``coordinates`` ``(n, d)`` where the space needs them."""
        if self.needs_coordinates and coordinates is None:
            raise ValueError(f"coordinates: the {type(self).__name__} coarse space needs the "
                             f"problem's node coordinates (a mesh or grid problem)")
        Z = self.raw_basis(A, partition, coordinates)
        if self.omega.numel():
            inverse_diagonal = A.diagonal().reciprocal()
            for omega in self.omega.to(A.dtype):
                AZ = A @ Z
                scaled = AZ.with_values(AZ.values * inverse_diagonal[AZ.row_indices()])
                Z = add(Z, scaled, 1.0, -omega)
        return Z

    def indicators(self, A: CSRMatrix, partition: Partition) -> CSRMatrix:
        """The indicator of each subdomain's core, in ``A``'s dtype and on its device."""
        pattern = indicator_pattern(partition, A.device)
        return CSRMatrix.from_pattern(pattern, A.values.new_ones(pattern.nnz).detach())

    def extra_repr(self) -> str:
        if not self.omega.numel():
            return ""
        return f"omega={[round(float(w), 4) for w in self.omega.detach()]}"


class Nicolaides(CoarseSpace):
    """The Nicolaides coarse space: ``Z``'s column ``i`` is the indicator of the core of
    subdomain ``i`` (the cores partition the nodes, so the columns sum to 1), smoothed
    by ``steps`` damped Jacobi steps (see :class:`CoarseSpace`).

    Examples
    --------
    >>> import torch
    >>> from learnsolve.problems import poisson_1d, partition
    >>> from learnsolve.solvers.coarse import Nicolaides
    >>> p = poisson_1d(6, dtype=torch.float64)
    >>> P = partition(p, 2, method="bfs")
    >>> Nicolaides().basis(p.A, P).to_dense().T
    tensor([[1., 1., 1., 0., 0., 0.],
            [0., 0., 0., 1., 1., 1.]], dtype=torch.float64)
    >>> Nicolaides(steps=1, omega=0.5).basis(p.A, P).to_dense()[:, 0]   # smoothed
    tensor([0.7500, 1.0000, 0.7500, 0.2500, 0.0000, 0.0000], dtype=torch.float64)
    """

    def raw_basis(self, A, partition, coordinates):
        return self.indicators(A, partition)


class Linear(CoarseSpace):
    """The Nicolaides space enriched with the linear functions of each core: for
    subdomain ``i``, its indicator and ``(x_d - c_d) / s_d`` on its core for every
    coordinate ``d`` (``c`` the core's centroid, ``s`` the root mean square of the
    deviation), smoothed by ``steps`` damped Jacobi steps (:class:`CoarseSpace`).

    ``1 + d`` vectors per subdomain: the constant and linear parts of the error,
    which one-level Schwarz damps slowest and a subdomain cannot see, in one
    coarse solve (as the rigid body modes do for elasticity). A coordinate whose
    deviation vanishes on a core (a straight row of nodes) adds no vector. Needs
    the problem's coordinates.

    Examples
    --------
    >>> import torch
    >>> from learnsolve.problems import poisson_2d
    >>> from learnsolve.solvers.coarse import Linear
    >>> p = poisson_2d(6, dtype=torch.float64).with_partition(4, overlap=1)
    >>> Z = Linear().basis(p.A, p.partition, p.coordinates)
    >>> Z.shape, Z.nnz                        # 3 vectors a subdomain, 3 entries a node
    ((36, 12), 108)
    """

    needs_coordinates = True

    def raw_basis(self, A, partition, coordinates):
        return self.linear_basis(A, partition, coordinates)[0]

    @staticmethod
    def linear_basis(A: CSRMatrix, partition: Partition, coordinates: torch.Tensor
                     ) -> tuple[CSRMatrix, torch.Tensor]:
        """The unsmoothed basis and the kind of each of its columns (0: an indicator,
        ``1 + k``: the linear function of coordinate ``k``). Its values do not depend
        on ``A``: it is kept per partition, coordinates (the same tensor, unchanged)
        and dtype, so that the patterns of the products with it stay cached."""
        return _kept(_LINEAR, _linear_basis, A, partition, coordinates)


class Quadratic(CoarseSpace):
    """The linear space enriched with the quadratic functions of each core: for
    subdomain ``i``, the columns of :class:`Linear` and, for every pair of
    coordinates ``j <= k``, ``u_j u_k`` on its core (``u`` the scaled coordinates of
    :class:`Linear`) less its least-squares fit by the core's constant and linear
    functions, scaled to a unit root mean square on the core; smoothed by ``steps``
    damped Jacobi steps (:class:`CoarseSpace`).

    ``1 + d + d (d + 1) / 2`` vectors per subdomain (6 in 2D): with the quadratic
    part of the error in the coarse solve, what one-level Schwarz leaves is of
    higher order still. A core on which its quadratic functions are not
    independent of each other and of its linear ones (too few nodes, or nodes on
    a line) keeps its linear columns only. Needs the problem's coordinates.

    The space contains the linear one, so with PCG (the balanced variant) its
    effective condition number is at most the linear space's.

    Examples
    --------
    >>> import torch
    >>> from learnsolve.problems import poisson_2d
    >>> from learnsolve.solvers.coarse import Quadratic
    >>> p = poisson_2d(8, dtype=torch.float64).with_partition(4, overlap=1)
    >>> Z = Quadratic().basis(p.A, p.partition, p.coordinates)
    >>> Z.shape                               # 6 vectors a subdomain
    (64, 24)
    """

    needs_coordinates = True

    def raw_basis(self, A, partition, coordinates):
        layout = self.enrichment(A, partition, coordinates)
        return layout.basis(layout.monomials)

    @staticmethod
    def enrichment(A: CSRMatrix, partition: Partition, coordinates: torch.Tensor
                   ) -> "Enrichment":
        """The layout of the quadratic space (:class:`Enrichment`), kept per partition,
        coordinates and dtype as :meth:`Linear.linear_basis` keeps its basis."""
        return _kept(_QUADRATIC, Enrichment, A, partition, coordinates)


class Enrichment:
    """The linear space of a partition and room for ``d (d + 1) / 2`` more columns on each
    core that has them: :meth:`basis` fills them with any values per node, made
    independent of the core's linear functions (:meth:`project`). The pattern is
    built once, so that every basis shares it (and the sparse products their
    cached patterns).

    Attributes
    ----------
    monomials : Tensor (n, d (d + 1) / 2)
        ``u_j u_k`` (``j <= k``) of each node's scaled coordinates ``u``: the
        classical quadratic columns.
    enriched : Tensor (S,) bool
        The subdomains whose core takes the extra columns.
    linear, kinds
        The linear basis and the kind of each of its columns (:meth:`Linear.linear_basis`).
    """

    def __init__(self, partition: Partition, X: torch.Tensor):
        n, S, d = partition.num_nodes, partition.num_parts, X.shape[1]
        self.linear, self.kinds = _linear_basis(partition, X)
        self.membership, u, _ = _core_coordinates(partition, X)
        self.counts = torch.bincount(self.membership, minlength=S)        # nodes a core
        first, second = torch.triu_indices(d, d, device=X.device)
        self.monomials = u[:, first] * u[:, second]
        self.width = first.numel()
        # The core's constant and linear functions per node, and the pseudo-inverse of
        # their Gram matrix on each core: a coordinate that does not vary is a zero column.
        self.local = torch.cat([X.new_ones(n, 1), u], dim=1)
        gram = X.new_zeros(S, d + 1, d + 1).index_add(
            0, self.membership, self.local[:, :, None] * self.local[:, None, :])
        self.gram_pinv = torch.linalg.pinv(gram, hermitian=True)
        self.enriched = self._independent(self.project(self.monomials), d)
        self.pattern, self.order, self.rows = self._layout(S)

    def project(self, values: torch.Tensor) -> torch.Tensor:
        """``values`` (n, columns) less their least-squares fit on each core by its constant
        and linear functions, scaled to a unit root mean square on the core
        (differentiable in ``values``)."""
        m, S = self.membership, self.gram_pinv.shape[0]
        moments = values.new_zeros(S, self.local.shape[1], values.shape[1]).index_add(
            0, m, self.local[:, :, None] * values[:, None, :])
        fit = torch.bmm(self.gram_pinv, moments)                      # (S, d + 1, columns)
        rest = values - (self.local[:, :, None] * fit[m]).sum(1)
        mean_square = (values.new_zeros(S, values.shape[1]).index_add(0, m, rest ** 2)
                       / self.counts.to(values.dtype)[:, None])
        return rest * mean_square.clamp_min(torch.finfo(values.dtype).tiny).rsqrt()[m]

    def _independent(self, projected: torch.Tensor, d: int) -> torch.Tensor:
        """The cores on which the projected quadratic columns are independent: enough
        nodes, every coordinate varying, and a correlation matrix of the columns whose
        smallest eigenvalue is not negligible."""
        m, S = self.membership, self.gram_pinv.shape[0]
        correlation = projected.new_zeros(S, self.width, self.width).index_add(
            0, m, projected[:, :, None] * projected[:, None, :]) / self.counts.clamp_min(1)[
                :, None, None]
        smallest = torch.linalg.eigvalsh(correlation)[:, 0]
        varying = torch.linalg.matrix_rank(self.gram_pinv, hermitian=True) == d + 1
        return (self.counts >= 1 + d + self.width) & varying & (smallest > 1e-6)

    def _layout(self, S: int) -> tuple[Pattern, torch.Tensor, torch.Tensor]:
        """The enriched basis's pattern, the order of ``[linear values, extra values]`` in
        it, and the nodes that have extra entries."""
        rows = torch.nonzero(self.enriched[self.membership]).flatten()
        slot = torch.cumsum(self.enriched.long(), 0) - 1              # rank among enriched
        first = self.linear.shape[1] + slot[self.membership[rows]] * self.width
        cols = (first[:, None] + torch.arange(self.width, device=rows.device)).flatten()
        linear_rows = self.linear.row_indices()
        extra_rows = rows[:, None].expand(-1, self.width).flatten()
        width = self.linear.shape[1] + int(self.enriched.sum()) * self.width
        total = self.linear.nnz + extra_rows.numel()
        # Each entry's position in [linear values, extra values], carried through the
        # sort as an exact float (no duplicates: nothing is summed).
        placed = from_coo(torch.cat([linear_rows, extra_rows]),
                          torch.cat([self.linear.col_indices, cols]),
                          torch.arange(total, dtype=torch.float64, device=rows.device),
                          (self.membership.numel(), width))
        return placed.pattern, placed.values.long(), rows

    def basis(self, values: torch.Tensor) -> CSRMatrix:
        """The linear basis and, on each enriched core, ``values`` (n, d (d + 1) / 2)
        projected (:meth:`project`); differentiable in ``values``."""
        extra = self.project(values)[self.rows].flatten()
        return CSRMatrix.from_pattern(
            self.pattern, torch.cat([self.linear.values.to(extra.dtype), extra])[self.order])


# Partition -> (device, dtype) -> the unsmoothed linear basis of the coordinates it was
# last built from (rebuilt for other coordinates or after an in-place change of them);
# the partition held weakly.
_LINEAR: "weakref.WeakKeyDictionary[Partition, dict]" = weakref.WeakKeyDictionary()
# The same for the layout of the quadratic space.
_QUADRATIC: "weakref.WeakKeyDictionary[Partition, dict]" = weakref.WeakKeyDictionary()


def _kept(store: weakref.WeakKeyDictionary, build, A: CSRMatrix, partition: Partition,
          coordinates: torch.Tensor):
    """``build(partition, coordinates)`` (no graph) in ``A``'s dtype and on its device,
    kept in ``store`` per partition, device and dtype until other coordinates (or an
    in-place change of them) ask for it again."""
    cache = store.setdefault(partition, {}).setdefault((A.device, A.dtype), MatrixCache())

    def compute():
        with torch.no_grad():
            return build(partition, coordinates.to(A.device, A.dtype))
    return cache.get((coordinates,), compute)


def _core_coordinates(partition: Partition, X: torch.Tensor
                      ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Each node's core ``m`` (n,), its deviation from its core's centroid scaled by the
    core's root mean square deviation, per coordinate, ``u`` (n, d: 0 in a coordinate
    whose deviation vanishes on the core), and which coordinates vary on each core
    ``keep`` (S, d)."""
    S = partition.num_parts
    m = partition.membership.to(X.device)
    counts = torch.bincount(m, minlength=S).to(X.dtype)[:, None]
    centroid = X.new_zeros(S, X.shape[1]).index_add(0, m, X) / counts
    deviation = X - centroid[m]
    spread = (X.new_zeros(S, X.shape[1]).index_add(0, m, deviation ** 2) / counts).sqrt()
    keep = spread > torch.finfo(X.dtype).eps ** 0.5 * spread.max().clamp_min(1e-300)
    u = torch.where(keep[m], deviation / torch.where(keep, spread, 1.0)[m], 0.0)
    return m, u, keep


def _linear_basis(partition: Partition, X: torch.Tensor) -> tuple[CSRMatrix, torch.Tensor]:
    """The indicators and the scaled linear functions of each core (see :class:`Linear`),
    and the kind of each column (0: an indicator, ``1 + k``: coordinate ``k``)."""
    n, S, d = partition.num_nodes, partition.num_parts, X.shape[1]
    m, u, keep = _core_coordinates(partition, X)
    column = torch.cumsum(keep.flatten().long(), 0).reshape(S, d) - 1 + S    # after the S
    rows = torch.arange(n, device=X.device)
    kept = keep[m]                                                          # (n, d)
    linear_rows = rows[:, None].expand(n, d)[kept]
    linear_cols = column[m][kept]
    width = S + int(keep.sum())
    basis = from_coo(torch.cat([rows, linear_rows]), torch.cat([m, linear_cols]),
                     torch.cat([X.new_ones(n), u[kept]]), (n, width))
    kinds = torch.cat([m.new_zeros(S), (torch.arange(d, device=X.device) + 1).expand(S, d)[keep]])
    return basis, kinds


#: The coarse spaces :class:`~learnsolve.solvers.RAS` takes by name.
COARSE_SPACES = {"nicolaides": Nicolaides, "smoothed": partial(Nicolaides, steps=1),
                 "linear": Linear, "smoothed linear": partial(Linear, steps=1),
                 "quadratic": Quadratic}


def as_coarse_space(coarse) -> CoarseSpace | None:
    """None, a :class:`CoarseSpace`, or the name of one (:data:`COARSE_SPACES`)."""
    if coarse is None or isinstance(coarse, CoarseSpace):
        return coarse
    if isinstance(coarse, str) and coarse in COARSE_SPACES:
        return COARSE_SPACES[coarse]()
    raise ValueError(f"coarse: expected None, a CoarseSpace or one of {sorted(COARSE_SPACES)}, "
                     f"got {coarse!r}")


def coarse_correction(Z: CSRMatrix, factors):
    """``r -> Q r = Z A_0^{-1} Z^T r`` from the basis and the factors of ``A_0``."""
    Zt = Z.T
    return lambda r: Z @ factors.solve(Zt @ r)
