"""Graph convolution (Kipf & Welling) on the sparse core: paper section 4.4, eq. 43.

``X' = D̃^{-1/2} Ã D̃^{-1/2} X Θ (+ b)`` with ``Ã`` the adjacency with self loops
and ``D̃`` its row sums. The normalised adjacency ``Â = D̃^{-1/2} Ã D̃^{-1/2}`` is a
:class:`~learnsolve.CSRMatrix` built from the adjacency's values by O(nnz)
gathers (never densely), so the layer is differentiable in ``X``, ``Θ``, ``b``
and the adjacency's stored values, and the gradient of the adjacency has the
adjacency's own sparsity.

What the normalisation computes only once:

* per adjacency *pattern* (cached on the pattern, shared by every matrix with
  that pattern): the pattern of ``Ã`` (the union with the diagonal) and where
  the entries of ``A`` and of the diagonal lie in it; the row index of ``Ã``
  and its transpose permutation (for the backward products) are cached on
  ``Ã``'s pattern by the core;
* per adjacency *values* that do not take part in a gradient (the common case:
  a fixed graph): ``Â`` itself, keyed by the values tensor (identity) and its
  version counter, one entry per pattern and self-loop setting (the latest
  values), so repeated forwards (every epoch, every layer) do no normalisation
  work at all; an in-place change of the values (``A.values.mul_(2)``)
  invalidates it. Writes that bypass the version counter (through ``.data`` or
  a numpy view) are not seen: build a new matrix instead. The cache holds the
  values weakly and lives on the pattern: it never keeps a graph alive.
"""
from __future__ import annotations

import math
import weakref

import torch
from torch import nn
from torch.nn import functional as F

from ..core import validation as V
from ..core._ops import ops
from ..core.arith import add
from ..core.csr import CSRMatrix
from ..core.pattern import Pattern

__all__ = ["gcn_norm", "GCNConv", "GCN"]

SELF_LOOPS = ("remaining", "add", "none")

# Pattern of A -> {(self_loops, fill_value): (weakref to A.values, its version, Â,
# Â.values' version)}; one entry per key (the latest values seen).
_NORMALISED: "weakref.WeakKeyDictionary[Pattern, dict]" = weakref.WeakKeyDictionary()


def _check_adjacency(adjacency, name: str = "adjacency") -> CSRMatrix:
    if not isinstance(adjacency, CSRMatrix):
        raise TypeError(f"{name}: expected a learnsolve.CSRMatrix, got "
                        f"{type(adjacency).__name__} (build one with CSRMatrix.from_coo or "
                        f"CSRMatrix.from_scipy)")
    if adjacency.shape[0] != adjacency.shape[1]:
        raise ValueError(f"{name}: expected a square matrix (nodes x nodes), got shape "
                         f"{adjacency.shape}")
    return adjacency


def _check_self_loops(self_loops: str, fill_value) -> float:
    if self_loops not in SELF_LOOPS:
        raise ValueError(f"self_loops: expected one of {SELF_LOOPS}, got {self_loops!r}")
    fill_value = V.check_scalar(fill_value, "fill_value")
    if isinstance(fill_value, torch.Tensor):
        raise TypeError("fill_value: expected a Python number, got a tensor")
    if not math.isfinite(fill_value):
        raise ValueError(f"fill_value: expected a finite number, got {fill_value}")
    return fill_value


def _diagonal_structure(pattern: Pattern) -> tuple[Pattern, torch.Tensor]:
    """``(pattern of the n x n diagonal, whether A stores (i, i) for each i)``, from
    the pattern's cache.

    The union of A's pattern with the diagonal's (``Pattern.union``, cached on
    the pair), its row index and the column copy the product kernels read are
    made here, outside inference mode: index tensors cached while inference
    mode is on would be inference tensors, which a later backward cannot save.
    """
    with torch.inference_mode(False):
        diagonal = pattern.diagonal()
        union, _, _ = pattern.union(diagonal)
        union.row()
        union.kernel_col()
        return diagonal, pattern.diagonal_positions() >= 0


def _row_index(pattern: Pattern) -> torch.Tensor:
    """``pattern.row()``, made outside inference mode (see :func:`_diagonal_structure`)."""
    with torch.inference_mode(False):
        return pattern.row()


