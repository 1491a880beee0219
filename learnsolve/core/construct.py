"""Constructors of CSRMatrix: from coordinates, dense, scipy and torch sparse
tensors, and the builders ``eye``, ``diag``, ``diags``, ``kron``, ``block_diag``.

All are vectorised (sorts, scans and gathers on whole arrays) and
differentiable in the values they are given.
"""
from __future__ import annotations

import numbers
from typing import Sequence

import numpy as np
import torch

from . import validation as V
from .csr import CSRMatrix
from .pattern import Pattern

__all__ = ["from_coo", "from_dense", "from_scipy", "from_torch", "eye", "diag", "diags", "kron",
           "block_diag"]


def _crow_from_rows(row: torch.Tensor, nrows: int) -> torch.Tensor:
    """Row pointers of entries whose (sorted) rows are ``row``."""
    counts = torch.bincount(row, minlength=nrows) if row.numel() else row.new_zeros(nrows)
    return torch.cat([counts.new_zeros(1), counts.cumsum(0)])


def from_coo(row: torch.Tensor, col: torch.Tensor, values: torch.Tensor,
             shape: tuple[int, int]) -> CSRMatrix:
    """A CSRMatrix from coordinates in any order; duplicates are summed.

    Differentiable in ``values``: the gradient of a summed entry goes to each
    of its duplicates.

    Examples
    --------
    >>> import torch, learnsolve
    >>> A = learnsolve.CSRMatrix.from_coo(torch.tensor([1, 0, 1]), torch.tensor([0, 1, 0]),
    ...                                   torch.tensor([1.0, 2.0, 3.0]), (2, 2))
    >>> A.to_dense()
    tensor([[0., 2.],
            [4., 0.]])
    """
    row = V.check_index_tensor(row, "row")
    col = V.check_index_tensor(col, "col")
    values = V.check_values(values)
    m, n = V.check_shape(shape)
    V.check_same_device("row", row, "col", col)
    V.check_same_device("row", row, "values", values)
    if not row.shape[0] == col.shape[0] == values.shape[0]:
        raise ValueError(f"row, col, values: expected equal lengths, got {row.shape[0]}, "
                         f"{col.shape[0]} and {values.shape[0]}")
    V.check_index_range(row, m, "row", context=f" for {m} rows")
    V.check_index_range(col, n, "col", context=f" for {n} columns")
    if m * n >= 2**63:
        raise ValueError(f"shape: {shape} has more than 2**63 entries")
    key, inverse = torch.unique(row * n + col, sorted=True, return_inverse=True)
    summed = values.new_zeros(key.shape[0]).index_add(0, inverse, values)
    crow = _crow_from_rows(key // n if n else key, m)
    return CSRMatrix.from_pattern(Pattern(crow, key % n if n else key, (m, n)), summed)


def from_dense(dense: torch.Tensor) -> CSRMatrix:
    """The nonzero entries of a 2-D tensor (differentiable in ``dense``).

    Examples
    --------
    >>> import torch, learnsolve
    >>> learnsolve.CSRMatrix.from_dense(torch.tensor([[0.0, 1.0], [2.0, 0.0]])).nnz
    2
    """
    V.check_tensor(dense, "dense")
    if dense.dim() != 2:
        raise ValueError(f"dense: expected a 2-D tensor, got shape {tuple(dense.shape)}")
    if dense.dtype not in V.FLOAT_DTYPES:
        raise TypeError(f"dense: expected dtype float32 or float64, got {dense.dtype}")
    row, col = torch.nonzero(dense, as_tuple=True)
    pattern = Pattern(_crow_from_rows(row, dense.shape[0]), col, tuple(dense.shape))
    return CSRMatrix.from_pattern(pattern, dense[row, col])


def from_scipy(matrix, *, dtype: torch.dtype | None = None, device=None) -> CSRMatrix:
    """A CSRMatrix from any scipy.sparse matrix or array.

    The input is not modified. Duplicates are summed, columns sorted, explicit
    zeros kept. float32 and float64 data keep their dtype unless ``dtype`` is
    given; integer or boolean data become the default float dtype.

    scipy does not check its index arrays on every path (a file written
    1-based, arrays edited in place), so they are checked here before
    anything reads through them, scipy's own conversions included: the
    pointers and indices of CSR, CSC and BSR input, the coordinates of COO
    input (the other formats are built by scipy from Python structures).
    A canonical CSR input is taken as it is (one copy); anything else is
    converted and its duplicates summed by scipy once checked.

    Raises
    ------
    TypeError
        Not a scipy sparse matrix; data that is not real float32, float64,
        integer or boolean (float16, complex, object).
    ValueError
        Index arrays out of range, decreasing pointers or lengths that do not
        fit the shape; the message names the array (``matrix.indices``, ...).

    Examples
    --------
    >>> import scipy.sparse as sp, learnsolve
    >>> learnsolve.CSRMatrix.from_scipy(sp.eye_array(3, format="coo")).dtype
    torch.float64
    """
    import scipy.sparse as sp
    if not sp.issparse(matrix):
        raise TypeError(f"matrix: expected a scipy.sparse matrix or array, got "
                        f"{type(matrix).__name__}")
    data_type = np.dtype(matrix.dtype)
    if not (data_type in (np.float32, np.float64) or data_type == np.bool_ or
            np.issubdtype(data_type, np.integer)):
        raise TypeError(f"matrix: expected real data (float32, float64, integer or boolean), "
                        f"got {data_type} (convert it with matrix.astype(numpy.float64))")
    if dtype is None:
        dtype = {np.dtype(np.float32): torch.float32, np.dtype(np.float64): torch.float64}.get(
            data_type, torch.get_default_dtype())
    if dtype not in V.FLOAT_DTYPES:
        raise TypeError(f"dtype: expected float32 or float64, got {dtype}")
    m, n = V.check_shape(matrix.shape, "matrix.shape")
    values_type = np.float32 if dtype == torch.float32 else np.float64

    def tensor(array, numpy_type=np.int64):  # a copy: the input's arrays stay its own
        return torch.from_numpy(np.asarray(array).astype(numpy_type)).to(device)

    if matrix.format in ("csr", "csc", "bsr"):
        shape = (m, n) if matrix.format != "csc" else (n, m)
        if matrix.format == "bsr":
            rows, cols = matrix.blocksize
            shape = (shape[0] // rows, shape[1] // cols)
        crow, col = tensor(matrix.indptr), tensor(matrix.indices)
        canonical = V.check_csr_arrays(crow, col, None, shape, canonical=False,
                                       names=("matrix.indptr", "matrix.indices"))
        if matrix.format == "csr" and canonical:
            return CSRMatrix.from_pattern(Pattern(crow, col, (m, n)),
                                           tensor(matrix.data, values_type).to(dtype))
    elif matrix.format == "coo":
        for name, index, size in (("matrix.row", matrix.row, m), ("matrix.col", matrix.col, n)):
            V.check_index_range(index, size, name, context=f" for shape {(m, n)}")
    # Checked: scipy's conversion and summing of duplicates read in bounds now.
    csr = sp.csr_array(matrix, copy=True)
    if matrix.format == "csr":
        csr.has_canonical_format = False  # found not to be: a flag kept from before an edit lies
    csr.sum_duplicates()
    return CSRMatrix.from_pattern(Pattern(tensor(csr.indptr), tensor(csr.indices), (m, n)),
                                   tensor(csr.data, values_type).to(dtype))


def from_torch(tensor: torch.Tensor) -> CSRMatrix:
    """A CSRMatrix from a 2-D torch sparse CSR or COO tensor (differentiable in its values).

    torch builds sparse tensors without checking their indices unless asked
    (``check_invariants=False``): they are checked here before anything reads
    through them.
    """
    V.check_tensor(tensor, "tensor")
    if tensor.dim() != 2:
        raise ValueError(f"tensor: expected a 2-D sparse tensor, got shape {tuple(tensor.shape)}")
    shape = tuple(tensor.shape)
    if tensor.layout == torch.sparse_csr:
        crow, col = tensor.crow_indices().long(), tensor.col_indices().long()
        values = tensor.values()
        if V.check_csr_arrays(crow, col, values, shape, canonical=False,
                              names=("tensor.crow_indices()", "tensor.col_indices()")):
            return CSRMatrix.from_pattern(Pattern(crow, col, shape), values)
        row = torch.repeat_interleave(torch.arange(shape[0], device=crow.device), crow.diff(),
                                      output_size=col.shape[0])
        return from_coo(row, col, values, shape)
    if tensor.layout == torch.sparse_coo:
        indices = tensor._indices()
        for kind, index, size in (("row", indices[0], shape[0]), ("column", indices[1], shape[1])):
            V.check_index_range(index, size, "tensor", what=f"{kind} indices",
                                context=f" for shape {shape}")
        tensor = tensor.coalesce()
        row, col = tensor.indices()
        return from_coo(row, col, tensor.values(), shape)
    raise TypeError(f"tensor: expected layout sparse_csr or sparse_coo, got {tensor.layout}")


def _factory_dtype(dtype):
    dtype = torch.get_default_dtype() if dtype is None else dtype
    if dtype not in V.FLOAT_DTYPES:
        raise TypeError(f"dtype: expected float32 or float64, got {dtype}")
    return dtype


def eye(n: int, m: int | None = None, *, dtype: torch.dtype | None = None,
        device=None) -> CSRMatrix:
    """The n x m identity (m defaults to n).

    Examples
    --------
    >>> import learnsolve
    >>> learnsolve.eye(2, 3).to_dense()
    tensor([[1., 0., 0.],
            [0., 1., 0.]])
    """
    m = n if m is None else m
    n, m = V.check_shape((n, m), "n, m")
    k = min(n, m)
    index = torch.arange(k, device=device)
    crow = torch.cat([index, torch.full((n + 1 - k,), k, device=device)])
    values = torch.ones(k, dtype=_factory_dtype(dtype), device=device)
    return CSRMatrix.from_pattern(Pattern(crow, index, (n, m)), values)


def diag(v: torch.Tensor, k: int = 0) -> CSRMatrix:
    """The square matrix with ``v`` on its k-th diagonal (differentiable in v).

    Examples
    --------
    >>> import torch, learnsolve
    >>> learnsolve.diag(torch.tensor([1.0, 2.0]), 1).to_dense()
    tensor([[0., 1., 0.],
            [0., 0., 2.],
            [0., 0., 0.]])
    """
    v = V.check_values(v, "v")
    k = V.check_int(k, "k")
    n = v.shape[0] + abs(k)
    index = torch.arange(v.shape[0], device=v.device)
    rows, cols = (index, index + k) if k >= 0 else (index - k, index)
    crow = _crow_from_rows(rows, n)
    return CSRMatrix.from_pattern(Pattern(crow, cols, (n, n)), v)


def diags(diagonals, offsets: int | Sequence[int] = 0, shape: tuple[int, int] | None = None, *,
          dtype: torch.dtype | None = None, device=None) -> CSRMatrix:
    """A matrix from diagonals, as ``scipy.sparse.diags``.

    Parameters
    ----------
    diagonals : sequence of tensors, arrays or numbers, or one of them
        The values of each diagonal; a number fills its diagonal (then
        ``shape`` must be given). Tensors keep their gradients.
    offsets : int or sequence of int
        The diagonal of each entry of ``diagonals`` (0 main, > 0 above).
    shape : (rows, cols), optional
        Default: square, from the first diagonal's length and offset.

    Examples
    --------
    >>> import learnsolve
    >>> learnsolve.diags([1.0, -2.0, 1.0], [-1, 0, 1], shape=(3, 3)).to_dense()
    tensor([[-2.,  1.,  0.],
            [ 1., -2.,  1.],
            [ 0.,  1., -2.]])
    """
    if isinstance(offsets, (numbers.Number, torch.Tensor)):
        diagonals, offsets = [diagonals], [offsets]
    offsets = [V.check_int(k, "offsets") for k in offsets]
    if len(diagonals) != len(offsets):
        raise ValueError(f"diagonals, offsets: expected one offset per diagonal, got "
                         f"{len(diagonals)} diagonals and {len(offsets)} offsets")
    if len(set(offsets)) != len(offsets):
        raise ValueError(f"offsets: expected distinct offsets, got {offsets}")
    tensors = [d if isinstance(d, torch.Tensor) else None for d in diagonals]
    given = next((t for t in tensors if t is not None), None)
    dtype = _factory_dtype(dtype if dtype is not None or given is None or
                           given.dtype not in V.FLOAT_DTYPES else given.dtype)
    device = device if device is not None or given is None else given.device
    if shape is None:
        first = diagonals[0]
        if isinstance(first, numbers.Number):
            raise ValueError("shape: needed when the first diagonal is a number")
        length = len(first)
        shape = (length + abs(offsets[0]),) * 2
    m, n = V.check_shape(shape)
    rows, cols, vals = [], [], []
    for d, k in zip(diagonals, offsets):
        length = max(0, min(m + min(k, 0), n - max(k, 0)))
        if isinstance(d, numbers.Number):
            d = torch.full((length,), float(d), dtype=dtype, device=device)
        else:
            d = torch.as_tensor(d, dtype=dtype, device=device)
            if d.dim() == 0:
                d = d.expand(length)
            elif d.dim() != 1 or d.shape[0] != length:
                raise ValueError(f"diagonals: expected length {length} for offset {k} of a "
                                 f"{(m, n)} matrix, got shape {tuple(d.shape)}")
        index = torch.arange(length, device=device)
        rows.append(index - min(k, 0))
        cols.append(index + max(k, 0))
        vals.append(d)
    return from_coo(torch.cat(rows), torch.cat(cols), torch.cat(vals), (m, n))


def kron(A: CSRMatrix, B: CSRMatrix) -> CSRMatrix:
    """The Kronecker product ``A ⊗ B`` (differentiable in both).

    Built directly in canonical order: row ``(i, k)`` holds, for each entry
    ``(i, j)`` of A in column order, the entries of row k of B.

    Examples
    --------
    >>> import learnsolve
    >>> learnsolve.kron(learnsolve.eye(2), learnsolve.eye(2)).nnz
    4
    """
    if not isinstance(A, CSRMatrix) or not isinstance(B, CSRMatrix):
        raise TypeError(f"kron: expected two CSRMatrix, got {type(A).__name__} and "
                        f"{type(B).__name__}")
    V.check_same_dtype("A", A.values, "B", B.values)
    V.check_same_device("A", A.values, "B", B.values)
    (ma, na), (mb, nb) = A.shape, B.shape
    count_a, count_b = A.crow_indices.diff(), B.crow_indices.diff()
    counts = (count_a[:, None] * count_b[None, :]).flatten()
    crow = torch.cat([counts.new_zeros(1), counts.cumsum(0)])
    nnz = int(crow[-1])
    out_row = torch.repeat_interleave(torch.arange(ma * mb, device=crow.device), counts,
                                      output_size=nnz)
    i, k = out_row // mb, out_row % mb
    local = torch.arange(nnz, device=crow.device) - crow[out_row]
    pa = A.crow_indices[i] + local // count_b[k]
    pb = B.crow_indices[k] + local % count_b[k]
    col = A.col_indices[pa] * nb + B.col_indices[pb]
    pattern = Pattern(crow, col, (ma * mb, na * nb))
    return CSRMatrix.from_pattern(pattern, A.values[pa] * B.values[pb])


def block_diag(matrices: Sequence[CSRMatrix]) -> CSRMatrix:
    """The block-diagonal matrix of ``matrices`` (any shapes), in order.

    Built with a few concatenations, no loop over entries; differentiable in
    the blocks' values (the result's values are their concatenation).

    Examples
    --------
    >>> import torch, learnsolve
    >>> A = learnsolve.block_diag([learnsolve.eye(1), 2 * learnsolve.eye(2)])
    >>> A.to_dense()
    tensor([[1., 0., 0.],
            [0., 2., 0.],
            [0., 0., 2.]])
    """
    matrices = list(matrices)
    if not matrices:
        raise ValueError("matrices: expected at least one CSRMatrix, got none")
    for i, A in enumerate(matrices):
        if not isinstance(A, CSRMatrix):
            raise TypeError(f"matrices[{i}]: expected a CSRMatrix, got {type(A).__name__}")
        V.check_same_dtype("matrices[0]", matrices[0].values, f"matrices[{i}]", A.values)
        V.check_same_device("matrices[0]", matrices[0].values, f"matrices[{i}]", A.values)
    device = matrices[0].device
    rows = torch.tensor([A.shape[0] for A in matrices])
    cols = torch.tensor([A.shape[1] for A in matrices])
    nnzs = torch.tensor([A.nnz for A in matrices])
    # The entries of block i move right by the columns of the blocks before
    # it; its row pointers shift by their stored entries.
    col_shift = (cols.cumsum(0) - cols).to(device)
    nnz_shift = (nnzs.cumsum(0) - nnzs).to(device)
    crow_tail = torch.cat([A.crow_indices[1:] for A in matrices]) + torch.repeat_interleave(
        nnz_shift, rows.to(device), output_size=int(rows.sum()))
    crow = torch.cat([crow_tail.new_zeros(1), crow_tail])
    col = torch.cat([A.col_indices for A in matrices]) + torch.repeat_interleave(
        col_shift, nnzs.to(device), output_size=int(nnzs.sum()))
    values = torch.cat([A.values for A in matrices])
    shape = (int(rows.sum()), int(cols.sum()))
    return CSRMatrix.from_pattern(Pattern(crow, col, shape), values)
