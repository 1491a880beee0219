"""A graph network that learns the coarse space of two-level Schwarz (after MG-GNN,
Taghibakhshi et al. 2023, which learns a two-level method's coarse operators).

:class:`CoarseNet` corrects the linear coarse space
(:class:`~learnsolve.solvers.coarse.Linear`: the indicator and the scaled linear
functions of each subdomain's core) node by node,

    Z = Z_linear + diag(alpha_kind) G,

with ``G`` a network's output on ``Z_linear``'s pattern (each node's entries in
the columns of its own subdomain: ``1 + d`` values a node, bounded by ``tanh``)
and one weight ``alpha`` per kind of column (indicators, each coordinate's
linear function) that starts at 0: an untrained network *is* the classical
linear space, and training can only start from it (PreCorrector's construction,
for a coarse space). The node features are scale-free and local: the node's
linear coordinates in its subdomain, whether it lies on its core's boundary,
and its scaled row sum (nonzero next to the physical boundary); message passing
runs on the graph of ``A`` scaled to a unit diagonal. One set of weights serves
any mesh and any number of subdomains.

Measured (``bench/dd_two_level.py``): trained on meshes of at most 2,000 nodes,
it matches the linear space on held-out meshes of similar size but loses to it
on much larger ones (on a 159k-node polygon, GMRES took 34 to 42 iterations
against 12): validate a trained network against ``coarse="linear"`` on the sizes
it will serve before using it.
"""
from __future__ import annotations

import torch
from torch import nn

from ..core.csr import CSRMatrix
from ..problems.decomposition import Partition
from ..core.validation import check_count
from ..solvers.coarse import Linear, Quadratic
from .interface import MessagePassing, _graph, _mlp, scaled_matrix

__all__ = ["CoarseNet", "EnrichmentNet"]


class CoarseNet(Linear):
    """A learned correction of the linear coarse space: use it as ``RAS(coarse=...)``.

    Parameters
    ----------
    hidden : int
        Width of the node and edge features.
    layers : int
        Rounds of message passing.
    steps, omega, learnable_omega
        Damped Jacobi smoothing of the corrected basis (see
        :class:`~learnsolve.solvers.coarse.CoarseSpace`).

    Attributes
    ----------
    alpha : nn.Parameter (1 + d,)
        The weight of the correction of each kind of column; 0 at the start.

    Examples
    --------
    >>> import torch
    >>> from learnsolve.nn import CoarseNet
    >>> from learnsolve.problems import poisson_2d
    >>> from learnsolve.solvers import RAS
    >>> p = poisson_2d(8, dtype=torch.float64).with_partition(4, overlap=1)
    >>> net = CoarseNet(hidden=8, layers=1).double()
    >>> learned, classical = RAS(p, coarse=net), RAS(p, coarse="linear")
    >>> torch.equal(learned.coarse_basis(p.A).to_dense(), classical.coarse_basis(p.A).to_dense())
    True
    """

    def __init__(self, hidden: int = 16, layers: int = 2, *, steps: int = 0,
                 omega: float = 2.0 / 3.0, learnable_omega: bool = False, dimensions: int = 2):
        super().__init__(steps, omega, learnable=learnable_omega)
        hidden = check_count(hidden, "hidden")
        layers = check_count(layers, "layers", 0)
        self.dimensions = check_count(dimensions, "dimensions")
        self.encode_node = _mlp(self.dimensions + 2, hidden, hidden)
        self.encode_edge = _mlp(1, hidden, hidden)
        self.rounds = nn.ModuleList(MessagePassing(hidden) for _ in range(layers))
        self.decode = _mlp(hidden, hidden, self.outputs(self.dimensions))
        self.alpha = nn.Parameter(torch.zeros(self.outputs(self.dimensions)))

    @staticmethod
    def outputs(dimensions: int) -> int:
        """The network's values per node: one per kind of column it corrects."""
        return dimensions + 1

    def correction(self, A: CSRMatrix, partition: Partition, coordinates: torch.Tensor
                   ) -> torch.Tensor:
        """``G``: the network's ``(n, outputs)`` output, in ``(-1, 1)``."""
        Z, kinds = self.linear_basis(A, partition, coordinates)
        return self._correction(A, partition, coordinates, Z, kinds[Z.col_indices])

    def _correction(self, A: CSRMatrix, partition: Partition, coordinates: torch.Tensor,
                    Z: CSRMatrix, entry_kind: torch.Tensor) -> torch.Tensor:
        """:meth:`correction` from the linear basis ``Z`` and the kind of each entry."""
        dtype = self.alpha.dtype
        n = A.shape[0]
        if coordinates.shape[1] != self.dimensions:
            raise ValueError(f"coordinates: expected {self.dimensions}-D coordinates (this "
                             f"CoarseNet's dimensions), got {coordinates.shape[1]}-D")
        row, inverse_degree, _ = _graph(A.pattern)
        col = A.col_indices
        S, row_sum = scaled_matrix(A, row, dtype)
        membership = partition.membership.to(A.device)
        linear = torch.zeros(n, self.dimensions, dtype=dtype, device=A.device)
        is_linear = entry_kind > 0
        linear[Z.row_indices()[is_linear], entry_kind[is_linear] - 1] = \
            Z.values[is_linear].to(dtype)
        crossing = (membership[row] != membership[col]).to(dtype)
        on_boundary = torch.zeros(n, dtype=dtype, device=A.device).index_add(
            0, row, crossing).clamp(max=1)
        nodes = torch.cat([linear, on_boundary[:, None], row_sum[:, None]], dim=1)
        h, e = self.encode_node(nodes), self.encode_edge(S.values[:, None])
        inverse_degree = inverse_degree.to(dtype)
        for layer in self.rounds:
            h, e = layer(h, e, S, row, inverse_degree)
        return torch.tanh(self.decode(h))

    def raw_basis(self, A, partition, coordinates):
        Z, kinds = self.linear_basis(A, partition, coordinates)
        entry_kind = kinds[Z.col_indices]
        G = self._correction(A, partition, coordinates, Z, entry_kind)
        delta = self.alpha[entry_kind] * G[Z.row_indices(), entry_kind]
        return Z.with_values(Z.values + delta.to(A.dtype))

    def extra_repr(self) -> str:
        alpha = [round(float(a), 4) for a in self.alpha.detach()]
        return ", ".join(filter(None, [f"alpha={alpha}", super().extra_repr()]))


