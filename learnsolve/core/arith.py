"""Differentiable algebra on CSRMatrix: products, sums, scaling, triangles.

Each function checks its operands (shape, dtype, device) and calls the native
ops of :mod:`learnsolve.core._ops`, whose autograd formulas give gradients with
the pattern of the matrix they belong to.
"""
from __future__ import annotations

import functools
import numbers

import torch

from . import validation as V
from ._ops import ops
from .csr import CSRMatrix

__all__ = ["matmul", "add", "multiply", "scale", "sampled_matmul", "diagonal", "triangle"]


def _needs_transpose(x: torch.Tensor) -> bool:
    """Whether a backward pass will ask for A^T times a gradient."""
    return torch.is_grad_enabled() and x.requires_grad


def _check_operand(A: CSRMatrix, x, left: bool) -> None:
    """Check a dense operand ``x`` of ``A @ x`` (or of ``x @ A`` when ``left``)."""
    if not isinstance(x, torch.Tensor):
        expected = "a torch.Tensor" if left else "a torch.Tensor or a CSRMatrix"
        raise TypeError(f"matmul: expected the {'left' if left else 'right'} operand to be "
                        f"{expected}, got {type(x).__name__}")
    V.check_same_dtype("the matrix", A.values, "x", x)
    V.check_same_device("the matrix", A.values, "x", x)
    if x.dim() not in (1, 2):
        raise ValueError(f"x: expected a 1-D or 2-D tensor, got shape {tuple(x.shape)}")
    length, needed, what, of = ((x.shape[-1], A.shape[0], "columns", "rows") if left
                                else (x.shape[0], A.shape[1], "rows", "columns"))
    if length != needed:
        raise ValueError(f"x: expected {needed} {what} (the {of} of the {A.shape[0]}x"
                         f"{A.shape[1]} matrix), got shape {tuple(x.shape)}")


def matmul(A: CSRMatrix, other):
    """``A @ x`` (x 1-D), ``A @ X`` (X dense 2-D) or ``A @ B`` (B a CSRMatrix).

    Notes
    -----
    For ``y = A x`` with incoming gradient ``v``: ``dA = (v x^T) ⊙ mask(A)``
    (a sampled product, never dense) and ``dx = A^T v`` (a product with the
    cached transpose). For ``C = A B`` with incoming gradient ``G`` (pattern of
    C): ``dA = (G B^T) ⊙ mask(A)`` and ``dB = (A^T G) ⊙ mask(B)``, each computed
    only on its mask.

    Examples
    --------
    >>> import torch, learnsolve
    >>> A = learnsolve.diags([[-1.0, -1.0], [2.0, 2.0, 2.0], [-1.0, -1.0]], [-1, 0, 1])
    >>> A @ torch.ones(3)
    tensor([1., 0., 1.])
    >>> (A @ A).to_dense()[0]
    tensor([ 5., -4.,  1.])
    """
    if isinstance(other, CSRMatrix):
        return _spgemm(A, other)
    _check_operand(A, other, left=False)
    product = ops.spmv if other.dim() == 1 else ops.spmm
    if _needs_transpose(other):
        return product(A.crow_indices, A.pattern.kernel_col(), A.values, other,
                       *A.pattern.transpose_arrays())
    return product(A.crow_indices, A.pattern.kernel_col(), A.values, other)


def rmatmul(x: torch.Tensor, A: CSRMatrix) -> torch.Tensor:
    """``x @ A`` for dense x (1-D, or 2-D with rows as vectors): ``A^T`` applied
    through the cached transpose, with no copy of A's values."""
    _check_operand(A, x, left=True)
    transposed = A.pattern.transpose_arrays()
    col = A.pattern.kernel_col()
    if x.dim() == 1:
        return ops.spmv(A.crow_indices, col, A.values, x, *transposed, True)
    return ops.spmm(A.crow_indices, col, A.values, x.T, *transposed, True).T


def _spgemm(A: CSRMatrix, B: CSRMatrix) -> CSRMatrix:
    if A.shape[1] != B.shape[0]:
        raise ValueError(f"matmul: expected B with {A.shape[1]} rows (the columns of A), got "
                         f"shapes {A.shape} and {B.shape}")
    V.check_same_dtype("A", A.values, "B", B.values)
    V.check_same_device("A", A.values, "B", B.values)
    pattern = A.pattern.product(B.pattern)
    values = ops.spgemm_numeric(A.crow_indices, A.col_indices, A.values, B.crow_indices,
                                B.col_indices, B.values, pattern.crow, pattern.col, B.shape[1])
    return CSRMatrix.from_pattern(pattern, values)


