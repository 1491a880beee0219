"""Checks of user input that raise errors naming the argument and what was expected."""
from __future__ import annotations

import numbers

import torch

FLOAT_DTYPES = (torch.float32, torch.float64)
INDEX_DTYPES = (torch.int32, torch.int64)


def check_tensor(x, name: str) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor, got {type(x).__name__}")
    return x


def check_index_tensor(x, name: str) -> torch.Tensor:
    """An integer index array, returned as int64."""
    check_tensor(x, name)
    if x.dtype not in INDEX_DTYPES:
        raise TypeError(f"{name}: expected an integer tensor (int64 or int32), got {x.dtype}")
    if x.dim() != 1:
        raise ValueError(f"{name}: expected a 1-D tensor, got shape {tuple(x.shape)}")
    return x.long()


def check_values(x, name: str = "values") -> torch.Tensor:
    check_tensor(x, name)
    if x.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{name}: expected dtype float32 or float64, got {x.dtype}")
    if x.dim() != 1:
        raise ValueError(f"{name}: expected a 1-D tensor, got shape {tuple(x.shape)}")
    return x


def check_shape(shape, name: str = "shape") -> tuple[int, int]:
    try:
        m, n = (int(s) for s in shape)
        ok = all(isinstance(s, numbers.Integral) or (isinstance(s, torch.Tensor) and s.dim() == 0)
                 for s in shape)
    except (TypeError, ValueError):
        ok = False
    if not ok or m < 0 or n < 0:
        raise ValueError(f"{name}: expected two non-negative integers (rows, cols), got {shape!r}")
    return m, n


def check_same_device(name_a: str, a: torch.Tensor, name_b: str, b: torch.Tensor) -> None:
    if a.device != b.device:
        raise ValueError(f"{name_b}: expected a tensor on {a.device} (the device of {name_a}), "
                         f"got {b.device}")


def check_same_dtype(name_a: str, a: torch.Tensor, name_b: str, b: torch.Tensor) -> None:
    if a.dtype != b.dtype:
        raise TypeError(f"{name_b}: expected dtype {a.dtype} (the dtype of {name_a}), "
                        f"got {b.dtype}")


def check_csr_arrays(crow: torch.Tensor, col: torch.Tensor, values: torch.Tensor,
                     shape: tuple[int, int]) -> None:
    """Check that (crow, col, values, shape) is a canonical CSR matrix.

    Vectorised: a few passes over the arrays, no loop over rows or entries.
    """
    m, n = shape
    check_same_device("crow_indices", crow, "col_indices", col)
    check_same_device("crow_indices", crow, "values", values)
    if crow.shape[0] != m + 1:
        raise ValueError(f"crow_indices: expected length {m + 1} (rows + 1) for shape {shape}, "
                         f"got {crow.shape[0]}")
    nnz = col.shape[0]
    if values.shape[0] != nnz:
        raise ValueError(f"values: expected length {nnz} (the length of col_indices), "
                         f"got {values.shape[0]}")
    if int(crow[0]) != 0:
        raise ValueError(f"crow_indices: expected crow_indices[0] == 0, got {int(crow[0])}")
    if int(crow[-1]) != nnz:
        raise ValueError(f"crow_indices: expected crow_indices[-1] == {nnz} (the number of "
                         f"stored entries), got {int(crow[-1])}")
    counts = crow.diff()
    if bool((counts < 0).any()):
        row = int(torch.nonzero(counts < 0)[0])
        raise ValueError(f"crow_indices: expected a non-decreasing sequence, but it decreases "
                         f"after row {row}")
    if nnz == 0:
        return
    bad = (col < 0) | (col >= n)
    if bool(bad.any()):
        p = int(torch.nonzero(bad)[0])
        raise ValueError(f"col_indices: expected values in [0, {n}) for {n} columns, "
                         f"got {int(col[p])} at position {p}")
    new_row = torch.zeros(nnz, dtype=torch.bool, device=col.device)
    new_row[crow[:-1][counts > 0]] = True
    unsorted = (col[1:] <= col[:-1]) & ~new_row[1:]
    if bool(unsorted.any()):
        p = int(torch.nonzero(unsorted)[0]) + 1
        row = int(torch.searchsorted(crow, torch.tensor(p, device=crow.device), right=True)) - 1
        raise ValueError(f"col_indices: expected sorted, distinct columns in each row, but row "
                         f"{row} is unsorted or has a duplicate (column {int(col[p])}); "
                         f"CSRMatrix.from_coo sorts and sums duplicates")


def check_scalar(alpha, name: str = "alpha"):
    """A Python number or a 0-d tensor (kept as a tensor, so it stays differentiable)."""
    if isinstance(alpha, torch.Tensor):
        if alpha.dim() != 0:
            raise ValueError(f"{name}: expected a 0-d tensor or a number, got shape "
                             f"{tuple(alpha.shape)}")
        if alpha.is_complex():
            raise TypeError(f"{name}: expected a real scalar, got {alpha.dtype}")
        return alpha
    if isinstance(alpha, numbers.Real):
        return float(alpha)
    raise TypeError(f"{name}: expected a real number or a 0-d tensor, got {type(alpha).__name__}")
