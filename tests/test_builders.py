"""eye, diag, diags and kron against scipy and dense torch."""
import numpy as np
import pytest
import scipy.sparse as sp
import torch
from torch.autograd import gradcheck

import learnsolve as ls
from cases import make


@pytest.mark.parametrize("n, m", [(3, None), (2, 4), (4, 2), (1, 1), (0, 0)])
def test_eye(n, m, dtype):
    I = ls.eye(n, m, dtype=dtype)
    assert I.dtype == dtype
    np.testing.assert_array_equal(I.to_dense().numpy(), np.eye(n, m))


@pytest.mark.parametrize("k", [-2, 0, 1])
def test_diag_and_gradient(k):
    v = torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64, requires_grad=True)
    D = ls.diag(v, k)
    assert torch.equal(D.to_dense(), torch.diag(v.detach(), k))
    assert gradcheck(lambda v: ls.diag(v, k).to_dense(), (v,))


@pytest.mark.parametrize("offsets, shape", [([-1, 0, 1], (5, 5)), ([0, 2], (4, 6)),
                                            ([-3, 1], (6, 3)), (0, (3, 3))])
def test_diags_matches_scipy(offsets, shape):
    ks = [offsets] if isinstance(offsets, int) else offsets
    m, n = shape
    lengths = [max(0, min(m + min(k, 0), n - max(k, 0))) for k in ks]
    rng = np.random.default_rng(0)
    diagonals = [rng.standard_normal(length) for length in lengths]
    arg = diagonals[0] if isinstance(offsets, int) else diagonals
    expected = sp.diags_array(arg, offsets=offsets, shape=shape).toarray()
    A = ls.diags(arg, offsets, shape=shape, dtype=torch.float64)
    np.testing.assert_allclose(A.to_dense().numpy(), expected)


def test_diags_scalars_default_shape_and_gradient():
    A = ls.diags([-1.0, 2.0, -1.0], [-1, 0, 1], shape=(4, 4), dtype=torch.float64)
    expected = sp.diags_array([-1.0, 2.0, -1.0], offsets=[-1, 0, 1], shape=(4, 4)).toarray()
    np.testing.assert_array_equal(A.to_dense().numpy(), expected)
    d = torch.ones(3, dtype=torch.float64, requires_grad=True)
    assert ls.diags([d], [1]).shape == (4, 4)
    assert gradcheck(lambda d: ls.diags([d, -d], [1, -1]).to_dense(), (d,))


@pytest.mark.parametrize("diagonals, offsets, shape, message", [
    ([[1.0, 2.0]], [0], (3, 3), r"diagonals: expected length 3 for offset 0"),
    ([[1.0]], [0, 1], None, r"expected one offset per diagonal"),
    ([[1.0], [1.0]], [0, 0], (1, 1), r"offsets: expected distinct offsets"),
    ([1.0], [0], None, r"shape: needed when the first diagonal is a number"),
])
def test_diags_errors(diagonals, offsets, shape, message):
    with pytest.raises(ValueError, match=message):
        ls.diags(diagonals, offsets, shape=shape)


@pytest.mark.parametrize("a, b", [("square", "wide"), ("tall", "1x1"), ("empty_rows_cols", "nnz0"),
                                  ("dense_row", "explicit_zeros"), ("no_rows", "square")])
def test_kron_matches_scipy(a, b, dtype):
    Sa, A = make(a, dtype)
    Sb, B = make(b, dtype, seed=1)
    K = ls.kron(A, B)
    expected = sp.csr_array(sp.kron(Sa, Sb))
    expected.sum_duplicates()
    assert K.shape == expected.shape
    np.testing.assert_allclose(K.to_dense().double().numpy(), expected.toarray(), rtol=1e-6)
    from learnsolve.core.validation import check_csr_arrays
    check_csr_arrays(K.crow_indices, K.col_indices, K.values, K.shape)  # canonical


def test_kron_gradcheck_and_poisson_2d():
    Sa, A = make("square")
    Sb, B = make("wide", seed=1)
    va, vb = A.values.clone().requires_grad_(), B.values.clone().requires_grad_()
    assert gradcheck(lambda a, b: ls.kron(A.with_values(a), B.with_values(b)).values, (va, vb))
    n = 5
    T = ls.diags([-1.0, 2.0, -1.0], [-1, 0, 1], shape=(n, n), dtype=torch.float64)
    I = ls.eye(n, dtype=torch.float64)
    P = ls.kron(I, T) + ls.kron(T, I)
    Ts = sp.diags_array([-1.0, 2.0, -1.0], offsets=[-1, 0, 1], shape=(n, n))
    expected = (sp.kron(sp.eye_array(n), Ts) + sp.kron(Ts, sp.eye_array(n))).toarray()
    np.testing.assert_array_equal(P.to_dense().numpy(), expected)


def test_kron_errors():
    S, A = make("square")
    with pytest.raises(TypeError, match=r"kron: expected two CSRMatrix"):
        ls.kron(A, A.to_dense())
    with pytest.raises(TypeError, match=r"B: expected dtype"):
        ls.kron(A, A.float())
