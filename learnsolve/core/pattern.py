"""The structure of a CSR matrix and what is computed once from it.

Matrices that share a pattern (``A.with_values(v)``, ``A.detach()``, the
result of ``alpha * A``) share one :class:`Pattern` (``A.pattern``), and with
it the caches. Everything the library derives from a structure alone is a
named method of :class:`Pattern`, computed on its first call and kept:

==========================  ==================================================
``row()``                   the row index of every stored entry
``kernel_col()``            the int32 column copy the product kernels read
``transpose()``             the transposed pattern and the value permutation
``diagonal()``              the pattern of the n x n identity
``diagonal_positions()``    where each row's diagonal entry is stored (or -1)
``stores_diagonal()``       whether every row stores its diagonal entry
``is_symmetric()``          whether the pattern equals its transpose
``triangular_levels(lo)``   the level schedule of a triangular solve
``level_of_fill(k)``        the ILU(k) pattern and where the entries sit in it
``ordering(method)``        a permutation of the unknowns (reverse Cuthill-McKee)
``product(other)``          the pattern of ``A @ B`` (symbolic SpGEMM)
``union(other)``            the pattern of ``A + B`` and both merge maps
``intersection(other)``     the pattern of ``A * B`` and both entry lists
``select(key, keep)``       a sub-pattern of kept entries
==========================  ==================================================

Layers above ``core`` cache what they derive from a structure (a graph
network's normalised adjacency, a domain decomposition's local blocks) with
:meth:`Pattern.cached` / :meth:`Pattern.cached_with` under a key that names
them. A cache entry keyed by another object (a pattern, a partition) lives as
long as both do. What depends on a matrix's *values* (a factorisation, a
check) is kept by a :class:`~learnsolve.core.cache.MatrixCache` instead.
"""
from __future__ import annotations

import numbers
import weakref
from typing import Callable

import numpy as np
import scipy.sparse as sp
import torch
from scipy.sparse.csgraph import connected_components, reverse_cuthill_mckee

from ._ops import ops

__all__ = ["Pattern", "ORDERINGS"]

#: The largest column count whose indices the product kernels read as int32.
_INT32_MAX = torch.iinfo(torch.int32).max

#: The orderings :meth:`Pattern.ordering` computes: None keeps the unknowns as they are.
ORDERINGS = (None, "rcm")


def _rcm_by_component(graph: sp.csr_matrix) -> np.ndarray:
    """Reverse Cuthill-McKee of each connected component of ``graph`` as if it were alone
    (scipy's on one component; its tie-breaks depend on the whole graph), the components
    in the order of their first nodes, a lone node left where it is. One scipy call per
    component of more than one node (lone nodes cost no Python step)."""
    count, labels = connected_components(graph, directed=False)
    if count == 1:
        return reverse_cuthill_mckee(graph, symmetric_mode=False).astype(np.int64)
    first = np.full(count, graph.shape[0], dtype=np.int64)
    np.minimum.at(first, labels, np.arange(graph.shape[0]))
    rank = np.empty(count, dtype=np.int64)
    rank[np.argsort(first, kind="stable")] = np.arange(count)    # components by first node
    perm = np.argsort(rank[labels], kind="stable").astype(np.int64)  # ascending within
    sizes = np.bincount(rank[labels], minlength=count)
    bounds = np.concatenate(([0], np.cumsum(sizes)))
    for c in np.flatnonzero(sizes > 1):
        members = perm[bounds[c]:bounds[c + 1]]
        perm[bounds[c]:bounds[c + 1]] = members[reverse_cuthill_mckee(
            graph[members][:, members], symmetric_mode=False)]
    return perm


