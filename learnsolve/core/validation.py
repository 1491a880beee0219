"""Checks of user input that raise errors naming the argument and what was expected."""
from __future__ import annotations

import numbers

import numpy as np
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


def check_csr_arrays(crow: torch.Tensor, col: torch.Tensor, values: torch.Tensor | None,
                     shape: tuple[int, int], *, canonical: bool = True,
                     names: tuple[str, str] = ("crow_indices", "col_indices")) -> bool:
    """Check that ``(crow, col, values, shape)`` is a CSR matrix no kernel can misread;
    return whether the columns of each row are sorted and distinct.

    Always: lengths that fit ``shape``, ``crow[0] == 0``, ``crow[-1] == nnz``,
    non-decreasing row pointers and columns in ``[0, cols)``; with
    ``canonical``, also sorted, distinct columns in each row. One native pass
    over the arrays (``learnsolve::csr_check``, parallel) and one read of its
    result: about 4 ms for 5 million entries on one core. ``values`` None:
    only the pattern. ``names`` are the names of the index arrays in the
    error messages (the caller's arguments).
    """
    from ._ops import ops  # loads the kernels; validation is imported before them
    m, n = shape
    crow_name, col_name = names
    check_same_device(crow_name, crow, col_name, col)
    if crow.device.type == "meta":
        raise ValueError(f"{crow_name}: expected index arrays with data (on the CPU or a GPU), "
                         f"got meta tensors, whose entries cannot be checked")
    if crow.shape[0] != m + 1:
        raise ValueError(f"{crow_name}: expected length {m + 1} (rows + 1) for shape {shape}, "
                         f"got {crow.shape[0]}")
    nnz = col.shape[0]
    if values is not None:
        check_same_device(crow_name, crow, "values", values)
        if values.shape[0] != nnz:
            raise ValueError(f"values: expected length {nnz} (the length of {col_name}), "
                             f"got {values.shape[0]}")
    found = torch.cat([crow[:1], crow[-1:], ops.csr_check(crow, col, n)]).tolist()
    first, last, bad_row, bad_col, unsorted = found
    if first != 0:
        raise ValueError(f"{crow_name}: expected {crow_name}[0] == 0, got {first}")
    if last != nnz:
        raise ValueError(f"{crow_name}: expected {crow_name}[-1] == {nnz} (the number of "
                         f"stored entries), got {last}")
    if bad_row >= 0:
        raise ValueError(f"{crow_name}: expected a non-decreasing sequence, but it decreases "
                         f"after row {bad_row}")
    if bad_col >= 0:
        raise ValueError(f"{col_name}: expected values in [0, {n}) for {n} columns, "
                         f"got {int(col[bad_col])} at position {bad_col}")
    if canonical and unsorted >= 0:
        row = int(torch.searchsorted(crow, torch.tensor(unsorted, device=crow.device),
                                     right=True)) - 1
        raise ValueError(f"{col_name}: expected sorted, distinct columns in each row, but row "
                         f"{row} is unsorted or has a duplicate (column {int(col[unsorted])}); "
                         f"CSRMatrix.from_coo sorts and sums duplicates")
    return unsorted < 0


def check_index_range(index, size: int, name: str, *, what: str = "indices",
                      context: str = "") -> None:
    """ValueError naming ``name`` unless every entry of ``index`` (a 1-D tensor or numpy
    array of coordinates) lies in ``[0, size)``; ``context`` ends the expectation
    (" for 3 rows")."""
    if len(index) and (int(index.min()) < 0 or int(index.max()) >= size):
        raise ValueError(f"{name}: expected {what} in [0, {size}){context}, got "
                         f"{int(index.min())}..{int(index.max())}")


def check_bool(value, name: str) -> bool:
    """A flag: a Python or numpy bool (not a number, a string or a tensor), as a bool."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name}: expected a bool, got {type(value).__name__} {value!r}")
    return bool(value)


def check_int(k, name: str) -> int:
    """An integer (a Python or numpy integer, or an integer 0-d tensor; not a bool)."""
    if isinstance(k, torch.Tensor) and k.dim() == 0 and not k.is_floating_point() \
            and k.dtype != torch.bool and not k.is_complex():
        return int(k)
    if isinstance(k, bool) or not isinstance(k, numbers.Integral):
        raise TypeError(f"{name}: expected an integer, got {k!r} ({type(k).__name__})")
    return int(k)


def check_scalar(alpha, name: str = "alpha"):
    """A Python number or a 0-d tensor (kept as a tensor, so it stays differentiable)."""
    if type(alpha) is float:    # the common case, before the slower ABC check below
        return alpha
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


def check_dtype(dtype) -> torch.dtype:
    """The floating dtype of a generated problem (default: torch's default dtype)."""
    dtype = torch.get_default_dtype() if dtype is None else dtype
    if dtype not in FLOAT_DTYPES:
        raise TypeError(f"dtype: expected float32 or float64, got {dtype}")
    return dtype


def check_count(n, name: str, minimum: int = 1) -> int:
    """An integer >= minimum (bools refused)."""
    if isinstance(n, bool) or not isinstance(n, numbers.Integral):
        raise TypeError(f"{name}: expected an integer, got {type(n).__name__}")
    if n < minimum:
        raise ValueError(f"{name}: expected an integer >= {minimum}, got {n}")
    return int(n)