class EnrichmentNet(CoarseNet):
    """A learned enrichment of the linear coarse space: use it as ``RAS(coarse=...)``.

    The basis is the linear space's columns, kept as they are, and on each core
    ``d (d + 1) / 2`` more columns (3 in 2D),

        E = project(monomials + G diag(alpha)),

    the quadratic functions of :class:`~learnsolve.solvers.coarse.Quadratic`
    corrected by the network's output ``G`` (the features and message passing of
    :class:`CoarseNet`), with one weight ``alpha`` per column that starts at 0,
    then made independent of the core's constant and linear functions and scaled
    to a unit root mean square on it
    (:meth:`~learnsolve.solvers.coarse.Enrichment.project`).

    Unlike :class:`CoarseNet`, which corrects the indicators and the linear
    functions themselves (and so can lose the global constant and linear modes
    that keep the iterations flat in the number of subdomains), the learned part
    only *adds* to the linear space: with PCG (the balanced variant) the
    effective condition number stays at most the linear space's whatever the
    network outputs, and an untrained network *is* the classical quadratic space.

    Parameters
    ----------
    hidden, layers, steps, omega, learnable_omega, dimensions
        As for :class:`CoarseNet`.

    Examples
    --------
    >>> import torch
    >>> from learnsolve.nn import EnrichmentNet
    >>> from learnsolve.problems import poisson_2d
    >>> from learnsolve.solvers import RAS
    >>> p = poisson_2d(8, dtype=torch.float64).with_partition(4, overlap=1)
    >>> net = EnrichmentNet(hidden=8, layers=1).double()
    >>> learned, classical = RAS(p, coarse=net), RAS(p, coarse="quadratic")
    >>> torch.equal(learned.coarse_basis(p.A).to_dense(), classical.coarse_basis(p.A).to_dense())
    True
    """

    @staticmethod
    def outputs(dimensions: int) -> int:
        return dimensions * (dimensions + 1) // 2

    def raw_basis(self, A, partition, coordinates):
        layout = Quadratic.enrichment(A, partition, coordinates)
        Z = layout.linear
        G = self._correction(A, partition, coordinates, Z, layout.kinds[Z.col_indices])
        return layout.basis(layout.monomials + (G * self.alpha).to(A.dtype))
