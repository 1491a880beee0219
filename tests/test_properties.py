"""Property-based tests: random COO input (unsorted, duplicated, empty rows)
through the constructors and ops, against scipy."""
import numpy as np
import scipy.sparse as sp
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import learnsolve as ls


@st.composite
def coo(draw, shape=None, max_dim=9, max_nnz=30):
    m, n = shape if shape is not None else (draw(st.integers(0, max_dim)),
                                            draw(st.integers(0, max_dim)))
    nnz = draw(st.integers(0, max_nnz)) if m and n else 0
    rows = draw(st.lists(st.integers(0, max(m - 1, 0)), min_size=nnz, max_size=nnz))
    cols = draw(st.lists(st.integers(0, max(n - 1, 0)), min_size=nnz, max_size=nnz))
    vals = draw(st.lists(st.floats(-4, 4, allow_nan=False, width=32), min_size=nnz,
                         max_size=nnz))
    return m, n, np.array(rows, dtype=np.int64), np.array(cols, dtype=np.int64), np.array(vals)


def _both(data):
    m, n, rows, cols, vals = data
    S = sp.coo_array((vals, (rows, cols)), shape=(m, n)).tocsr()
    S.sum_duplicates()
    A = ls.CSRMatrix.from_coo(torch.from_numpy(rows), torch.from_numpy(cols),
                              torch.from_numpy(vals), (m, n))
    return S, A


SETTINGS = settings(max_examples=60, deadline=None)


@SETTINGS
@given(coo())
def test_from_coo_equals_scipy(data):
    S, A = _both(data)
    np.testing.assert_array_equal(A.crow_indices.numpy(), S.indptr)
    np.testing.assert_array_equal(A.col_indices.numpy(), S.indices)
    np.testing.assert_allclose(A.values.numpy(), S.data, rtol=1e-14, atol=1e-14)


@SETTINGS
@given(coo(), st.integers(0, 3))
def test_products_equal_scipy(data, k):
    S, A = _both(data)
    rng = np.random.default_rng(k)
    x = rng.standard_normal(A.shape[1])
    X = rng.standard_normal((A.shape[1], k))
    np.testing.assert_allclose((A @ torch.from_numpy(x)).numpy(), S @ x, atol=1e-12)
    np.testing.assert_allclose((A @ torch.from_numpy(X)).numpy(), S @ X, atol=1e-12)
    C = A @ A.T
    np.testing.assert_allclose(C.to_dense().numpy(), (S @ S.T).toarray(), atol=1e-11)


@st.composite
def two_coo(draw):
    shape = (draw(st.integers(0, 9)), draw(st.integers(0, 9)))
    return draw(coo(shape)), draw(coo(shape))


@SETTINGS
@given(two_coo())
def test_sum_and_hadamard_equal_scipy(pair):
    (Sa, A), (Sb, B) = _both(pair[0]), _both(pair[1])
    np.testing.assert_allclose((A - 0.5 * B).to_dense().numpy(), (Sa - 0.5 * Sb).toarray(),
                               atol=1e-12)
    np.testing.assert_allclose((A * B).to_dense().numpy(), Sa.multiply(Sb).toarray(),
                               atol=1e-12)
