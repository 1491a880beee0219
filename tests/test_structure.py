"""Transpose, diagonal, row sums and triangles: values, patterns, gradients."""
import numpy as np
import pytest
import scipy.sparse as sp
import torch
from torch.autograd import gradcheck

from cases import CASES, assert_close, dense_of, make
from learnsolve import CSRMatrix
from learnsolve.core.validation import check_csr_arrays


@pytest.mark.parametrize("case", CASES)
def test_transpose(case, dtype, device):
    S, A = make(case, dtype, device)
    T = A.T
    assert T.shape == (A.shape[1], A.shape[0])
    assert_close(T.to_dense(), dense_of(S, dtype, device).T, dtype)
    assert torch.equal(T.T.col_indices, A.col_indices)
    assert T.T.pattern is A.pattern  # the transpose knows its transpose
    check_csr_arrays(T.crow_indices, T.col_indices, T.values, T.shape)


def test_transpose_many_threads_large():
    """Big enough for the parallel counting sort (one histogram per chunk)."""
    S = sp.random_array((3000, 2000), density=0.01, format="csr", rng=np.random.default_rng(3))
    A = CSRMatrix.from_scipy(S)
    Ts = sp.csr_array(S.T)
    Ts.sort_indices()
    T = A.T
    assert np.array_equal(T.crow_indices.numpy(), Ts.indptr)
    assert np.array_equal(T.col_indices.numpy(), Ts.indices)
    assert np.array_equal(T.values.numpy(), Ts.data)


@pytest.mark.parametrize("case", ["square", "wide", "tall", "explicit_zeros", "nnz0"])
def test_structure_gradcheck(case, device):
    S, A = make(case, torch.float64, device)
    v = A.values.clone().requires_grad_()
    assert gradcheck(lambda v: A.with_values(v).T.values, (v,))
    assert gradcheck(lambda v: A.with_values(v).diagonal(), (v,))
    assert gradcheck(lambda v: A.with_values(v).diagonal(-1), (v,))
    assert gradcheck(lambda v: A.with_values(v).row_sum(), (v,))
    assert gradcheck(lambda v: A.with_values(v).tril(-1).values, (v,))
    assert gradcheck(lambda v: A.with_values(v).triu(1).values, (v,))
    assert gradcheck(lambda v: A.with_values(v).to_dense(), (v,))


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("k", [-2, 0, 1, 3])
def test_diagonal_and_triangles(case, k, dtype, device):
    S, A = make(case, dtype, device)
    D = dense_of(S, dtype, device)
    assert_close(A.diagonal(k), torch.diagonal(D, k), dtype)
    assert_close(A.tril(k).to_dense(), torch.tril(D, k), dtype)
    assert_close(A.triu(k).to_dense(), torch.triu(D, k), dtype)
    assert A.tril(k).nnz + A.triu(k + 1).nnz == A.nnz  # explicit zeros kept


@pytest.mark.parametrize("case", CASES)
def test_row_sum(case, dtype, device):
    S, A = make(case, dtype, device)
    assert_close(A.row_sum(), dense_of(S, dtype, device).sum(1), dtype)


def test_no_stored_diagonal():
    S, A = make("square")
    off = A.tril(-1) + A.triu(1)
    assert torch.all(off.diagonal() == 0)
    assert off.tril(0).nnz == A.tril(-1).nnz


def test_caches_make_no_reference_cycle():
    """A matrix and its cached transpose and products are freed by reference
    counting alone: a cycle would keep their arrays until the collector runs."""
    import gc
    import weakref
    S, A = make("square")
    gc.disable()
    try:
        B = CSRMatrix(A.crow_indices, A.col_indices, A.values, A.shape, check=False)
        T = B.T
        assert T.T.pattern is B.pattern
        C = (B @ B.T) + B.T.T
        refs = [weakref.ref(p) for p in (B.pattern, T.pattern, C.pattern)]
        del B, T, C
        assert all(r() is None for r in refs)
    finally:
        gc.enable()
