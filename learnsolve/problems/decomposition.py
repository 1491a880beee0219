"""Overlapping domain decompositions for restricted additive Schwarz (paper section 4.5).

:func:`partition` splits the unknowns of a matrix into ``S`` connected
subdomains ``D_i`` of about equal size and grows each by ``delta`` layers of
graph neighbours into ``D_i^delta``. The graph is the symmetrised pattern of
the matrix without its diagonal (stored entries are edges, explicit zeros
included).

Algorithms
----------
``"rcb"``, recursive coordinate bisection (needs coordinates): split the
node set at the weighted median of its longest coordinate extent into two
sets of sizes proportional to the numbers of parts each will hold, and recurse.

``"bfs"``, recursive graph bisection (no coordinates needed): the same
recursion with the order of a breadth-first search from a pseudo-peripheral
node of the induced subgraph (its levels are level sets of graph distance) in
place of a coordinate; the first part, a prefix of a BFS order, is connected.

A geometric split can leave a subdomain in pieces. The repair keeps the
largest connected piece of each subdomain and gives every other piece to the
neighbouring subdomain it shares most edges with, until all are connected
(which they are when the graph is connected: a piece joins a subdomain whose
main piece it touches). All of it is vectorised; one connected-components call
on the whole graph per round.

The overlap grows layer by layer from the nodes of each subdomain that have a
neighbour elsewhere: the neighbours of a frontier are gathered from the CSR
arrays in one vectorised step (the boolean product ``G x`` restricted to the
frontier's rows), so the work per layer is that of the frontier's edges.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch
from scipy.sparse import csgraph

from ..core.csr import CSRMatrix
from ..core.pattern import Pattern
from ..core.validation import check_count
from .problem import Problem

__all__ = ["Partition", "LocalStructure", "partition", "adjacency"]


# ---------------------------------------------------------------------------- graph helpers
def adjacency(A) -> sp.csr_array:
    """The graph of a matrix: its pattern symmetrised, without the diagonal (bool CSR).

    ``A`` is a :class:`CSRMatrix`, a :class:`Problem` or a scipy sparse matrix.

    Examples
    --------
    >>> from learnsolve.problems import poisson_1d
    >>> from learnsolve.problems.decomposition import adjacency
    >>> adjacency(poisson_1d(3)).toarray().astype(int)
    array([[0, 1, 0],
           [1, 0, 1],
           [0, 1, 0]])
    """
    if isinstance(A, Problem):
        A = A.A
    if isinstance(A, CSRMatrix):
        indptr, indices, shape = (A.crow_indices.cpu().numpy(), A.col_indices.cpu().numpy(),
                                  A.shape)
    elif sp.issparse(A):
        S = sp.csr_array(A)
        indptr, indices, shape = S.indptr, S.indices, S.shape
    else:
        raise TypeError(f"A: expected a CSRMatrix, a Problem or a scipy sparse matrix, got "
                        f"{type(A).__name__}")
    if shape[0] != shape[1]:
        raise ValueError(f"A: expected a square matrix, got shape {shape}")
    n = shape[0]
    rows = np.repeat(np.arange(n, dtype=indices.dtype), np.diff(indptr))
    off = rows != indices
    r, c = rows[off], indices[off]
    G = sp.csr_array((np.ones(2 * r.size, dtype=bool), (np.r_[r, c], np.r_[c, r])),
                     shape=(n, n))
    G.sum_duplicates()
    return G


def _neighbours(G: sp.csr_array, nodes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """All neighbours of ``nodes`` (with repetitions) and the position in ``nodes`` of the
    node each comes from: the rows ``G[nodes]`` gathered in one vectorised step."""
    starts = G.indptr[nodes]
    counts = G.indptr[nodes + 1] - starts
    total = int(counts.sum())
    owner = np.repeat(np.arange(nodes.size), counts)
    offsets = np.arange(total) - np.repeat(np.cumsum(counts) - counts, counts)
    return G.indices[np.repeat(starts, counts) + offsets], owner


def _same_part_components(G: sp.csr_array, membership: np.ndarray):
    """Connected components of the graph with the edges between different parts removed."""
    rows = np.repeat(np.arange(G.shape[0]), np.diff(G.indptr))
    keep = membership[rows] == membership[G.indices]
    H = sp.csr_array((np.ones(int(keep.sum()), dtype=bool), (rows[keep], G.indices[keep])),
                     shape=G.shape)
    return csgraph.connected_components(H, directed=False)


def _repair(G: sp.csr_array, membership: np.ndarray, num_parts: int) -> np.ndarray:
    """Move every piece of a subdomain but its largest to the neighbouring subdomain it
    shares most edges with, until each subdomain is connected (or no piece can move)."""
    membership = membership.copy()
    rows = np.repeat(np.arange(G.shape[0]), np.diff(G.indptr))
    for _ in range(G.shape[0]):  # each round moves at least one piece, or stops
        ncomp, label = _same_part_components(G, membership)
        if ncomp == num_parts:
            break
        comp_part = np.empty(ncomp, dtype=np.int64)
        comp_part[label] = membership
        comp_size = np.bincount(label, minlength=ncomp)
        order = np.lexsort((-comp_size, comp_part))          # by part, largest piece first
        main = np.zeros(ncomp, dtype=bool)
        first = np.r_[True, comp_part[order][1:] != comp_part[order][:-1]]
        main[order[first]] = True
        orphan = ~main[label]                                # nodes in a minor piece
        edge = orphan[rows] & ~orphan[G.indices]             # orphan -> node of a main piece
        if not edge.any():
            break                                            # pieces of another graph component
        comp, target = label[rows[edge]], membership[G.indices[edge]]
        pairs, count = np.unique(comp * num_parts + target, return_counts=True)
        comp_of_pair = pairs // num_parts
        best = np.lexsort((-count, comp_of_pair))            # most shared edges first
        take = best[np.r_[True, comp_of_pair[best][1:] != comp_of_pair[best][:-1]]]
        new_part = np.full(ncomp, -1, dtype=np.int64)
        new_part[comp_of_pair[take]] = pairs[take] % num_parts
        move = orphan & (new_part[label] >= 0)
        membership[move] = new_part[label[move]]
    return membership


def _bisect(order_key, nodes: np.ndarray, parts: int, first_id: int, stack: list) -> None:
    """Split ``nodes`` into a prefix and the rest of the order given by ``order_key``,
    sized in proportion to ``parts // 2`` and ``parts - parts // 2`` parts."""
    left = parts // 2
    n_left = int(round(nodes.size * left / parts))
    n_left = min(max(n_left, left), nodes.size - (parts - left))
    order = order_key(nodes, n_left)
    stack.append((nodes[order[:n_left]], left, first_id))
    stack.append((nodes[order[n_left:]], parts - left, first_id + left))