def _check_pair(A: CSRMatrix, B, op: str) -> None:
    if not isinstance(B, CSRMatrix):
        raise TypeError(f"{op}: expected a CSRMatrix operand, got {type(B).__name__} (a sparse "
                        f"matrix {op} a dense one or a scalar is not sparse; use A.to_dense())")
    if A.shape != B.shape:
        raise ValueError(f"{op}: expected operands of equal shape, got {A.shape} and {B.shape}")
    V.check_same_dtype("A", A.values, "B", B.values)
    V.check_same_device("A", A.values, "B", B.values)


def add(A: CSRMatrix, B: CSRMatrix, alpha=1.0, beta=1.0) -> CSRMatrix:
    """``alpha * A + beta * B`` on the union of the two patterns.

    ``alpha`` and ``beta`` are numbers or 0-d tensors; all of ``A``, ``B``,
    ``alpha`` and ``beta`` are differentiable.

    Notes
    -----
    With incoming gradient ``G`` (pattern of the union):
    ``dA = alpha G ⊙ mask(A)``, ``dB = beta G ⊙ mask(B)`` (gathers),
    ``dalpha = <G, A>``, ``dbeta = <G, B>``.

    Examples
    --------
    >>> import torch, learnsolve
    >>> I = learnsolve.eye(2)
    >>> learnsolve.add(I, I.T, alpha=2.0, beta=-0.5).to_dense()
    tensor([[1.5000, 0.0000],
            [0.0000, 1.5000]])
    """
    _check_pair(A, B, "add")
    alpha = _scalar_tensor(V.check_scalar(alpha, "alpha"), A.values)
    beta = _scalar_tensor(V.check_scalar(beta, "beta"), A.values)
    pattern, map_a, map_b = A.pattern.union(B.pattern)
    values = ops.csr_add_values(A.values, map_a, B.values, map_b, pattern.nnz, alpha, beta)
    return CSRMatrix.from_pattern(pattern, values)


def _scalar_tensor(alpha, like: torch.Tensor) -> torch.Tensor:
    """A number as a 0-d tensor of ``like``'s dtype; a tensor as it is (differentiable)."""
    if isinstance(alpha, torch.Tensor):
        return alpha
    if alpha == 0:      # 0.0 and -0.0 are one key of the cache, and differ in A + B
        return torch.scalar_tensor(alpha, dtype=like.dtype)
    return _constant(alpha, like.dtype)


@functools.lru_cache(maxsize=64)
def _constant(alpha: float, dtype: torch.dtype) -> torch.Tensor:
    """The 0-d CPU tensor of a nonzero number, made once per (number, dtype): 0.1 us,
    not 1.2, twice per A + B. The kernels and backwards only read it, and nothing
    returns it to the caller."""
    return torch.scalar_tensor(alpha, dtype=dtype)


def scale(A: CSRMatrix, alpha) -> CSRMatrix:
    """``alpha * A`` (same pattern; differentiable in A and in a tensor ``alpha``)."""
    alpha = V.check_scalar(alpha, "alpha")
    return CSRMatrix.from_pattern(A.pattern, A.values * alpha)


def multiply(A: CSRMatrix, other) -> CSRMatrix:
    """``A * alpha`` for a scalar, or the Hadamard product ``A ⊙ B`` on the
    intersection of the patterns for a CSRMatrix ``B``.

    Examples
    --------
    >>> import torch, learnsolve
    >>> (learnsolve.eye(2) * learnsolve.eye(2)).nnz
    2
    """
    if isinstance(other, CSRMatrix):
        _check_pair(A, other, "multiply")
        pattern, index_a, index_b = A.pattern.intersection(other.pattern)
        values = ops.gather_scaled(A.values, index_a) * ops.gather_scaled(other.values, index_b)
        return CSRMatrix.from_pattern(pattern, values)
    if isinstance(other, numbers.Real) or (isinstance(other, torch.Tensor) and other.dim() == 0):
        return scale(A, other)
    raise TypeError(f"multiply: expected a number, a 0-d tensor or a CSRMatrix, got "
                    f"{type(other).__name__}" + (f" of shape {tuple(other.shape)}"
                                                  if isinstance(other, torch.Tensor) else ""))


