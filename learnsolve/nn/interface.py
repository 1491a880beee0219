"""A graph network that outputs interface conditions for domain decomposition (paper
section 4.5, eqs. 45-47, after Taghibakhshi et al.'s network).

The graph is that of the matrix: a node per unknown, an edge per stored entry
(the diagonal included). :class:`InterfaceNet` reads

* edge features from the matrix values, ``a_ij / sqrt(a_ii a_jj)`` (the
  matrix scaled to a unit diagonal), and from the node coordinates, the
  offset ``(x_j - x_i) / h`` and its length (``h`` the mean edge length):
  translation and scale invariant, so a network trained on small domains
  applies to larger ones of another shape;
* node features: the subdomain-boundary indicator ``d`` (eq. 46), the
  coupling ``s_i / a_ii`` of a boundary node to the nodes its subdomain
  leaves out (:meth:`~learnsolve.solvers.schwarz.Subdomains.boundary_coupling`:
  ``d`` weighted by what the Dirichlet condition cuts, which a single global
  ``L^`` cannot infer from ``d`` alone), and the scaled row sum
  ``sum_j a_ij / a_ii`` (nonzero next to the physical boundary);

encodes them, runs rounds of message passing, and decodes one value per
stored entry, a matrix ``W`` with ``mask(W) = mask(A)`` (symmetric where the
pattern is), which gives each subdomain's ``L_i`` on its boundary nodes:

    L_i = -diag(beta_k s_k^(i)) + sum_{boundary edges kl of D_i^delta} w_kl (e_k - e_l)(e_k - e_l)^T

with ``beta_k = sigmoid(W_kk)`` in (0, 1), ``s_k^(i)`` the coupling of ``k``
to the nodes outside ``D_i^delta``
(:meth:`~learnsolve.solvers.schwarz.Subdomains.outside_coupling`) and
``w_kl = softplus(W_kl) |a_kl|``. The first term is a Robin condition per
node (``beta = 0`` Dirichlet, ``beta -> 1`` Neumann); the second a
tangential second-order term along the interface (as optimised Schwarz
methods' Ventcell conditions). This is the paper's ``L^`` masked per
subdomain, written so that ``A_i + L_i`` stays symmetric positive definite
for a symmetric M-matrix ``A`` (diagonally dominant rows stay so, and a
weighted graph Laplacian is positive semidefinite) whatever the network
outputs: a free ``L^`` trains on a loss surface with cliffs where a
subdomain matrix turns singular, and steps off them. The output layer starts
at ``W = -3`` (``beta, w/|a| ~ 0.05``): an untrained network is close to
classical restricted additive Schwarz.

Message passing is built on learnsolve's sparse product (the scaled matrix
applied to the node features, differentiable) and torch's ``index_add``
(the sum of the edge messages into their rows); no other graph library.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from ..core.csr import CSRMatrix
from ..core.pattern import Pattern
from ..core.validation import check_count
from ..solvers.factor import diagonal_positions

__all__ = ["InterfaceNet", "MessagePassing"]


def _mlp(inputs: int, hidden: int, outputs: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(inputs, hidden), nn.LayerNorm(hidden), nn.ReLU(),
                         nn.Linear(hidden, outputs))

#: The output an untrained network gives: sigmoid(-3) = softplus(-3) = 0.05 or so.
INITIAL_OUTPUT = -3.0


def _graph(pattern: Pattern):
    """``(row, 1 / degree, transpose permutation or None)`` of a pattern, cached on it:
    the permutation only where the pattern is symmetric (then ``L^`` is made symmetric)."""
    def compute():
        row = pattern.row()
        degree = pattern.crow.diff().clamp(min=1)
        _, perm = pattern.transpose()
        return row, 1.0 / degree, perm if pattern.is_symmetric() else None
    return pattern.cached("interface_graph", compute)


def scaled_matrix(A: CSRMatrix, row: torch.Tensor, dtype: torch.dtype
                  ) -> tuple[CSRMatrix, torch.Tensor]:
    """``A`` scaled to a unit diagonal, ``a_ij / sqrt(a_ii a_jj)`` (detached, in
    ``dtype``), and the scaled row sums ``sum_j a_ij / a_ii`` (nonzero next to the
    physical boundary): the scale-free view of the matrix the networks read.
    ``row`` is the row of every stored entry. ValueError for a diagonal entry <= 0."""
    values = A.values.detach().to(dtype)
    diagonal = A.diagonal().detach().to(dtype)
    if bool((diagonal <= 0).any()):
        raise ValueError("A: expected a positive diagonal (the features scale by it)")
    scaled = values / torch.sqrt(diagonal[row] * diagonal[A.col_indices])
    row_sum = CSRMatrix.from_pattern(A.pattern, values).row_sum() / diagonal
    return CSRMatrix.from_pattern(A.pattern, scaled), row_sum


class MessagePassing(nn.Module):
    """One round of message passing on the graph of a matrix.

    Edge update ``m_ij = phi_e([h_i, h_j, e_ij])``, ``e_ij <- e_ij + m_ij``;
    node update ``h_i <- h_i + phi_v([h_i, mean_j m_ij, (S h)_i])`` with ``S``
    the scaled matrix (a learnsolve sparse product).

    Parameters
    ----------
    hidden : int
        The width of the node and edge features.
    """

    def __init__(self, hidden: int):
        super().__init__()
        self.edge = _mlp(3 * hidden, hidden, hidden)
        self.node = _mlp(3 * hidden, hidden, hidden)

    def forward(self, h: torch.Tensor, e: torch.Tensor, S: CSRMatrix, row: torch.Tensor,
                inverse_degree: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        message = self.edge(torch.cat([h[row], h[S.col_indices], e], dim=1))
        mean = torch.zeros_like(h).index_add(0, row, message) * inverse_degree[:, None]
        h = h + self.node(torch.cat([h, mean, S @ h], dim=1))
        return h, e + message


class InterfaceNet(nn.Module):
    """Learned interface conditions: a graph network from ``(A, coordinates, d)`` to ``L^``.

    Use it as the ``interface`` of :class:`~learnsolve.solvers.RAS`.

    Parameters
    ----------
    hidden : int
        Width of the node and edge features.
    layers : int
        Rounds of message passing.
    coordinates : bool
        Read the node coordinates (as edge offsets); a problem without
        coordinates is then refused. False: the matrix and ``d`` only.

    Examples
    --------
    >>> import torch
    >>> from learnsolve.nn import InterfaceNet
    >>> from learnsolve.problems import poisson_2d
    >>> from learnsolve.solvers import RAS
    >>> p = poisson_2d(8, dtype=torch.float64).with_partition(2, overlap=1)
    >>> net = InterfaceNet(hidden=8, layers=2).double()
    >>> ras = RAS(p, interface=net)
    >>> L = net(ras.subdomains(p.A))            # the stacked values of the L_i
    >>> L.shape == ras.local_matrices(p.A).values.shape
    True
    >>> abs(ras.convergence_factor(p.A) - RAS(p).convergence_factor(p.A)) < 0.05
    True
    """

    def __init__(self, hidden: int = 32, layers: int = 3, *, coordinates: bool = True):
        super().__init__()
        hidden = check_count(hidden, "hidden")
        layers = check_count(layers, "layers", 0)
        if not isinstance(coordinates, bool):
            raise TypeError(f"coordinates: expected a bool, got {type(coordinates).__name__}")
        self.uses_coordinates = coordinates
        edge_inputs = 4 if coordinates else 1
        self.encode_node = _mlp(3, hidden, hidden)
        self.encode_edge = _mlp(edge_inputs, hidden, hidden)
        self.rounds = nn.ModuleList(MessagePassing(hidden) for _ in range(layers))
        self.decode = _mlp(3 * hidden, hidden, 1)
        nn.init.zeros_(self.decode[-1].weight)
        nn.init.constant_(self.decode[-1].bias, INITIAL_OUTPUT)

    def _features(self, A: CSRMatrix, coordinates, d: torch.Tensor, coupling: torch.Tensor,
                  row: torch.Tensor):
        dtype = self.encode_node[0].weight.dtype
        S, row_sum = scaled_matrix(A, row, dtype)
        diagonal = A.diagonal().detach().to(dtype)
        col = A.col_indices
        nodes = torch.stack([d.to(dtype), coupling.detach().to(dtype) / diagonal, row_sum],
                            dim=1)
        edges = [S.values[:, None]]
        if self.uses_coordinates:
            if coordinates is None:
                raise ValueError("coordinates: this InterfaceNet reads node coordinates and "
                                 "the problem has none (build it with coordinates=False)")
            x = coordinates.detach().to(dtype)
            offset = x[col] - x[row]
            if offset.shape[1] != 2:
                raise ValueError(f"coordinates: expected 2-D coordinates, got "
                                 f"{offset.shape[1]}-D")
            length = torch.linalg.vector_norm(offset, dim=1)
            h = length[length > 0].mean() if bool((length > 0).any()) else length.new_ones(())
            edges += [offset / h, (length / h)[:, None]]
        return nodes, torch.cat(edges, dim=1), S

    def output(self, A: CSRMatrix, coordinates: torch.Tensor | None, d: torch.Tensor,
               coupling: torch.Tensor) -> torch.Tensor:
        """The network's matrix ``W`` on A's pattern (``nnz`` values, A's dtype).

        Parameters
        ----------
        A : CSRMatrix
            Square, with a positive diagonal.
        coordinates : Tensor (n, 2) or None
        d : Tensor (n,)
            The subdomain-boundary indicator (eq. 46).
        coupling : Tensor (n,)
            The coupling of each boundary node to the outside of its
            subdomain (0 elsewhere).
        """
        if not isinstance(A, CSRMatrix) or A.shape[0] != A.shape[1]:
            raise ValueError(f"A: expected a square CSRMatrix, got {getattr(A, 'shape', A)}")
        for name, value in (("d", d), ("coupling", coupling)):
            if value.shape != (A.shape[0],):
                raise ValueError(f"{name}: expected shape ({A.shape[0]},), got "
                                 f"{tuple(value.shape)}")
        row, inverse_degree, perm = _graph(A.pattern)
        nodes, edges, S = self._features(A, coordinates, d, coupling, row)
        h, e = self.encode_node(nodes), self.encode_edge(edges)
        inverse_degree = inverse_degree.to(h.dtype)
        for layer in self.rounds:
            h, e = layer(h, e, S, row, inverse_degree)
        col = A.col_indices
        out = self.decode(torch.cat([h[row] + h[col], h[row] * h[col], e], dim=1))[:, 0]
        if perm is not None:
            out = 0.5 * (out + out[perm])
        return out.to(A.dtype)

    def _output(self, sub) -> tuple[torch.Tensor, torch.Tensor]:
        """The stacked outside coupling of ``sub`` and the network's ``W`` on A's pattern."""
        outside = sub.outside_coupling()
        return outside, self.output(sub.A, sub.coordinates, sub.boundary_indicator,
                                    sub.boundary_coupling(outside))

    def robin_weights(self, sub) -> torch.Tensor:
        """The Robin weight ``beta_k = sigmoid(W_kk)`` the network gives each node (n,),
        in (0, 1): on the boundary of subdomain ``i`` the row of ``L_i`` sums to
        ``-beta_k s_k^(i)``. Only the nodes on a subdomain boundary (``d_k = 1``) use it.

        Examples
        --------
        >>> import torch
        >>> from learnsolve.nn import InterfaceNet
        >>> from learnsolve.problems import poisson_2d
        >>> from learnsolve.solvers import RAS
        >>> problem = poisson_2d(8, dtype=torch.float64).with_partition(4, overlap=1)
        >>> net = InterfaceNet(hidden=8, layers=1).double()
        >>> sub = RAS(problem, interface=net).subdomains(problem.A)
        >>> beta = net.robin_weights(sub)
        >>> beta.shape, bool(((beta > 0) & (beta < 1)).all())
        (torch.Size([64]), True)
        """
        _, W = self._output(sub)
        return torch.sigmoid(W[diagonal_positions(sub.A, "sub.A")])

    def forward(self, sub) -> torch.Tensor:
        """The stacked values of the ``L_i`` for the subdomains ``sub`` (a
        :class:`~learnsolve.solvers.schwarz.Subdomains`), from :meth:`output`."""
        outside, W = self._output(sub)
        W = W[sub.local.positions]
        rows, cols = sub.rows, sub.local.stacked.col
        diagonal = rows == cols
        tangential = sub.boundary_entries & ~diagonal
        weight = torch.where(tangential, F.softplus(W) * sub.A.values[sub.local.positions].abs(),
                             0)
        laplacian = torch.zeros(sub.nodes.numel(), dtype=W.dtype, device=W.device).index_add(
            0, rows, weight)
        robin = torch.sigmoid(W) * outside[rows]
        return torch.where(sub.boundary_entries & diagonal, laplacian[rows] - robin, -weight)

    def extra_repr(self) -> str:
        return f"coordinates={self.uses_coordinates}"
