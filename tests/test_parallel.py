"""The kernels on matrices big enough to run on several threads: the same
results as scipy, and bit for bit the same on one thread and on two (each row
is computed by one thread, in a fixed order)."""
import numpy as np
import pytest
import scipy.sparse as sp
import torch

import learnsolve as ls
from cases import on_threads, poisson_scipy


@pytest.fixture(scope="module")
def poisson():
    S = poisson_scipy(120)
    rng = np.random.default_rng(0)
    S.data = S.data * rng.uniform(0.5, 1.5, S.nnz)  # unsymmetric values
    return S, ls.CSRMatrix.from_scipy(S)


OPS = {
    "spmv": lambda A, x, X: A @ x,
    "spmm": lambda A, x, X: A @ X,
    "spgemm": lambda A, x, X: (A @ A.T).values,
    "add": lambda A, x, X: (A - 2.0 * A.T).values,
    "hadamard": lambda A, x, X: (A * A.T).values,
    "sampled": lambda A, x, X: ls.sampled_matmul(A, X, X).values,
    "transpose": lambda A, x, X: A.clone().T.values,
}


@pytest.mark.parametrize("op", OPS)
def test_one_and_two_threads_agree(poisson, op):
    S, A = poisson
    x = torch.randn(A.shape[1], dtype=torch.float64)
    X = torch.randn(A.shape[1], 4, dtype=torch.float64)
    one = on_threads(1, lambda: OPS[op](A, x, X))
    two = on_threads(2, lambda: OPS[op](A, x, X))
    assert torch.equal(one, two)


def test_large_products_match_scipy(poisson):
    S, A = poisson
    x = np.random.default_rng(1).standard_normal(A.shape[1])
    np.testing.assert_allclose((A @ torch.from_numpy(x)).numpy(), S @ x, rtol=1e-13, atol=1e-13)
    C = A @ A.T
    expected = sp.csr_array(S @ S.T)
    expected.sort_indices()
    np.testing.assert_array_equal(C.crow_indices.numpy(), expected.indptr)
    np.testing.assert_array_equal(C.col_indices.numpy(), expected.indices)
    np.testing.assert_allclose(C.values.numpy(), expected.data, rtol=1e-13, atol=1e-13)


def test_large_spgemm_backward_matches_scipy(poisson):
    """d(A A)/dA on the parallel path equals (G A^T + A^T G) ⊙ mask(A)."""
    S, A = poisson
    v = A.values.clone().requires_grad_()
    B = A.with_values(v)
    C = B @ B
    w = torch.randn(C.nnz, dtype=torch.float64)
    (C.values * w).sum().backward()
    G = C.detach().with_values(w).to_scipy()
    reference = sp.csr_array(G @ S.T + S.T @ G)
    expected = reference[A.row_indices().numpy().copy(), A.col_indices.numpy().copy()]
    np.testing.assert_allclose(v.grad.numpy(), np.asarray(expected).ravel(), rtol=1e-12,
                               atol=1e-12)
