"""Graphs for node classification and timing that need no download.

* :class:`GraphData`: a graph (adjacency as a :class:`~learnsolve.CSRMatrix`),
  node features, labels and train/validation/test masks.
* :func:`stochastic_block_model`: a planted-partition graph whose classes are
  the blocks, with noisy one-hot features: node classification with a known
  answer, where the graph carries information the features alone lack.
* :func:`random_graph`: an undirected graph of a given size and mean degree
  (the paper's timing graphs have about 5 edges per node).

The Planetoid citation graphs (Cora, CiteSeer, PubMed) are read from local
files by :func:`~learnsolve.nn.load_planetoid`.

All generators are vectorised (no Python loop over nodes or node pairs) and
seeded: the same arguments give the same graph on every machine.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch

from ..core import validation as V
from ..core.construct import from_coo
from ..core.csr import CSRMatrix

__all__ = ["GraphData", "stochastic_block_model", "random_graph", "split_masks"]


@dataclass
class GraphData:
    """A graph with node features, labels and a train/validation/test split.

    Attributes
    ----------
    adjacency : CSRMatrix
        ``(nodes, nodes)``; entry ``(i, j)`` is the weight of the edge between
        ``j`` and ``i`` (symmetric for an undirected graph).
    features : Tensor
        ``(nodes, num_features)``, the adjacency's dtype and device.
    labels : Tensor
        ``(nodes,)`` int64 class of each node, in ``[0, num_classes)``.
    train_mask, val_mask, test_mask : Tensor
        ``(nodes,)`` bool, disjoint.
    num_classes : int
    name : str
    """

    adjacency: CSRMatrix
    features: torch.Tensor
    labels: torch.Tensor
    train_mask: torch.Tensor
    val_mask: torch.Tensor
    test_mask: torch.Tensor
    num_classes: int
    name: str = ""

    @property
    def num_nodes(self) -> int:
        return self.adjacency.shape[0]

    @property
    def num_features(self) -> int:
        return self.features.shape[1]

    @property
    def num_edges(self) -> int:
        """Stored entries of the adjacency (each undirected edge counts twice)."""
        return self.adjacency.nnz

    def to(self, device=None, dtype: torch.dtype | None = None) -> "GraphData":
        """A copy on another device and/or with another float dtype (masks and
        labels keep theirs).

        Examples
        --------
        >>> import torch
        >>> from learnsolve.nn import stochastic_block_model
        >>> data = stochastic_block_model(200, 2, num_val=50, num_test=50)
        >>> data.to(dtype=torch.float64).features.dtype
        torch.float64
        """
        adjacency = self.adjacency.to(*(x for x in (device, dtype) if x is not None))
        move = dict(device=adjacency.device)
        return dataclasses.replace(
            self, adjacency=adjacency,
            features=self.features.to(dtype=adjacency.dtype, **move),
            labels=self.labels.to(**move), train_mask=self.train_mask.to(**move),
            val_mask=self.val_mask.to(**move), test_mask=self.test_mask.to(**move))

    def __repr__(self) -> str:
        return (f"GraphData({self.name + ', ' if self.name else ''}nodes={self.num_nodes}, "
                f"edges={self.num_edges}, features={self.num_features}, "
                f"classes={self.num_classes}, train/val/test="
                f"{int(self.train_mask.sum())}/{int(self.val_mask.sum())}/"
                f"{int(self.test_mask.sum())}, dtype={self.adjacency.dtype}, "
                f"device={self.adjacency.device})")


# ----------------------------------------------------------------------------- helpers

def _positive_int(value, name: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name}: expected an integer >= {minimum}, got {value!r}")
    return value


def _non_negative(value, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (
            math.isfinite(value) and value >= 0):
        raise ValueError(f"{name}: expected a finite number >= 0, got {value!r}")
    return float(value)


def _float_dtype(dtype) -> torch.dtype:
    dtype = torch.get_default_dtype() if dtype is None else dtype
    if dtype not in V.FLOAT_DTYPES:
        raise TypeError(f"dtype: expected float32 or float64, got {dtype}")
    return dtype


def _undirected(i: torch.Tensor, j: torch.Tensor, n: int, dtype, device) -> CSRMatrix:
    """The symmetric 0/1 adjacency with edges ``{i, j}`` (duplicates merged)."""
    key = torch.unique(torch.cat([i * n + j, j * n + i]))
    values = torch.ones(key.shape[0], dtype=dtype)
    adjacency = from_coo(key // n, key % n, values, (n, n))
    return adjacency if device is None else adjacency.to(device)


def split_masks(labels: torch.Tensor, num_classes: int, *, train_per_class: int = 20,
                num_val: int = 500, num_test: int = 1000,
                generator: torch.Generator | None = None):
    """Random disjoint masks: ``train_per_class`` nodes of each class for
    training, then ``num_val`` and ``num_test`` of the rest (Planetoid's sizes).

    Returns
    -------
    (train_mask, val_mask, test_mask) : bool tensors like ``labels``

    Raises
    ------
    ValueError
        A class with fewer than ``train_per_class`` nodes, or fewer nodes left
        than ``num_val + num_test``.

    Examples
    --------
    >>> import torch
    >>> from learnsolve.nn import split_masks
    >>> train, val, test = split_masks(torch.arange(12) % 3, 3, train_per_class=2,
    ...                                num_val=3, num_test=3)
    >>> int(train.sum()), int(val.sum()), int(test.sum()), bool((train & test).any())
    (6, 3, 3, False)
    """
    n = labels.shape[0]
    train_per_class = _positive_int(train_per_class, "train_per_class", 0)
    num_val = _positive_int(num_val, "num_val", 0)
    num_test = _positive_int(num_test, "num_test", 0)
    cpu_labels = labels.cpu()
    sizes = torch.bincount(cpu_labels, minlength=num_classes)
    if num_classes and int(sizes.min()) < train_per_class:
        small = int(sizes.argmin())
        raise ValueError(f"train_per_class: class {small} has only {int(sizes[small])} nodes, "
                         f"fewer than train_per_class = {train_per_class}")
    rest = n - num_classes * train_per_class
    if rest < num_val + num_test:
        raise ValueError(f"num_val, num_test: {num_val} + {num_test} nodes asked for, but only "
                         f"{rest} of {n} are left after {train_per_class} per class for "
                         f"training")
    order = torch.randperm(n, generator=generator)
    by_class = order[torch.sort(cpu_labels[order], stable=True).indices]  # random within class
    starts = torch.cat([sizes.new_zeros(1), sizes.cumsum(0)[:-1]])
    rank = torch.arange(n) - starts[cpu_labels[by_class]]
    train = torch.zeros(n, dtype=torch.bool)
    train[by_class[rank < train_per_class]] = True
    others = order[~train[order]]
    val = torch.zeros(n, dtype=torch.bool)
    val[others[:num_val]] = True
    test = torch.zeros(n, dtype=torch.bool)
    test[others[num_val:num_val + num_test]] = True
    return tuple(mask.to(labels.device) for mask in (train, val, test))


# ----------------------------------------------------------------------------- generators

def random_graph(num_nodes: int, mean_degree: float = 5.0, *, seed: int = 0,
                 dtype: torch.dtype | None = None, device=None) -> CSRMatrix:
    """An undirected random graph (Erdős–Rényi, G(n, m)) with a given mean degree.

    Parameters
    ----------
    num_nodes : int
    mean_degree : float, default 5.0
        Expected neighbours per node: the adjacency stores about
        ``num_nodes * mean_degree`` entries (each edge twice). The paper's
        timing graphs have about 5.
    seed : int, default 0
    dtype, device
        Of the values (all ones); dtype defaults to torch's default.

    Returns
    -------
    CSRMatrix
        Symmetric, no self loops, unit weights.

    Notes
    -----
    ``m`` ordered pairs ``(i, j != i)`` are drawn uniformly, which makes each
    unordered pair equally likely; repeated pairs merge. ``m`` is chosen so
    that the expected number of distinct edges is ``E = n d / 2`` out of ``N =
    n (n - 1) / 2``: ``m = log(1 - E/N) / log(1 - 1/N)``.

    Examples
    --------
    >>> from learnsolve.nn import random_graph
    >>> A = random_graph(10_000, mean_degree=5, seed=0)
    >>> round(A.nnz / A.shape[0], 1)
    5.0
    """
    n = _positive_int(num_nodes, "num_nodes")
    d = _non_negative(mean_degree, "mean_degree")
    if d > n - 1:
        raise ValueError(f"mean_degree: expected at most num_nodes - 1 = {n - 1}, got {d}")
    dtype = _float_dtype(dtype)
    pairs = n * (n - 1) / 2
    edges = n * d / 2
    if edges >= pairs - 0.5:  # the complete graph
        i, j = torch.triu_indices(n, n, offset=1)
        return _undirected(i, j, n, dtype, device)
    draws = 0 if edges == 0 else round(math.log1p(-edges / pairs) / math.log1p(-1 / pairs))
    generator = torch.Generator().manual_seed(seed)
    i = torch.randint(n, (draws,), generator=generator)
    j = (i + 1 + torch.randint(max(n - 1, 1), (draws,), generator=generator)) % n
    return _undirected(i, j, n, dtype, device)


def stochastic_block_model(num_nodes: int = 2000, num_classes: int = 4, *,
                           degree_in: float = 4.0, degree_out: float = 1.0,
                           num_features: int | None = None, noise: float = 1.0,
                           train_per_class: int = 20, num_val: int = 500, num_test: int = 1000,
                           seed: int = 0, dtype: torch.dtype | None = None,
                           device=None) -> GraphData:
    """A stochastic block model whose blocks are the classes, with noisy features.

    Node classification with a known answer: a node's features are its
    class's one-hot vector plus Gaussian noise, and its neighbours are mostly
    of its own class, so averaging over neighbours (a graph convolution)
    removes noise that a per-node classifier cannot.

    Parameters
    ----------
    num_nodes, num_classes : int
        Blocks of equal size (within one node), nodes in random order.
    degree_in, degree_out : float
        Expected neighbours of a node inside its block and outside it:
        ``p_in = degree_in / (s - 1)``, ``p_out = degree_out / (n - s)`` for
        block size ``s`` (each must come out at most 1).
    num_features : int, optional
        At least ``num_classes``; default ``num_classes``. Column ``c < C`` is
        the signal of class ``c``, the others are pure noise.
    noise : float, default 1.0
        Standard deviation of the Gaussian noise on every feature.
    train_per_class, num_val, num_test : int
        The split, drawn at random (:func:`split_masks`).
    seed : int, default 0
        Seeds the graph, the features and the split.
    dtype, device
        Of the adjacency and the features.

    Returns
    -------
    GraphData
        Symmetric 0/1 adjacency without self loops, features, labels, masks.

    Notes
    -----
    For each pair of blocks ``a <= b`` the number of edge draws is binomial
    (the number of node pairs, ``p``), and the endpoints are drawn uniformly
    in the two blocks, all pairs at once; a rare repeated pair merges, so the
    realised degrees fall short of the expected ones by about ``p / 2`` of
    them.

    Examples
    --------
    >>> from learnsolve.nn import stochastic_block_model
    >>> data = stochastic_block_model(1000, 4, num_val=200, num_test=400, seed=0)
    >>> data.num_nodes, data.num_classes, int(data.train_mask.sum())
    (1000, 4, 80)
    >>> A = data.adjacency
    >>> bool((A.to_dense() == A.to_dense().T).all())
    True
    """
    n = _positive_int(num_nodes, "num_nodes")
    k = _positive_int(num_classes, "num_classes")
    if k > n:
        raise ValueError(f"num_classes: expected at most num_nodes = {n}, got {k}")
    degree_in = _non_negative(degree_in, "degree_in")
    degree_out = _non_negative(degree_out, "degree_out")
    noise = _non_negative(noise, "noise")
    num_features = k if num_features is None else _positive_int(num_features, "num_features")
    if num_features < k:
        raise ValueError(f"num_features: expected at least num_classes = {k}, got "
                         f"{num_features}")
    dtype = _float_dtype(dtype)
    generator = torch.Generator().manual_seed(seed)

    sizes = torch.full((k,), n // k, dtype=torch.long)
    sizes[: n % k] += 1
    starts = torch.cat([sizes.new_zeros(1), sizes.cumsum(0)[:-1]])
    mean_size = n / k
    p_in = degree_in / (mean_size - 1) if mean_size > 1 else 0.0
    p_out = degree_out / (n - mean_size) if k > 1 else 0.0
    for name, p in (("degree_in", p_in), ("degree_out", p_out)):
        if p > 1:
            raise ValueError(f"{name}: too large for blocks of {mean_size:.0f} nodes (edge "
                             f"probability {p:.3g} > 1)")

    # every pair of blocks (a, b), a <= b, with its number of node pairs and probability
    a, b = torch.triu_indices(k, k)
    same = a == b
    size_a, size_b = sizes[a].double(), sizes[b].double()
    pairs = torch.where(same, size_a * (size_a - 1) / 2, size_a * size_b)
    p = torch.where(same, torch.tensor(p_in, dtype=torch.float64),
                    torch.tensor(p_out, dtype=torch.float64))
    counts = torch.binomial(pairs, p, generator=generator).long()
    total = int(counts.sum())
    block_a = torch.repeat_interleave(a, counts, output_size=total)
    block_b = torch.repeat_interleave(b, counts, output_size=total)
    within = block_a == block_b
    u = torch.rand(total, generator=generator, dtype=torch.float64)
    v = torch.rand(total, generator=generator, dtype=torch.float64)
    offset_i = (u * sizes[block_a]).long()
    # inside a block the second endpoint is one of the other s - 1 nodes
    span_j = torch.where(within, sizes[block_b] - 1, sizes[block_b]).clamp_min(1)
    offset_j = (v * span_j).long()
    offset_j = torch.where(within, (offset_i + 1 + offset_j) % sizes[block_b], offset_j)
    i = starts[block_a] + offset_i
    j = starts[block_b] + offset_j

    # relabel nodes in random order, so that no structure hides in the numbering
    node = torch.randperm(n, generator=generator)
    block_of = torch.repeat_interleave(torch.arange(k), sizes, output_size=n)
    labels = torch.empty(n, dtype=torch.long)
    labels[node] = block_of
    adjacency = _undirected(node[i], node[j], n, dtype, device)

    features = noise * torch.randn(n, num_features, generator=generator, dtype=torch.float64)
    features[torch.arange(n), labels] += 1.0
    train, val, test = split_masks(labels, k, train_per_class=train_per_class, num_val=num_val,
                                   num_test=num_test, generator=generator)
    return GraphData(adjacency, features.to(dtype=dtype, device=adjacency.device),
                     labels.to(adjacency.device), train.to(adjacency.device),
                     val.to(adjacency.device), test.to(adjacency.device), k,
                     name="stochastic block model")
