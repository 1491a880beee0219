"""Coarse spaces of two-level Schwarz methods: the basis ``Z`` (``n x S``, one column
per subdomain) from which :class:`~learnsolve.solvers.RAS` builds the coarse
correction ``Q = Z A_0^{-1} Z^T``, ``A_0 = Z^T A Z``.

One-level Schwarz only exchanges information between neighbouring subdomains,
so its iterations grow with their number; ``Q`` corrects, in one global solve,
the error that lies in the span of ``Z``. :class:`Nicolaides` takes the
indicator of each subdomain's core (a partition of unity: the error constant on
each subdomain); :class:`SmoothedNicolaides` smooths it by damped Jacobi steps,
``Z <- (I - omega D^{-1} A) Z``, which widens each column by a layer of nodes a
step and lets it follow the solution's slope across the interfaces, as the
tentative prolongator of smoothed aggregation is smoothed. Its weights can be
learned. ``Z`` is a sparse :class:`~learnsolve.CSRMatrix` built by sparse
products, so ``A_0`` and every gradient keep their sparsity.
"""
from __future__ import annotations

import weakref

import torch
from torch import nn

from ..core.arith import add
from ..core.csr import CSRMatrix
from ..core.pattern import Pattern
from ..problems.decomposition import Partition

__all__ = ["CoarseSpace", "Nicolaides", "SmoothedNicolaides", "as_coarse_space",
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
    """Base of the coarse spaces: :meth:`basis` gives ``Z`` for a matrix and a partition."""

    def basis(self, A: CSRMatrix, partition: Partition) -> CSRMatrix:  # pragma: no cover
        raise NotImplementedError

    def indicators(self, A: CSRMatrix, partition: Partition) -> CSRMatrix:
        """The indicator of each subdomain's core, in ``A``'s dtype and on its device."""
        pattern = indicator_pattern(partition, A.device)
        return CSRMatrix._from_pattern(pattern, A.values.new_ones(pattern.nnz).detach())


class Nicolaides(CoarseSpace):
    """The Nicolaides coarse space: ``Z``'s column ``i`` is the indicator of the core of
    subdomain ``i`` (the cores partition the nodes, so the columns sum to 1).

    Examples
    --------
    >>> import torch
    >>> from learnsolve.problems import poisson_1d, partition
    >>> from learnsolve.solvers.coarse import Nicolaides
    >>> p = poisson_1d(6, dtype=torch.float64)
    >>> Nicolaides().basis(p.A, partition(p, 2, method="bfs")).to_dense()
    tensor([[1., 0.],
            [1., 0.],
            [1., 0.],
            [0., 1.],
            [0., 1.],
            [0., 1.]], dtype=torch.float64)
    """

    def basis(self, A: CSRMatrix, partition: Partition) -> CSRMatrix:
        return self.indicators(A, partition)


class SmoothedNicolaides(CoarseSpace):
    """The Nicolaides space smoothed by damped Jacobi: ``Z_k = (I - omega_k D^{-1} A)
    Z_{k-1}``, ``Z_0`` the core indicators, ``D = diag(A)``.

    Parameters
    ----------
    steps : int
        The smoothing steps (each widens a column by one layer of neighbours).
    omega : float
        The damping of every step (2/3: damped Jacobi's classical weight).
    learnable : bool
        Make the weights ``omega_k`` (one per step) ``nn.Parameter``\\ s, trained with
        the rest of the preconditioner (``pcg_loss``, ``gmres_loss``).

    Notes
    -----
    ``Z`` is built by sparse products (``A Z`` is an SpGEMM whose pattern is
    cached), so it is differentiable in ``A.values`` and in the weights. The
    scale of ``A`` cancels in ``D^{-1} A``: the space is the same for ``c A``.

    Examples
    --------
    >>> import torch
    >>> from learnsolve.problems import poisson_1d, partition
    >>> from learnsolve.solvers.coarse import SmoothedNicolaides
    >>> p = poisson_1d(6, dtype=torch.float64)
    >>> Z = SmoothedNicolaides(omega=0.5).basis(p.A, partition(p, 2, method="bfs"))
    >>> Z.to_dense()[:, 0]                      # the first core's indicator, smoothed
    tensor([0.7500, 1.0000, 0.7500, 0.2500, 0.0000, 0.0000], dtype=torch.float64)
    """

    def __init__(self, steps: int = 1, omega: float = 2.0 / 3.0, *, learnable: bool = False):
        super().__init__()
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
            raise ValueError(f"steps: expected an integer >= 1, got {steps!r}")
        if isinstance(omega, bool) or not isinstance(omega, (int, float)) or not 0 < omega < 2:
            raise ValueError(f"omega: expected a number in (0, 2), got {omega!r}")
        if not isinstance(learnable, bool):
            raise TypeError(f"learnable: expected a bool, got {type(learnable).__name__}")
        weights = torch.full((steps,), float(omega), dtype=torch.float64)
        if learnable:
            self.omega = nn.Parameter(weights)
        else:
            self.register_buffer("omega", weights)

    def basis(self, A: CSRMatrix, partition: Partition) -> CSRMatrix:
        Z = self.indicators(A, partition)
        inverse_diagonal = A.diagonal().reciprocal()
        for omega in self.omega.to(A.dtype):
            AZ = A @ Z
            scaled = AZ.with_values(AZ.values * inverse_diagonal[AZ.row_indices()])
            Z = add(Z, scaled, 1.0, -omega)
        return Z

    def extra_repr(self) -> str:
        return f"omega={[round(float(w), 4) for w in self.omega.detach()]}"


#: The coarse spaces :class:`~learnsolve.solvers.RAS` takes by name.
COARSE_SPACES = {"nicolaides": Nicolaides, "smoothed": SmoothedNicolaides}


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
