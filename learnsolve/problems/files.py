"""Real matrices from files: Matrix Market (``.mtx``, ``.mtx.gz``, as in the
SuiteSparse collection) and scipy's ``.npz`` (``scipy.sparse.save_npz``), read
through checks that say what is wrong with a file, and written back.

Reading never unpickles: ``.npz`` files are read with ``allow_pickle=False``
(scipy's ``load_npz``), so a file with object arrays is refused, not run.

Examples
--------
>>> import pathlib, tempfile, torch
>>> from learnsolve.problems import ProblemSet, matrix_files, poisson_1d, poisson_2d, save_matrix
>>> with tempfile.TemporaryDirectory() as tmp:
...     _ = save_matrix(poisson_1d(3), pathlib.Path(tmp) / "a.mtx")
...     _ = save_matrix(poisson_2d(3), pathlib.Path(tmp) / "b.mtx")
...     problems = ProblemSet.from_files(matrix_files(tmp), dtype=torch.float64)
...     [(p.name, p.num_nodes) for p in problems]           # read here, one file per problem
[('a', 3), ('b', 9)]
"""
from __future__ import annotations

import gzip
import os
import zipfile
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import torch

from ..core.csr import CSRMatrix
from ..core.validation import check_dtype
from ..linalg._checks import check_spd
from .problem import Problem

__all__ = ["load_matrix", "save_matrix", "matrix_files"]

#: The file suffixes read and written, and their format.
SUFFIXES = {".mtx": "mtx", ".mtx.gz": "mtx", ".npz": "npz"}

# What scipy raises on a file that is not what its suffix says (a truncated or
# corrupt file, a header that lies): reported as a ValueError naming the file.
_READ_ERRORS = (ValueError, KeyError, TypeError, IndexError, NotImplementedError, EOFError,
                zipfile.BadZipFile, gzip.BadGzipFile)


def _suffix(path: Path) -> str:
    """The known suffix ``path`` ends with (ValueError if none)."""
    for suffix in sorted(SUFFIXES, key=len, reverse=True):
        if path.name.endswith(suffix) and len(path.name) > len(suffix):
            return suffix
    raise ValueError(f"{path}: expected a file name ending in {', '.join(SUFFIXES)}, got "
                     f"{path.name!r}")