def sampled_matmul(A: CSRMatrix, X: torch.Tensor, Y: torch.Tensor) -> CSRMatrix:
    """``(X Y^T) ⊙ mask(A)``: the dense product sampled at A's pattern.

    The building block of the backward passes: only the ``nnz(A)`` entries
    are computed. ``X`` is ``(rows, k)`` and ``Y`` is ``(cols, k)``; 1-D
    ``X`` and ``Y`` give the masked outer product ``x y^T``. The values of
    ``A`` are not used.

    Notes
    -----
    With incoming gradient ``G`` (pattern of A): ``dX = G Y``, ``dY = G^T X``.

    Examples
    --------
    >>> import torch, learnsolve
    >>> I = learnsolve.eye(2)
    >>> learnsolve.sampled_matmul(I, torch.tensor([1.0, 2.0]), torch.tensor([3.0, 4.0])).values
    tensor([3., 8.])
    """
    V.check_tensor(X, "X")
    V.check_tensor(Y, "Y")
    if X.dtype not in V.FLOAT_DTYPES:
        raise TypeError(f"X: expected dtype float32 or float64, got {X.dtype}")
    V.check_same_dtype("X", X, "Y", Y)
    V.check_same_device("the matrix", A.col_indices, "X", X)
    V.check_same_device("the matrix", A.col_indices, "Y", Y)
    if X.dim() != Y.dim() or X.dim() not in (1, 2):
        raise ValueError(f"X, Y: expected both 1-D or both 2-D, got shapes {tuple(X.shape)} and "
                         f"{tuple(Y.shape)}")
    if X.shape[0] != A.shape[0] or Y.shape[0] != A.shape[1] or X.shape[1:] != Y.shape[1:]:
        raise ValueError(f"X, Y: expected shapes ({A.shape[0]}, k) and ({A.shape[1]}, k) for a "
                         f"{A.shape} pattern, got {tuple(X.shape)} and {tuple(Y.shape)}")
    transposed = A.pattern.transpose_arrays() if _needs_transpose(Y) else (None,) * 3
    values = ops.sampled_matmul(A.crow_indices, A.pattern.kernel_col(), X, Y, *transposed)
    return CSRMatrix.from_pattern(A.pattern, values)


def diagonal(A: CSRMatrix, k: int = 0) -> torch.Tensor:
    """The k-th diagonal of A as a dense vector, zeros where nothing is stored."""
    m, n = A.shape
    k = V.check_int(k, "k")
    length = max(0, min(m, n - k) if k >= 0 else min(m + k, n))
    if torch.compiler.is_compiling():
        return _summed_diagonal(A, k, length)

    def locate():       # which stored entries, and where on the diagonal: once a pattern
        row = A.row_indices()
        index = torch.nonzero(A.col_indices - row == k).flatten()
        return index, (row[index] if k >= 0 else row[index] + k)
    index, position = A.pattern.cached(("diagonal_entries", k), locate)
    return A.values.new_zeros(length).index_put((position,), A.values[index])


def _summed_diagonal(A: CSRMatrix, k: int, length: int) -> torch.Tensor:
    """:func:`diagonal` for a compiled graph: every stored entry summed into its place
    on the diagonal, those off it as zeros. O(nnz) where the gather is O(length),
    but with no size known only from the data (where the entries lie: the gather's
    torch.nonzero, which a graph cannot hold)."""
    if length == 0:
        return A.values.new_zeros(0)
    row = A.row_indices()
    on = A.col_indices - row == k
    position = (row if k >= 0 else row + k).clamp(0, length - 1)
    return A.values.new_zeros(length).index_add(0, position, torch.where(on, A.values, 0.0))


def triangle(A: CSRMatrix, k: int, lower: bool) -> CSRMatrix:
    """The entries on and below (``lower``) or above the k-th diagonal."""
    k = V.check_int(k, "k")

    def keep():
        offset = A.col_indices - A.row_indices()
        return offset <= k if lower else offset >= k

    pattern, index = A.pattern.select(("tril" if lower else "triu", k), keep)
    return CSRMatrix.from_pattern(pattern, A.values[index])
