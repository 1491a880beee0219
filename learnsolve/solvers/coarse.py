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

__all__ = ["CoarseSpace", "Nicolaides", "Linear", "as_coarse_space", "COARSE_SPACES"]

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
        cache = _LINEAR.setdefault(partition, {}).setdefault((A.device, A.dtype), MatrixCache())

        def compute():
            with torch.no_grad():
                return _linear_basis(partition, coordinates.to(A.device, A.dtype))
        return cache.get((coordinates,), compute)


# Partition -> (device, dtype) -> the unsmoothed linear basis of the coordinates it was
# last built from (rebuilt for other coordinates or after an in-place change of them);
# the partition held weakly.
_LINEAR: "weakref.WeakKeyDictionary[Partition, dict]" = weakref.WeakKeyDictionary()


def _linear_basis(partition: Partition, X: torch.Tensor) -> tuple[CSRMatrix, torch.Tensor]:
    """The indicators and the scaled linear functions of each core (see :class:`Linear`),
    and the kind of each column (0: an indicator, ``1 + k``: coordinate ``k``)."""
    n, S, d = partition.num_nodes, partition.num_parts, X.shape[1]
    m = partition.membership.to(X.device)
    counts = torch.bincount(m, minlength=S).to(X.dtype)[:, None]
    centroid = X.new_zeros(S, d).index_add(0, m, X) / counts
    deviation = X - centroid[m]
    spread = (X.new_zeros(S, d).index_add(0, m, deviation ** 2) / counts).sqrt()
    keep = spread > torch.finfo(X.dtype).eps ** 0.5 * spread.max().clamp_min(1e-300)
    column = torch.cumsum(keep.flatten().long(), 0).reshape(S, d) - 1 + S    # after the S
    rows = torch.arange(n, device=X.device)
    kept = keep[m]                                                          # (n, d)
    linear_rows = rows[:, None].expand(n, d)[kept]
    linear_cols = column[m][kept]
    linear_values = (deviation / torch.where(keep, spread, 1.0)[m])[kept]
    width = S + int(keep.sum())
    basis = from_coo(torch.cat([rows, linear_rows]), torch.cat([m, linear_cols]),
                     torch.cat([X.new_ones(n), linear_values]), (n, width))
    kinds = torch.cat([m.new_zeros(S), (torch.arange(d, device=X.device) + 1).expand(S, d)[keep]])
    return basis, kinds


#: The coarse spaces :class:`~learnsolve.solvers.RAS` takes by name.
COARSE_SPACES = {"nicolaides": Nicolaides, "smoothed": partial(Nicolaides, steps=1),
                 "linear": Linear, "smoothed linear": partial(Linear, steps=1)}


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