def _recursive(nodes_all: np.ndarray, num_parts: int, order_key) -> np.ndarray:
    membership = np.empty(nodes_all.size, dtype=np.int64)
    stack = [(nodes_all, num_parts, 0)]
    while stack:
        nodes, parts, first_id = stack.pop()
        if parts == 1:
            membership[nodes] = first_id
        else:
            _bisect(order_key, nodes, parts, first_id, stack)
    return membership


def _rcb(coordinates: np.ndarray, num_parts: int) -> np.ndarray:
    def order_key(nodes, n_left):
        x = coordinates[nodes]
        axis = int(np.argmax(x.max(axis=0) - x.min(axis=0)))
        return np.argpartition(x[:, axis], n_left - 1)  # the n_left smallest first
    return _recursive(np.arange(coordinates.shape[0]), num_parts, order_key)


def _bfs_bisection(G: sp.csr_array, num_parts: int) -> np.ndarray:
    def order_key(nodes, n_left):
        H = G[nodes][:, nodes]
        ncomp, label = csgraph.connected_components(H, directed=False)
        if ncomp > 1:  # pieces in order, each in its reverse Cuthill-McKee order
            rcm = csgraph.reverse_cuthill_mckee(sp.csr_matrix(H), symmetric_mode=True)[::-1]
            return rcm[np.argsort(label[rcm], kind="stable")]
        far = csgraph.breadth_first_order(H, 0, directed=False, return_predecessors=False)[-1]
        far = csgraph.breadth_first_order(H, far, directed=False, return_predecessors=False)[-1]
        return csgraph.breadth_first_order(H, far, directed=False, return_predecessors=False)
    return _recursive(np.arange(G.shape[0]), num_parts, order_key)