def _with_self_loops(adjacency: CSRMatrix, self_loops: str, fill_value: float) -> CSRMatrix:
    """``Ã``: the adjacency plus ``fill_value`` on the diagonal, where ``self_loops`` says."""
    if self_loops == "none":
        return adjacency
    diagonal, stored = _diagonal_structure(adjacency.pattern)
    values = adjacency.values
    if self_loops == "add":
        loops = torch.full((adjacency.shape[0],), fill_value, dtype=values.dtype,
                           device=values.device)
    else:  # "remaining": only where A stores no diagonal entry
        loops = (~stored).to(values.dtype) * fill_value
    # the union pattern and both merge maps are cached by the core on the pair of patterns
    return add(adjacency, CSRMatrix.from_pattern(diagonal, loops))


def _normalise(adjacency: CSRMatrix, self_loops: str, fill_value: float) -> CSRMatrix:
    tilde = _with_self_loops(adjacency, self_loops, fill_value)
    degree = tilde.row_sum()
    if bool((degree < 0).any()):
        row = int(torch.nonzero(degree < 0)[0])
        raise ValueError(f"adjacency: expected non-negative degrees (row sums of the adjacency "
                         f"with self loops), got {float(degree[row].detach()):.6g} in row {row}; "
                         f"D^(-1/2) is not real")
    positive = degree > 0
    # deg^(-1/2), and 0 for a node without any weight (PyG's convention); the clamp keeps
    # the unused branch finite, so no NaN reaches the gradient
    scale = torch.where(positive, degree.clamp_min(torch.finfo(degree.dtype).tiny).rsqrt(),
                        torch.zeros((), dtype=degree.dtype, device=degree.device))
    pattern = tilde.pattern
    values = (ops.gather_scaled(scale, _row_index(pattern)) * tilde.values
              * ops.gather_scaled(scale, pattern.col))
    return CSRMatrix.from_pattern(pattern, values)


def gcn_norm(adjacency: CSRMatrix, *, self_loops: str = "remaining",
             fill_value: float = 1.0) -> CSRMatrix:
    """The normalised adjacency ``Â = D̃^{-1/2} Ã D̃^{-1/2}`` of a GCN layer (eq. 43).

    ``Ã`` is the adjacency with self loops and ``D̃ = diag(Ã 1)`` its row sums
    (the weighted in-degrees for the message direction of :class:`GCNConv`:
    entry ``(i, j)`` carries node ``j``'s features to node ``i``). Computed on
    the sparse pattern with O(nnz) gathers, differentiable in the adjacency's
    values; the result's pattern is that of ``Ã``.

    Parameters
    ----------
    adjacency : CSRMatrix
        Square, weighted or not (an unweighted graph stores ones). Weights
        may be any real numbers as long as every degree is non-negative.
    self_loops : {"remaining", "add", "none"}, default "remaining"
        ``"remaining"`` (as torch_geometric's ``add_remaining_self_loops``):
        a node whose diagonal entry is stored keeps that weight, every other
        node gets a self loop of weight ``fill_value``. ``"add"``: ``Ã = A +
        fill_value I`` literally (a stored diagonal entry is increased).
        ``"none"``: ``Ã = A``. The three agree on a graph without self loops.
    fill_value : float, default 1.0
        The weight of an added self loop (2.0 gives the "improved" GCN).

    Returns
    -------
    CSRMatrix
        ``Â``, with the adjacency's dtype and device. A node of degree 0 (only
        possible with ``"none"`` or a zero self-loop weight) gets a zero row
        and column, as in torch_geometric.

    Raises
    ------
    TypeError
        ``adjacency`` not a CSRMatrix.
    ValueError
        A non-square adjacency, an unknown ``self_loops``, a negative degree.

    Notes
    -----
    With ``s = d^{-1/2}`` and ``p`` an entry ``(i, j)`` of ``Ã``:
    ``Â_p = s_i ã_p s_j``. With incoming gradient ``G`` on ``Â``'s values,
    ``dã_p = s_i G_p s_j`` and ``ds_i = sum_{p in row i} G_p ã_p s_j + sum_{p
    in column i} G_p ã_p s_r(p)``; ``dd_i = -1/2 d_i^{-3/2} ds_i`` flows back
    to every entry of row ``i`` of ``Ã``, and ``dã`` to the adjacency's values
    through the merge map of ``A + diag`` (a gather). All of it is done by
    autograd over the gathers and the row sum, O(nnz).

    When the adjacency's values take no part in a gradient (they do not
    require grad, or grad mode is off), the result is cached, keyed by the
    values tensor (its identity, not its contents) and its version counter:
    calling again with the same matrix, or another matrix sharing its values
    tensor, returns the same ``Â`` without computing anything. One entry is
    kept per pattern and self-loop setting, for the latest values seen. (On a
    graph of 343 565 nodes and 1.7 million entries the normalisation takes
    about 14 ms on two CPU cores, 19 ms on one, against 3 µs for a hit.)

    Examples
    --------
    >>> import torch, learnsolve
    >>> from learnsolve.nn import gcn_norm
    >>> A = learnsolve.CSRMatrix.from_dense(torch.tensor([[0.0, 1.0], [1.0, 0.0]]))
    >>> gcn_norm(A).to_dense()
    tensor([[0.5000, 0.5000],
            [0.5000, 0.5000]])
    """
    adjacency = _check_adjacency(adjacency)
    fill_value = _check_self_loops(self_loops, fill_value)
    values = adjacency.values
    if torch.is_grad_enabled() and values.requires_grad:
        return _normalise(adjacency, self_loops, fill_value)
    if values.is_inference():  # no version counter to key a cache entry on
        with torch.no_grad():
            return _normalise(adjacency, self_loops, fill_value)
    entries = _NORMALISED.setdefault(adjacency.pattern, {})
    key = (self_loops, fill_value)
    entry = entries.get(key)
    if (entry is not None and entry[0]() is values and entry[1] == values._version
            and entry[3] == entry[2].values._version):
        return entry[2]
    with torch.no_grad():
        result = _normalise(adjacency, self_loops, fill_value)
    if not torch.is_inference_mode_enabled():  # inference tensors cannot serve a backward
        entries[key] = (weakref.ref(values), values._version, result, result.values._version)
    return result


