"""Matrices the tests run every op on: varied shapes and the awkward cases."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch

import learnsolve as ls

DTYPES = [torch.float32, torch.float64]
# CUDA runs where a GPU is present and shows as skipped elsewhere.
DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs a GPU"))]

# Tolerances for comparing with scipy / dense torch (sums in another order).
TOL = {torch.float32: dict(rtol=1e-5, atol=1e-5), torch.float64: dict(rtol=1e-12, atol=1e-12)}


def _random(m, n, density, seed):
    return sp.random_array((m, n), density=density, format="csr", rng=np.random.default_rng(seed),
                           dtype=np.float64)


def _with_empty(seed):
    """Random 9x8 matrix with rows 0, 4 and columns 2, 7 empty."""
    a = _random(9, 8, 0.6, seed).toarray()
    a[[0, 4], :] = 0
    a[:, [2, 7]] = 0
    return sp.csr_array(a)


def _dense_row(seed):
    """A 6x10 matrix whose row 3 is full, the others nearly empty."""
    a = _random(6, 10, 0.1, seed).toarray()
    a[3, :] = np.random.default_rng(seed).uniform(1, 2, 10)
    return sp.csr_array(a)


def _explicit_zeros(seed):
    """A matrix with explicit zeros stored in its pattern."""
    a = _random(7, 7, 0.4, seed)
    a.data[::3] = 0.0
    return a


# name -> function(seed) giving a scipy CSR array (float64)
CASES = {
    "square": lambda s: _random(12, 12, 0.25, s),
    "wide": lambda s: _random(5, 11, 0.3, s),
    "tall": lambda s: _random(11, 5, 0.3, s),
    "1x1": lambda s: sp.csr_array(np.array([[1.5]])),
    "empty_rows_cols": _with_empty,
    "nnz0": lambda s: sp.csr_array((4, 6)),
    "dense_row": _dense_row,
    "explicit_zeros": _explicit_zeros,
    "no_rows": lambda s: sp.csr_array((0, 3)),
    "no_cols": lambda s: sp.csr_array((3, 0)),
}


def make(case: str, dtype=torch.float64, device="cpu", seed=0):
    """Return (scipy matrix, CSRMatrix) for a named case."""
    S = CASES[case](seed)
    return S, ls.CSRMatrix.from_scipy(S, dtype=dtype, device=device)


def dense_of(S, dtype, device="cpu"):
    return torch.tensor(S.toarray(), dtype=dtype, device=device)


def assert_close(actual, expected, dtype):
    torch.testing.assert_close(actual, expected, **TOL[dtype], check_dtype=True)


def randn(*shape, dtype=torch.float64, device="cpu", seed=0, requires_grad=False):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(*shape, generator=g, dtype=dtype).to(device)
    return x.requires_grad_(requires_grad)


def poisson_scipy(m):
    """The 2D Poisson matrix of an m x m grid (5-point stencil), scipy CSR."""
    T = sp.diags_array([-1.0, 2.0, -1.0], offsets=[-1, 0, 1], shape=(m, m))
    S = sp.csr_array(sp.kron(sp.eye_array(m), T) + sp.kron(T, sp.eye_array(m)))
    S.sum_duplicates()
    return S


def on_threads(threads, fn):
    """fn() run with torch's thread count set to ``threads``."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return fn()
    finally:
        torch.set_num_threads(before)


def m_matrix(n, density, seed):
    """A random symmetric M-matrix (negative off-diagonals, dominant diagonal), scipy CSR."""
    rng = np.random.default_rng(seed)
    B = abs(sp.random_array((n, n), density=density, format="csr", rng=rng))
    B = sp.csr_array(sp.triu(B, 1))
    B = -(B + B.T)
    S = sp.csr_array(B + sp.diags_array(rng.uniform(0.1, 1.0, n) + abs(B).sum(axis=1)))
    S.sort_indices()
    return S
