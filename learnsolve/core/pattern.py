"""The structure of a CSR matrix and what is computed once from it.

Matrices that share a pattern (``A.with_values(v)``, ``A.detach()``, the
result of ``alpha * A``) share one :class:`Pattern`, and with it the caches:
the row index of each entry, the transpose permutation, the symbolic products,
unions and intersections with other patterns. A cache entry keyed by another
pattern lives as long as both patterns do.
"""
from __future__ import annotations

import weakref
from typing import Callable

import torch

from ._ops import ops

__all__ = ["Pattern"]


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

    def cached(self, key, compute: Callable):
        """Return ``compute()``, computed on the first call for ``key``.

        Computed outside inference mode even when called inside it: a cached
        index array must be usable by a later call that records gradients
        (autograd refuses to save inference tensors).
        """
        if key not in self._cache:
            with torch.inference_mode(False):
                self._cache[key] = compute()
        return self._cache[key]

    def cached_with(self, other: "Pattern", key, compute: Callable):
        """Like :meth:`cached`, for a result that depends on another pattern too."""
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
        if self.shape[1] > torch.iinfo(torch.int32).max:
            return self.col
        return self.cached("col32", lambda: self.col.to(torch.int32))

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