class GCNConv(nn.Module):
    """Graph convolution ``X' = D̃^{-1/2} Ã D̃^{-1/2} X Θ + b`` (paper eq. 43).

    Parameters
    ----------
    in_channels, out_channels : int
        Features per node in and out.
    bias : bool, default True
        Learn an additive bias ``b`` (initialised to zero).
    self_loops : {"remaining", "add", "none"}, default "remaining"
        How ``Ã`` is made from the adjacency; see :func:`gcn_norm`. The
        default matches torch_geometric's ``GCNConv``.
    fill_value : float, default 1.0
        Weight of an added self loop.
    normalize : bool, default True
        ``False`` uses the given matrix as ``Â`` unchanged (for a matrix
        normalised beforehand with :func:`gcn_norm`, or another propagation
        matrix).
    device, dtype
        Of the parameters, as for ``torch.nn.Linear``.

    Attributes
    ----------
    weight : Parameter
        ``Θ^T``, shape ``(out_channels, in_channels)`` as in ``torch.nn.Linear``
        and torch_geometric (``Θ = weight.T``); Glorot-uniform initialised.
        In this layout the weight gradient is ``G^T X``, which reads ``X`` row
        by row: 3 to 11 % faster than ``X^T G`` for ``X Θ`` and its backward
        with 500 to 3703 input features (measured on one CPU thread).
    bias : Parameter or None
        ``b``, shape ``(out_channels,)``.

    Notes
    -----
    ``forward(x, adjacency)`` takes node features ``x`` of shape
    ``(nodes, in_channels)`` and a square :class:`~learnsolve.CSRMatrix`
    adjacency whose entry ``(i, j)`` is the weight of the message from node
    ``j`` to node ``i``, with ``x``'s dtype and device; it returns
    ``(nodes, out_channels)``. The product is taken in the cheaper order:
    ``Â (X Θ)`` when ``out_channels <= in_channels`` (as torch_geometric
    does), ``(Â X) Θ`` otherwise, so the sparse product always has
    ``min(in, out)`` columns. Its backward uses the cached transpose of
    ``Â``'s pattern for ``dX`` and a sampled product on ``Â``'s pattern for
    the adjacency's values (only when they require grad).

    Examples
    --------
    >>> import torch, learnsolve
    >>> from learnsolve.nn import GCNConv, random_graph
    >>> A = random_graph(100, mean_degree=5, seed=0)
    >>> conv = GCNConv(8, 4)
    >>> conv(torch.randn(100, 8), A).shape
    torch.Size([100, 4])
    """

    def __init__(self, in_channels: int, out_channels: int, bias: bool = True, *,
                 self_loops: str = "remaining", fill_value: float = 1.0,
                 normalize: bool = True, device=None, dtype=None):
        super().__init__()
        for name, value in (("in_channels", in_channels), ("out_channels", out_channels)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}: expected a positive integer, got {value!r}")
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.self_loops = self_loops
        self.fill_value = _check_self_loops(self_loops, fill_value)
        self.normalize = bool(normalize)
        factory = dict(device=device, dtype=dtype)
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, **factory))
        self.bias = nn.Parameter(torch.empty(out_channels, **factory)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Glorot-uniform ``Θ`` and zero ``b``, as torch_geometric initialises them."""
        nn.init.xavier_uniform_(self.weight)
        if self.bias is not None:
            nn.init.zeros_(self.bias)

    def _check_input(self, x, adjacency) -> None:
        V.check_tensor(x, "x")
        if x.dim() != 2 or x.shape[1] != self.in_channels:
            raise ValueError(f"x: expected shape (nodes, {self.in_channels}) (in_channels = "
                             f"{self.in_channels}), got {tuple(x.shape)}")
        V.check_same_dtype("the layer's weight", self.weight, "x", x)
        V.check_same_device("the layer's weight", self.weight, "x", x)
        _check_adjacency(adjacency)
        if adjacency.shape[0] != x.shape[0]:
            raise ValueError(f"adjacency: expected {x.shape[0]} x {x.shape[0]} (one row per "
                             f"row of x), got {adjacency.shape}")
        V.check_same_dtype("x", x, "adjacency", adjacency.values)
        V.check_same_device("x", x, "adjacency", adjacency.values)

    def forward(self, x: torch.Tensor, adjacency: CSRMatrix) -> torch.Tensor:
        self._check_input(x, adjacency)
        propagate = (gcn_norm(adjacency, self_loops=self.self_loops, fill_value=self.fill_value)
                     if self.normalize else adjacency)
        if self.out_channels <= self.in_channels:
            out = propagate @ F.linear(x, self.weight)
        else:
            out = F.linear(propagate @ x, self.weight)
        return out if self.bias is None else out + self.bias

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, bias={self.bias is not None}, "
                f"self_loops={self.self_loops!r}, fill_value={self.fill_value}, "
                f"normalize={self.normalize}")


class GCN(nn.Module):
    """Two graph convolutions with ReLU and dropout between: the node classifier
    of Kipf & Welling and of paper section 4.4.

    ``logits = conv2(dropout(relu(conv1(x, A))), A)``; train with
    ``torch.nn.functional.cross_entropy`` on the logits (see
    :func:`~learnsolve.nn.train_node_classifier`).

    Parameters
    ----------
    in_channels, hidden_channels, out_channels : int
        Features in, hidden size (16 in the paper), classes out.
    dropout : float, default 0.5
        Dropout probability between the layers (active in training mode only).
    **conv_kwargs
        Passed to both :class:`GCNConv` (``bias``, ``self_loops``,
        ``fill_value``, ``normalize``, ``device``, ``dtype``).

    Examples
    --------
    >>> import torch
    >>> from learnsolve.nn import GCN, random_graph
    >>> model = GCN(8, 16, 3)
    >>> model(torch.randn(50, 8), random_graph(50, seed=0)).shape
    torch.Size([50, 3])
    """

    def __init__(self, in_channels: int, hidden_channels: int, out_channels: int, *,
                 dropout: float = 0.5, **conv_kwargs):
        super().__init__()
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout: expected a probability in [0, 1), got {dropout!r}")
        self.conv1 = GCNConv(in_channels, hidden_channels, **conv_kwargs)
        self.conv2 = GCNConv(hidden_channels, out_channels, **conv_kwargs)
        self.dropout = nn.Dropout(dropout)

    def reset_parameters(self) -> None:
        self.conv1.reset_parameters()
        self.conv2.reset_parameters()

    def forward(self, x: torch.Tensor, adjacency: CSRMatrix) -> torch.Tensor:
        hidden = self.dropout(torch.relu(self.conv1(x, adjacency)))
        return self.conv2(hidden, adjacency)
