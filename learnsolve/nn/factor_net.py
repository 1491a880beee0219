"""A graph network from a sparse SPD matrix to the values of an incomplete factor.

:class:`FactorNet` reads the graph of a matrix (a node per unknown, an edge per
stored entry) through scale-free features only, so that one set of weights
applies to a matrix of any size and to ``c A`` as to ``A``:

* edges: the scaled entry ``a_ij / sqrt(a_ii a_jj)`` and the entry of a
  reference factor of the scaled matrix at that position (IC(k)'s, mirrored to
  both triangles; 0 where it has none);
* nodes: the scaled row sum ``sum_j a_ij / a_ii`` (nonzero next to a
  Dirichlet boundary), the off-diagonal mass ``sum_{j != i} |a_ij| / a_ii``
  (above 1 where the row is not diagonally dominant) and ``log`` of the degree.

It encodes them, runs rounds of :class:`~learnsolve.nn.interface.MessagePassing`
(learnsolve's sparse product and torch's ``index_add``; no other graph
library) and decodes one number per stored entry. What the numbers mean is up
to its user: :class:`~learnsolve.solvers.NeuralFactor` turns them into a
bounded correction of IC(k) (PreCorrector) or into the factor itself
(NeuralIF). A block-diagonal matrix of several problems is one graph: the
network's output on it is the outputs on each block, so a batch of problems
is one call.
"""
from __future__ import annotations

import torch
from torch import nn

from ..core.csr import CSRMatrix
from ..core.validation import check_count
from .interface import MessagePassing, _graph, _mlp

__all__ = ["FactorNet"]

#: Features per node and per edge that :class:`FactorNet` reads.
NODE_FEATURES, EDGE_FEATURES = 3, 2


class FactorNet(nn.Module):
    """Message passing on the graph of ``A``, one output per stored entry.

    Parameters
    ----------
    hidden : int
        The width of the node and edge features.
    layers : int
        Rounds of message passing (0: each entry sees only its own features
        and those of its two nodes).

    Examples
    --------
    >>> import torch
    >>> from learnsolve.nn import FactorNet
    >>> from learnsolve.problems import poisson_2d
    >>> net = FactorNet(hidden=8, layers=2).double()
    >>> A = poisson_2d(6, dtype=torch.float64).A
    >>> reference = torch.zeros(A.nnz, dtype=torch.float64)
    >>> out = net(A, reference)
    >>> out.shape == (A.nnz,), bool(torch.allclose(net(441 * A, reference), out))
    (True, True)
    """

    def __init__(self, hidden: int = 16, layers: int = 2):
        super().__init__()
        self.hidden = check_count(hidden, "hidden")
        self.layers = check_count(layers, "layers", 0)
        self.encode_node = _mlp(NODE_FEATURES, self.hidden, self.hidden)
        self.encode_edge = _mlp(EDGE_FEATURES, self.hidden, self.hidden)
        self.rounds = nn.ModuleList(MessagePassing(self.hidden) for _ in range(self.layers))
        self.decode = _mlp(3 * self.hidden, self.hidden, 1)

    def features(self, A: CSRMatrix, reference: torch.Tensor
                 ) -> tuple[torch.Tensor, torch.Tensor, CSRMatrix]:
        """``(node features (n, 3), edge features (nnz, 2), the scaled matrix)`` in
        the network's dtype, detached from ``A``."""
        dtype = self.encode_node[0].weight.dtype
        row = A.row_indices()
        values = A.values.detach().to(dtype)
        diagonal = A.diagonal().detach().to(dtype)
        if not bool((diagonal > 0).all()):
            raise ValueError("A: expected a positive diagonal (the features scale by it)")
        scaled = values / torch.sqrt(diagonal[row] * diagonal[A.col_indices])
        S = CSRMatrix.from_pattern(A.pattern, scaled)
        off_diagonal = A.col_indices != row
        row_sum = torch.zeros_like(diagonal).index_add(0, row, values) / diagonal
        mass = torch.zeros_like(diagonal).index_add(
            0, row, torch.where(off_diagonal, scaled.abs(), 0))
        degree = A.crow_indices.diff().clamp(min=1).to(dtype)
        nodes = torch.stack([row_sum, mass, torch.log(degree)], dim=1)
        edges = torch.stack([scaled, reference.detach().to(dtype)], dim=1)
        return nodes, edges, S

    def forward(self, A: CSRMatrix, reference: torch.Tensor) -> torch.Tensor:
        """The network's number for each stored entry of ``A`` (``nnz``, in the
        network's dtype).

        Parameters
        ----------
        A : CSRMatrix
            Square, positive diagonal.
        reference : Tensor (nnz,)
            A reference factor's entry at each stored entry (see the module
            docstring), in A's storage order.
        """
        if not isinstance(A, CSRMatrix) or A.shape[0] != A.shape[1]:
            raise ValueError(f"A: expected a square CSRMatrix, got {getattr(A, 'shape', A)}")
        if not isinstance(reference, torch.Tensor) or reference.shape != (A.nnz,):
            raise ValueError(f"reference: expected a tensor of shape ({A.nnz},), got "
                             f"{getattr(reference, 'shape', type(reference).__name__)}")
        row, inverse_degree, _ = _graph(A.pattern)
        nodes, edges, S = self.features(A, reference)
        h, e = self.encode_node(nodes), self.encode_edge(edges)
        inverse_degree = inverse_degree.to(h.dtype)
        for layer in self.rounds:
            h, e = layer(h, e, S, row, inverse_degree)
        col = A.col_indices
        return self.decode(torch.cat([h[row] + h[col], h[row] * h[col], e], dim=1))[:, 0]

    def extra_repr(self) -> str:
        return f"hidden={self.hidden}, layers={self.layers}"