# ---------------------------------------------------------------------------- Partition
@dataclass(frozen=True, eq=False)
class Partition:
    """Overlapping subdomains of the unknowns ``0..n-1``, as restricted additive Schwarz needs.

    Subdomain ``i`` has core nodes ``parts[i]`` (``D_i``; the cores are
    disjoint and cover every node) and overlapped nodes ``overlapped[i]``
    (``D_i^delta``: the nodes at graph distance at most ``overlap`` from
    ``D_i``), both sorted. Masks over ``overlapped[i]`` tell which of its nodes
    are in the core (the rows kept by the restricted restriction
    ``R~_i``), and which are on its boundary (a neighbour outside
    ``D_i^delta``; the indicator ``d`` of paper eq. 46).

    Attributes
    ----------
    membership : Tensor (n,) int64
        The core subdomain of each node.
    parts, overlapped : list of Tensor (int64)
    core_mask, boundary : list of Tensor (bool)
        Masks over ``overlapped[i]``.
    distance : list of Tensor (int64)
        Graph distance of each node of ``overlapped[i]`` from the core (0 in it).
    overlap : int
        ``delta``, the number of layers.

    Examples
    --------
    >>> import torch
    >>> from learnsolve.problems import poisson_1d, partition
    >>> P = partition(poisson_1d(6), 2, overlap=1, method="bfs")
    >>> [p.tolist() for p in P.parts], [o.tolist() for o in P.overlapped]
    ([[0, 1, 2], [3, 4, 5]], [[0, 1, 2, 3], [2, 3, 4, 5]])
    >>> [b.tolist() for b in P.boundary]
    [[False, False, False, True], [True, False, False, False]]
    >>> R = P.restriction(0, dtype=torch.float64)
    >>> R.shape
    (4, 6)
    """

    membership: torch.Tensor
    parts: list
    overlapped: list
    core_mask: list
    boundary: list
    distance: list
    overlap: int

    @property
    def num_parts(self) -> int:
        return len(self.parts)

    @property
    def num_nodes(self) -> int:
        return self.membership.shape[0]

    @property
    def device(self) -> torch.device:
        return self.membership.device

    @property
    def sizes(self) -> list[int]:
        """Core sizes."""
        return [int(p.numel()) for p in self.parts]

    @property
    def imbalance(self) -> float:
        """Largest core size over the mean core size (1 is perfect balance)."""
        return max(self.sizes) * self.num_parts / self.num_nodes

    def boundary_nodes(self, i: int) -> torch.Tensor:
        """Global indices of the boundary nodes of ``D_i^delta``."""
        return self.overlapped[i][self.boundary[i]]

    def boundary_indicator(self, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """``d`` of paper eq. 46: 1 at nodes on the boundary of some subdomain, else 0."""
        d = torch.zeros(self.num_nodes, dtype=dtype, device=self.device)
        if self.num_parts == 0:
            return d
        return d.index_fill(0, torch.cat(self.overlapped)[torch.cat(self.boundary)], 1)

    def restriction(self, i: int, *, dtype: torch.dtype | None = None) -> CSRMatrix:
        """``R_i^delta``: the ``|D_i^delta| x n`` 0/1 matrix picking the overlapped nodes."""
        cols = self.overlapped[i]
        m = cols.numel()
        crow = torch.arange(m + 1, device=self.device)
        ones = torch.ones(m, dtype=dtype or torch.get_default_dtype(), device=self.device)
        return CSRMatrix(crow, cols, ones, (m, self.num_nodes), check=False)

    def restricted_restriction(self, i: int, *, dtype: torch.dtype | None = None
                               ) -> CSRMatrix:
        """``R~_i^delta``: the shape and row order of ``R_i^delta`` with rows only for the
        core nodes (the rows of the extension are empty)."""
        mask = self.core_mask[i]
        cols = self.overlapped[i][mask]
        crow = torch.cat([mask.new_zeros(1, dtype=torch.int64), mask.long().cumsum(0)])
        ones = torch.ones(cols.numel(), dtype=dtype or torch.get_default_dtype(),
                          device=self.device)
        return CSRMatrix(crow, cols, ones, (mask.numel(), self.num_nodes), check=False)

    def local_matrices(self, A: CSRMatrix) -> list[CSRMatrix]:
        """``A_i = R_i A R_i^T`` for every subdomain, differentiable in ``A.values``.

        All of them are one gather of the stored values of ``A`` (no product is
        formed); where those values lie, and the patterns of the ``A_i``, are
        found once per pattern of ``A`` (with scipy, vectorised over the
        subdomains) and cached on the partition.
        """
        structure = self.local_structure(A)
        values = torch.split(A.values[structure.positions], structure.counts)
        return [CSRMatrix.from_pattern(pattern, v)
                for pattern, v in zip(structure.patterns, values)]

    def local_structure(self, A: CSRMatrix) -> "LocalStructure":
        """Where the local matrices ``A_i`` lie in ``A`` (see :class:`LocalStructure`),
        computed once per pattern of ``A`` and partition (cached on the pattern)."""
        if not isinstance(A, CSRMatrix):
            raise TypeError(f"A: expected a CSRMatrix, got {type(A).__name__}")
        if A.shape != (self.num_nodes, self.num_nodes):
            raise ValueError(f"A: expected shape {(self.num_nodes, self.num_nodes)}, got "
                             f"{A.shape}")
        return A.pattern.cached_with(self, "local_structure", lambda: _local_structure(self, A))

    def to(self, device) -> "Partition":
        """A copy with its tensors on ``device`` (``self`` if they are there already)."""
        if torch.device(device) == self.device:
            return self
        def move(ts):
            return [t.to(device) for t in ts]
        return dataclasses.replace(
            self, membership=self.membership.to(device), parts=move(self.parts),
            overlapped=move(self.overlapped), core_mask=move(self.core_mask),
            boundary=move(self.boundary), distance=move(self.distance))

    @classmethod
    def from_membership(cls, A, membership, overlap: int = 1) -> "Partition":
        """The partition with the given core subdomain of each node, grown by ``overlap``
        layers. ``membership`` holds ids ``0..S-1``, each used at least once.

        Examples
        --------
        >>> from learnsolve.problems import Partition, poisson_1d
        >>> P = Partition.from_membership(poisson_1d(4), [0, 0, 1, 1], overlap=0)
        >>> [b.tolist() for b in P.boundary]
        [[False, True], [True, False]]
        """
        G = adjacency(A)
        membership = np.asarray(membership.cpu() if isinstance(membership, torch.Tensor)
                                else membership)
        n = G.shape[0]
        if membership.shape != (n,) or not np.issubdtype(membership.dtype, np.integer):
            raise ValueError(f"membership: expected an integer array of shape ({n},), got "
                             f"{membership.dtype} {membership.shape}")
        overlap = check_count(overlap, "overlap", 0)
        num_parts = int(membership.max()) + 1 if n else 0
        counts = np.bincount(membership, minlength=num_parts) if n else np.zeros(0, int)
        if n and (membership.min() < 0 or (counts == 0).any()):
            raise ValueError(f"membership: expected subdomain ids 0..S-1, each used; got ids "
                             f"{membership.min()}..{membership.max()} with "
                             f"{int((counts == 0).sum())} unused")
        return _grow(G, membership.astype(np.int64), num_parts, overlap).to(_device_of(A))


@dataclass(frozen=True)
class LocalStructure:
    """The local matrices ``A_i = R_i A R_i^T`` of a partition stacked into one
    block-diagonal matrix ``diag(A_1, ..., A_S)``, as positions in ``A``.

    Attributes
    ----------
    stacked : Pattern
        The pattern of the block-diagonal matrix, of order ``sum(|D_i^delta|)``.
    positions : Tensor (int64)
        For each of its entries, the position of that entry in ``A.values``:
        ``A.values[positions]`` are its values.
    patterns : list of Pattern
        The pattern of each block ``A_i``.
    counts : list of int
        The entries of each block.
    """

    stacked: Pattern
    positions: torch.Tensor
    patterns: list
    counts: list


def _local_structure(P: Partition, A: CSRMatrix) -> LocalStructure:
    """One product ``R ids R^T`` for all subdomains at once, with ``R`` stacking
    the restrictions ``R_i`` and ``ids`` the matrix of A's pattern whose values
    are the entries' positions + 1 (each entry of the product is a single
    term, never a cancelled sum); the entries between two subdomains are
    dropped, which leaves the blocks ``R_i A R_i^T`` on the diagonal.
    """
    sizes = np.array([nodes.numel() for nodes in P.overlapped], dtype=np.int64)
    offsets = np.r_[0, np.cumsum(sizes)]
    nodes = torch.cat(P.overlapped).cpu().numpy() if len(sizes) else np.zeros(0, np.int64)
    block = np.repeat(np.arange(sizes.size), sizes)
    ids = sp.csr_array((np.arange(1, A.nnz + 1, dtype=np.int64), A.col_indices.cpu().numpy(),
                        A.crow_indices.cpu().numpy()), shape=A.shape)
    R = sp.csr_array((np.ones(nodes.size, dtype=np.int64), (np.arange(nodes.size), nodes)),
                     shape=(nodes.size, A.shape[0]))
    product = sp.coo_array(R @ ids @ R.T)
    keep = block[product.row] == block[product.col]
    local = sp.csr_array((product.data[keep], (product.row[keep], product.col[keep])),
                         shape=product.shape)
    local.sort_indices()
    indptr = torch.from_numpy(local.indptr.astype(np.int64))
    col = torch.from_numpy(local.indices.astype(np.int64))
    starts = indptr[offsets]
    patterns = []
    for i, (size, offset) in enumerate(zip(sizes.tolist(), offsets.tolist())):
        crow = indptr[offset:offset + size + 1] - starts[i]
        entries = col[starts[i]:starts[i + 1]] - offset
        patterns.append(Pattern(crow.to(A.device), entries.to(A.device), (size, size)))
    stacked = Pattern(indptr.to(A.device), col.to(A.device), local.shape)
    positions = torch.from_numpy(local.data - 1).to(A.device)
    return LocalStructure(stacked, positions, patterns, (starts[1:] - starts[:-1]).tolist())


def _grow(G: sp.csr_array, membership: np.ndarray, num_parts: int, overlap: int) -> Partition:
    n = G.shape[0]
    rows = np.repeat(np.arange(n), np.diff(G.indptr))
    interface = np.zeros(n, dtype=bool)
    interface[rows[membership[rows] != membership[G.indices]]] = True
    order = np.argsort(membership, kind="stable")
    bounds = np.r_[0, np.cumsum(np.bincount(membership, minlength=num_parts))]
    inside = np.zeros(n, dtype=bool)
    parts, overlapped, core_mask, boundary, distance = [], [], [], [], []
    for i in range(num_parts):
        core = order[bounds[i]:bounds[i + 1]]               # sorted: stable argsort
        inside[core] = True
        layers, frontier = [core], core[interface[core]]
        for _ in range(overlap):
            nb, _owner = _neighbours(G, frontier)
            frontier = np.unique(nb[~inside[nb]])
            inside[frontier] = True
            layers.append(frontier)
        nodes = np.concatenate(layers)
        dist = np.repeat(np.arange(len(layers)), [layer.size for layer in layers])
        sort = np.argsort(nodes, kind="stable")
        nodes, dist = nodes[sort], dist[sort]
        # the boundary lies in the outermost layer: nodes closer have all neighbours inside
        last = layers[-1]
        nb, owner = _neighbours(G, last)
        out = np.bincount(owner[~inside[nb]], minlength=last.size) > 0
        bmask = np.zeros(nodes.size, dtype=bool)
        bmask[np.searchsorted(nodes, last[out])] = True
        inside[nodes] = False
        parts.append(torch.from_numpy(core.astype(np.int64)))
        overlapped.append(torch.from_numpy(nodes.astype(np.int64)))
        core_mask.append(torch.from_numpy(dist == 0))
        boundary.append(torch.from_numpy(bmask))
        distance.append(torch.from_numpy(dist.astype(np.int64)))
    return Partition(torch.from_numpy(membership), parts, overlapped, core_mask, boundary,
                     distance, overlap)


def partition(A, num_parts: int, overlap: int = 1, *, coordinates=None,
              method: str = "auto") -> Partition:
    """Split the unknowns of ``A`` into ``num_parts`` connected subdomains, overlapped by
    ``overlap`` layers of graph neighbours.

    Parameters
    ----------
    A : Problem, CSRMatrix or scipy sparse matrix
        Its pattern (symmetrised) is the graph. A problem also gives its
        coordinates.
    num_parts : int
        ``S``, between 1 and the number of nodes.
    overlap : int
        ``delta >= 0``.
    coordinates : array or Tensor (n, d), optional
        Node coordinates for ``"rcb"`` (default: the problem's).
    method : {"auto", "rcb", "bfs"}
        ``"auto"``: ``"rcb"`` with coordinates, ``"bfs"`` without. See the
        module docstring.

    Returns
    -------
    Partition
        On the device of ``A``. Subdomains are connected when the graph is; on a
        disconnected graph a subdomain may hold pieces of several components.

    Examples
    --------
    >>> from learnsolve.problems import poisson_2d, partition
    >>> P = partition(poisson_2d(10), 4, overlap=2)
    >>> P.sizes, P.imbalance
    ([25, 25, 25, 25], 1.0)
    """
    if coordinates is None and isinstance(A, Problem):
        coordinates = A.coordinates
    G = adjacency(A)
    n = G.shape[0]
    num_parts = check_count(num_parts, "num_parts")
    if num_parts > n:
        raise ValueError(f"num_parts: expected at most {n} subdomains (the number of nodes), "
                         f"got {num_parts}")
    overlap = check_count(overlap, "overlap", 0)
    if method not in ("auto", "rcb", "bfs"):
        raise ValueError(f"method: expected 'auto', 'rcb' or 'bfs', got {method!r}")
    if method == "auto":
        method = "rcb" if coordinates is not None else "bfs"
    if method == "rcb":
        if coordinates is None:
            raise ValueError("coordinates: method 'rcb' needs node coordinates; pass "
                             "coordinates or use method='bfs'")
        x = np.asarray(coordinates.detach().cpu() if isinstance(coordinates, torch.Tensor)
                       else coordinates, dtype=np.float64)
        if x.ndim != 2 or x.shape[0] != n:
            raise ValueError(f"coordinates: expected shape ({n}, d), got {x.shape}")
        if not np.isfinite(x).all():
            raise ValueError("coordinates: expected finite values")
        membership = _rcb(x, num_parts)
    else:
        membership = _bfs_bisection(G, num_parts)
    membership = _repair(G, membership, num_parts)
    result = _grow(G, membership, num_parts, overlap)
    return result.to(_device_of(A))


def _device_of(A) -> torch.device:
    return A.device if isinstance(A, (Problem, CSRMatrix)) else torch.device("cpu")