class Pattern:
    """Canonical CSR structure: int64 ``crow`` (rows + 1), sorted, duplicate-free ``col``."""

    __slots__ = ("crow", "col", "shape", "_cache", "_pair_cache", "__weakref__")

    def __init__(self, crow: torch.Tensor, col: torch.Tensor, shape: tuple[int, int]):
        self.crow = crow
        self.col = col
        self.shape = shape
        self._cache: dict = {}
        self._pair_cache: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    @classmethod
    def checked(cls, crow: torch.Tensor, col: torch.Tensor, shape: tuple[int, int], *,
                names: tuple[str, str] = ("crow_indices", "col_indices")) -> "Pattern":
        """A pattern of index arrays from outside (a loaded state, a user's arrays):
        canonical form and bounds checked first (ValueError naming ``names``)."""
        from .validation import check_csr_arrays
        check_csr_arrays(crow, col, None, shape, names=names)
        return cls(crow, col, shape)

    def __reduce__(self):
        # Pickled (and deep-copied) as its arrays: the caches are rebuilt on demand.
        return (Pattern, (self.crow, self.col, self.shape))

    @property
    def nnz(self) -> int:
        return self.col.shape[0]

    @property
    def device(self) -> torch.device:
        return self.col.device

    def clear_cache(self) -> None:
        """Drop everything cached on this pattern (recomputed on demand); a pattern
        that cached this one as its transpose or product keeps its own entry."""
        self._cache.clear()
        self._pair_cache = weakref.WeakKeyDictionary()

    def cached(self, key, compute: Callable):
        """Return ``compute()``, computed on the first call for ``key``: how a layer
        above ``core`` keeps what it derives from this structure (key: a string or
        tuple that names the layer, e.g. ``"gcn_diagonal"``).

        Computed outside inference mode even when called inside it: a cached
        index array must be usable by a later call that records gradients
        (autograd refuses to save inference tensors).
        """
        if key not in self._cache:
            with torch.inference_mode(False):
                self._cache[key] = compute()
        return self._cache[key]

    def cached_with(self, other, key, compute: Callable):
        """Like :meth:`cached`, for a result that depends on another object too (a
        pattern, a partition: anything weakly referenceable, compared by
        identity); the entry lives as long as both do."""
        entries = self._pair_cache.setdefault(other, {})
        if key not in entries:
            with torch.inference_mode(False):
                entries[key] = compute()
        return entries[key]

    def row(self) -> torch.Tensor:
        """The row index of every stored entry (int64, nnz)."""
        return self.cached("row", lambda: torch.repeat_interleave(
            torch.arange(self.shape[0], device=self.device), self.crow.diff(),
            output_size=self.nnz))

    def kernel_col(self) -> torch.Tensor:
        """The column indices as the product kernels read them: an int32 copy,
        cached, where the columns fit (a quarter less memory traffic in the
        memory-bound products), else ``col`` itself."""
        if self.shape[1] > _INT32_MAX:
            return self.col
        return self.cached("col32", lambda: self.col.to(torch.int32))

    def diagonal(self) -> "Pattern":
        """The pattern of the ``n x n`` identity (a square pattern's diagonal), cached:
        the one object, so that unions with it are cached too."""
        def compute():
            n = self.shape[0]
            return Pattern(torch.arange(n + 1, device=self.device),
                           torch.arange(n, device=self.device), (n, n))
        return self.cached("diagonal", compute)

    def diagonal_positions(self) -> torch.Tensor:
        """The position among the stored entries of each row's diagonal entry, -1 for
        a row that stores none (int64, rows), cached."""
        def compute():
            row = self.row()
            on_diagonal = torch.nonzero(self.col == row).flatten()
            position = torch.full((self.shape[0],), -1, dtype=torch.long, device=self.device)
            position[row[on_diagonal]] = on_diagonal
            return position
        return self.cached("diagonal_positions", compute)

    def stores_diagonal(self) -> bool:
        """Whether every row stores its diagonal entry, cached (no transfer after
        the first call)."""
        return self.cached("stores_diagonal", lambda: bool((self.diagonal_positions() >= 0).all()))

    def is_symmetric(self) -> bool:
        """Whether the pattern equals that of its transpose (structural symmetry)."""
        def compute():
            t, _ = self.transpose()
            return t is self or (torch.equal(t.crow, self.crow) and torch.equal(t.col, self.col))
        return self.cached("is_symmetric", compute)

    def triangular_levels(self, lower: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(level_ptr, level_rows, diag)`` of the lower (upper) triangle of a square
        pattern, cached: rows of one level depend only on rows of earlier levels;
        ``diag`` holds the position of each row's diagonal entry, or -1 where none
        is stored. The transposed solve walks the same levels backwards."""
        return self.cached(("triangular_levels", bool(lower)),
                           lambda: ops.sptrsv_analysis(self.crow, self.col, bool(lower)))

    def _check_square(self) -> None:
        if self.shape[0] != self.shape[1]:
            raise ValueError(f"pattern: expected a square pattern, got shape {self.shape}")

    def level_of_fill(self, level: int) -> tuple["Pattern", torch.Tensor]:
        """``(fill, positions)``: the pattern of an ILU(``level``) factorisation of
        this square pattern and the position in it of each stored entry, cached.

        The symbolic phase of ILU(k) (Saad, *Iterative Methods for Sparse Linear
        Systems*, 2nd ed., section 10.3.3): an entry of the matrix has level 0,
        eliminating row ``k`` from row ``i`` gives ``(i, j)`` the level
        ``lev(i, k) + lev(k, j) + 1`` (the smallest over the ``k`` that reach
        it), and the entries of level ``<= level`` are kept. ``level=0`` is the
        pattern itself; the diagonal is always included. Computed on the CPU
        (``learnsolve::iluk_symbolic``, row by row) and moved to the pattern's
        device. The lower triangle of the result is the pattern of IC(``level``)
        for a structurally symmetric pattern.
        """
        if isinstance(level, bool) or not isinstance(level, numbers.Integral) or level < 0:
            raise ValueError(f"level: expected an integer >= 0, got {level!r}")
        level = int(level)
        self._check_square()

        def compute():
            crow, col = ops.iluk_symbolic(self.crow.cpu(), self.col.cpu(), level)
            crow, col = crow.to(self.device), col.to(self.device)
            # The fill pattern contains this one: their union is the fill pattern,
            # and the merge's map of the first operand gives the positions.
            _, _, positions, _ = ops.csr_merge(self.crow, self.col, crow, col, False)
            return Pattern(crow, col, self.shape), positions
        return self.cached(("level_of_fill", level), compute)

    def ordering(self, method: str | None) -> torch.Tensor | None:
        """The permutation ``perm`` (new position -> old index) of this square
        pattern's unknowns by ``method`` (one of :data:`ORDERINGS`), cached; None
        for ``method=None``.

        ``"rcm"``: reverse Cuthill-McKee (scipy's, on the pattern of ``A + A^T``),
        which gathers the entries near the diagonal. An incomplete factorisation
        depends on the order of the unknowns; that of a mesh generator can
        scatter neighbours far apart (the P1 matrix of an L-shaped mesh of 5,000
        nodes has a bandwidth of 5,000, 89 after RCM), and IC(0) in such an
        order is a weaker preconditioner. The connected components keep their
        order (that of their first unknowns), each ordered as it would be alone:
        the ordering of a block-diagonal batch of matrices is that of each of
        them, so a batch is factored as its problems are one by one.
        """
        if method not in ORDERINGS:
            raise ValueError(f"ordering: expected one of {ORDERINGS}, got {method!r}")
        if method is None:
            return None
        self._check_square()

        def compute():
            graph = sp.csr_matrix((np.ones(self.nnz), self.col.cpu().numpy(),
                                   self.crow.cpu().numpy()), shape=self.shape)
            return torch.from_numpy(_rcm_by_component(graph)).to(self.device)
        return self.cached(("ordering", method), compute)

    def transpose(self) -> tuple["Pattern", torch.Tensor]:
        """``(pattern of A^T, perm)`` with ``values(A^T) = values(A)[perm]``.

        The transposed pattern refers back to this one weakly (a strong link
        both ways would be a reference cycle, which keeps large arrays alive
        until the garbage collector runs): while this pattern lives,
        ``A.T.T`` shares it and its caches, at the cost of one inverse
        permutation.
        """
        if "transpose" in self._cache:
            return self._cache["transpose"]
        origin = self._cache.get("transpose_of")
        original = origin[0]() if origin is not None else None
        if original is not None:
            if origin[2] is None:
                with torch.inference_mode(False):  # cached: see cached()
                    inverse = torch.empty_like(origin[1])
                    inverse[origin[1]] = torch.arange(self.nnz, device=self.device)
                self._cache["transpose_of"] = origin = (origin[0], origin[1], inverse)
            return original, origin[2]
        with torch.inference_mode(False):  # cached: see cached()
            t_crow, t_col, perm = ops.transpose(self.crow, self.col, self.shape[1])
        t = Pattern(t_crow, t_col, (self.shape[1], self.shape[0]))
        t._cache["transpose_of"] = (weakref.ref(self), perm, None)
        self._cache["transpose"] = (t, perm)
        return t, perm

    def transpose_arrays(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(t_crow, t_col, t_perm)`` as the native ops take them."""
        t, perm = self.transpose()
        return t.crow, t.col, perm

    def product(self, other: "Pattern") -> "Pattern":
        """Pattern of ``A @ B`` (the symbolic phase of SpGEMM), cached."""
        def compute():
            crow, col = ops.spgemm_symbolic(self.crow, self.col, other.crow, other.col,
                                            other.shape[1])
            return Pattern(crow, col, (self.shape[0], other.shape[1]))
        return self.cached_with(other, "product", compute)

    def union(self, other: "Pattern") -> tuple["Pattern", torch.Tensor, torch.Tensor]:
        """``(pattern of A + B, position of each entry of A in it, same for B)``, cached."""
        def compute():
            crow, col, map_a, map_b = ops.csr_merge(self.crow, self.col, other.crow, other.col,
                                                    False)
            return Pattern(crow, col, self.shape), map_a, map_b
        return self.cached_with(other, "union", compute)

    def intersection(self, other: "Pattern") -> tuple["Pattern", torch.Tensor, torch.Tensor]:
        """``(pattern of A ⊙ B, entries of A in it, entries of B in it)``, cached.

        The two index arrays list, in the result's order, the positions in A
        and in B of the result's entries.
        """
        def compute():
            crow, col, map_a, map_b = ops.csr_merge(self.crow, self.col, other.crow, other.col,
                                                    True)
            return (Pattern(crow, col, self.shape), torch.nonzero(map_a >= 0).flatten(),
                    torch.nonzero(map_b >= 0).flatten())
        return self.cached_with(other, "intersection", compute)

    def select(self, key, keep: Callable[[], torch.Tensor]) -> tuple["Pattern", torch.Tensor]:
        """``(pattern of the kept entries, their positions)``, cached by ``key``.

        ``keep()`` returns a boolean mask over the stored entries; it is called
        only the first time.
        """
        def compute():
            index = torch.nonzero(keep()).flatten()
            counts = torch.zeros(self.shape[0], dtype=torch.long, device=self.device)
            counts.index_add_(0, self.row()[index], torch.ones_like(index))
            crow = torch.cat([counts.new_zeros(1), counts.cumsum(0)])
            return Pattern(crow, self.col[index], self.shape), index
        return self.cached(key, compute)

    def to(self, device: torch.device) -> "Pattern":
        """This pattern on another device (a new pattern, caches not carried over)."""
        if torch.device(device) == self.device:
            return self
        return Pattern(self.crow.to(device), self.col.to(device), self.shape)