def _checked_path(path) -> tuple[Path, str]:
    """``(Path(path), suffix)`` for an existing file with a known suffix."""
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path: expected a str or a path, got {type(path).__name__}")
    path = Path(path)
    suffix = _suffix(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: expected a matrix file, but there is no such file")
    if not path.is_file():
        raise ValueError(f"{path}: expected a matrix file, got a directory or another "
                         f"non-file")
    return path, suffix


def _read_mtx(path: Path):
    from scipy.io import mminfo, mmread
    try:
        rows, cols, _, _, field, _ = mminfo(path)   # the header alone: refuse before reading
    except _READ_ERRORS as error:
        raise ValueError(f"{path}: expected a Matrix Market file, but {error}") from error
    if field == "pattern":
        raise ValueError(f"{path}: expected a matrix with values, got a pattern-only Matrix "
                         f"Market matrix (no values; give it some with scipy.io.mmread, which "
                         f"reads it as ones, and CSRMatrix.from_scipy)")
    if field == "complex":
        raise ValueError(f"{path}: expected a real matrix, got a complex Matrix Market matrix")
    _check_shape(path, (rows, cols))
    try:
        return mmread(path)
    except _READ_ERRORS as error:
        raise ValueError(f"{path}: expected a Matrix Market file, but {error}") from error


def _read_npz(path: Path):
    try:
        return sp.load_npz(path)   # allow_pickle=False: object arrays raise, never unpickled
    except _READ_ERRORS as error:
        raise ValueError(f"{path}: expected a sparse matrix written by scipy.sparse.save_npz, "
                         f"but {error}") from error


def _check_shape(path: Path, shape) -> None:
    if len(shape) != 2:
        raise ValueError(f"{path}: expected a 2-D matrix, got {len(shape)} dimensions")
    if shape[0] != shape[1]:
        raise ValueError(f"{path}: expected a square matrix, got shape {tuple(shape)}")
    if shape[0] < 1:
        raise ValueError(f"{path}: expected a matrix with at least one row, got shape "
                         f"{tuple(shape)}")


def _real_sparse(path: Path, matrix):
    """``matrix`` (scipy sparse or a dense numpy array) as a scipy sparse matrix of real
    float32, float64, integer or boolean data."""
    if isinstance(matrix, np.ndarray):
        _check_shape(path, matrix.shape)
        matrix = sp.coo_array(matrix)
    elif not sp.issparse(matrix):
        raise ValueError(f"{path}: expected a sparse or dense matrix, got "
                         f"{type(matrix).__name__}")
    _check_shape(path, matrix.shape)
    kind = np.dtype(matrix.dtype).kind
    if kind == "c":
        raise ValueError(f"{path}: expected a real matrix, got complex values ({matrix.dtype})")
    if kind not in "biuf":
        raise ValueError(f"{path}: expected real numbers, got values of type {matrix.dtype}")
    if kind == "f" and matrix.dtype not in (np.float32, np.float64):
        matrix = matrix.astype(np.float64)   # float16, longdouble
    return matrix


def _check_finite(path: Path, A: CSRMatrix, source) -> None:
    bad = torch.nonzero(~torch.isfinite(A.values))
    if bad.numel():
        p = int(bad[0, 0])
        where = (int(A.row_indices()[p]), int(A.col_indices[p]))
        why = f" (beyond the range of {A.dtype})" if np.isfinite(source.data).all() else ""
        raise ValueError(f"{path}: expected finite values, got {float(A.values[p])} at "
                         f"(i, j) = {where}{why}")


def load_matrix(path, *, dtype: torch.dtype | None = None, device=None, name: str | None = None,
                seed: int = 0, symmetric: bool | None = None) -> Problem:
    """A problem with the matrix of a file: Matrix Market or scipy ``.npz``.

    Parameters
    ----------
    path : str or path-like
        ``*.mtx`` or ``*.mtx.gz`` (Matrix Market, read by ``scipy.io.mmread``:
        coordinate or array storage; ``symmetric`` and ``skew-symmetric``
        storage, one triangle in the file, is expanded to the whole matrix),
        or ``*.npz`` written by ``scipy.sparse.save_npz`` (any of its formats;
        read with ``allow_pickle=False``).
    dtype : torch.dtype, optional
        float32 or float64 (default: torch's default dtype). Integer values
        are converted.
    device : torch.device or str, optional
    name : str, optional
        Default: the file's name without its suffix (``"bcsstk01"`` for
        ``bcsstk01.mtx.gz``).
    seed : int
        Seed of the problem's random right-hand sides (a file has none).
    symmetric : bool, optional
        ``True``: check that the matrix is symmetric (pattern and values, to
        rounding: ``|a_ij - a_ji|`` at most 100 ulps of ``max |a_ij|`` in
        ``dtype``) with a positive diagonal, as conjugate gradients needs.

    Returns
    -------
    Problem
        ``A`` canonical (columns sorted, duplicates summed, explicit zeros
        kept) in ``dtype`` on ``device``; random right-hand sides;
        ``info = {"path": str(path), "format": "mtx" or "npz"}``.

    Raises
    ------
    FileNotFoundError
        No file at ``path``.
    ValueError
        A suffix other than the above; a file that cannot be read as its
        suffix says (Matrix Market header, ``.npz`` without a sparse matrix or
        with object arrays); a pattern-only or complex matrix; a matrix that
        is not square, has no row, or has a value that is not finite (in
        ``dtype``: a float64 value beyond float32's range included); with
        ``symmetric=True``, one that is not symmetric or has a diagonal entry
        ``<= 0`` (or missing). Each message names the file and what was
        expected.
    TypeError
        ``dtype`` not float32 or float64.

    Examples
    --------
    >>> import pathlib, tempfile, torch
    >>> from learnsolve.problems import load_matrix, poisson_2d, save_matrix
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     path = save_matrix(poisson_2d(4), pathlib.Path(tmp) / "poisson.mtx.gz")
    ...     p = load_matrix(path, dtype=torch.float64, symmetric=True)
    >>> p.name, p.num_nodes, p.A.nnz, p.dtype, p.info["format"]
    ('poisson', 16, 64, torch.float64, 'mtx')
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     path = pathlib.Path(tmp) / "lower.mtx"      # symmetric storage: one triangle
    ...     _ = path.write_text("%%MatrixMarket matrix coordinate real symmetric\\n"
    ...                         "2 2 3\\n1 1 2\\n2 1 -1\\n2 2 2\\n")
    ...     load_matrix(path, dtype=torch.float64).A.to_dense()
    tensor([[ 2., -1.],
            [-1.,  2.]], dtype=torch.float64)
    """
    dtype = check_dtype(dtype)
    if symmetric not in (None, True, False):
        raise TypeError(f"symmetric: expected None or a bool, got {type(symmetric).__name__}")
    path, suffix = _checked_path(path)
    file_format = SUFFIXES[suffix]
    source = _real_sparse(path, _read_mtx(path) if file_format == "mtx" else _read_npz(path))
    try:
        with np.errstate(over="ignore"):                # beyond float32: refused just below
            A = CSRMatrix.from_scipy(source, dtype=dtype)   # checks the index arrays first
    except ValueError as error:
        raise ValueError(f"{path}: expected a valid sparse matrix, but {error}") from error
    _check_finite(path, A, source)
    if symmetric:
        check_spd(A, str(path))
    if device is not None:
        A = A.to(device=device)
    return Problem(A, name=path.name[:-len(suffix)] if name is None else name, seed=seed,
                   info={"path": str(path), "format": file_format})


def save_matrix(problem_or_matrix, path) -> Path:
    """Write a problem's matrix (or a CSRMatrix) to ``path``; :func:`load_matrix`
    reads it back.

    ``*.npz``: ``scipy.sparse.save_npz``, compressed, CSR. ``*.mtx``, or
    ``*.mtx.gz`` (gzipped): ``scipy.io.mmwrite``, coordinate storage, every
    stored entry written (``general``: explicit zeros kept, no triangle left
    out), values in the shortest form that reads back to the same number.
    Either way the matrix reads back exactly, in its dtype. Only the matrix
    is written (not ``b``, coordinates, or ``info``).

    Parameters
    ----------
    problem_or_matrix : Problem or CSRMatrix
    path : str or path-like
        Overwritten if it exists.

    Returns
    -------
    Path
        ``path``.

    Examples
    --------
    >>> import pathlib, tempfile, torch
    >>> from learnsolve.problems import load_matrix, poisson_2d, save_matrix
    >>> A = poisson_2d(3, dtype=torch.float64).A
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     B = load_matrix(save_matrix(A, pathlib.Path(tmp) / "A.npz"), dtype=torch.float64).A
    >>> torch.equal(A.values, B.values) and torch.equal(A.col_indices, B.col_indices)
    True
    """
    A = problem_or_matrix.A if isinstance(problem_or_matrix, Problem) else problem_or_matrix
    if not isinstance(A, CSRMatrix):
        raise TypeError(f"problem_or_matrix: expected a Problem or a CSRMatrix, got "
                        f"{type(problem_or_matrix).__name__}")
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path: expected a str or a path, got {type(path).__name__}")
    path = Path(path)
    suffix = _suffix(path)
    matrix = A.to_scipy()
    if suffix == ".npz":
        sp.save_npz(path, matrix, compressed=True)
    else:
        from scipy.io import mmwrite
        if suffix == ".mtx.gz":
            with gzip.open(path, "wb") as file:
                mmwrite(file, matrix, symmetry="general")
        else:
            mmwrite(path, matrix, symmetry="general")
    return path


def matrix_files(directory, pattern: str = "*.mtx") -> list[Path]:
    """The files of ``directory`` matching ``pattern`` (``Path.glob``: ``"**/*.mtx"``
    searches subfolders too), sorted; empty if none match.

    Examples
    --------
    >>> import pathlib, tempfile
    >>> from learnsolve.problems import matrix_files, poisson_1d, save_matrix
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     for name in ("b.mtx", "a.mtx", "c.npz"):
    ...         _ = save_matrix(poisson_1d(3), pathlib.Path(tmp) / name)
    ...     [p.name for p in matrix_files(tmp)], [p.name for p in matrix_files(tmp, "*.npz")]
    (['a.mtx', 'b.mtx'], ['c.npz'])
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise (NotADirectoryError if directory.exists() else FileNotFoundError)(
            f"{directory}: expected a directory of matrix files")
    return sorted(p for p in directory.glob(pattern) if p.is_file())
