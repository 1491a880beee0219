"""The raw ops of torch.ops.learnsolve: opcheck (schema, fake kernel, autograd
registration), gradcheck and double backward of the value-moving ops, and the
transposed products against dense torch."""
import pytest
import torch
from torch.autograd import gradcheck, gradgradcheck
from torch.library import opcheck

import learnsolve as ls
from cases import assert_close, dense_of, make, randn

ops = torch.ops.learnsolve


def _leaf(t):
    return t.detach().clone().requires_grad_()


@pytest.mark.parametrize("case", ["square", "wide", "empty_rows_cols", "nnz0"])
def test_transposed_products(case, dtype):
    S, A = make(case, dtype)
    D = dense_of(S, dtype)
    t = A._pattern.transpose_arrays()
    x = randn(A.shape[0], dtype=dtype)
    X = randn(A.shape[0], 3, dtype=dtype)
    assert_close(ops.spmv(A.crow_indices, A.col_indices, A.values, x, *t, True), D.T @ x, dtype)
    assert_close(ops.spmm(A.crow_indices, A.col_indices, A.values, X, *t, True), D.T @ X, dtype)


@pytest.mark.parametrize("case", ["square", "tall", "empty_rows_cols"])
def test_rmatmul_gradcheck(case):
    S, A = make(case)
    values = _leaf(A.values)
    x = randn(A.shape[0], requires_grad=True)
    X = randn(2, A.shape[0], requires_grad=True)
    assert gradcheck(lambda v, x: x @ A.with_values(v), (values, x))
    assert gradgradcheck(lambda v, X: X @ A.with_values(v), (values, X))


def test_transposed_product_needs_the_transpose():
    S, A = make("square")
    with pytest.raises(RuntimeError, match=r"spmv: transpose=True needs the transpose pattern"):
        ops.spmv(A.crow_indices, A.col_indices, A.values, torch.ones(12, dtype=torch.float64),
                 transpose=True)


def test_opcheck_transposed_and_value_ops():
    S, A = make("square")
    Sb, B = make("square", seed=1)
    crow, col = A.crow_indices, A.col_indices
    t = A._pattern.transpose_arrays()
    values = _leaf(A.values)
    opcheck(ops.spmv, (crow, col, values, randn(12, requires_grad=True), *t, True))
    opcheck(ops.spmm, (crow, col, values, randn(12, 2, requires_grad=True), *t, True))
    alpha = torch.tensor(0.5, dtype=torch.float64, requires_grad=True)
    opcheck(ops.gather_scaled, (values, t[2], alpha))
    opcheck(ops.gather_scaled, (values, t[2]))
    opcheck(ops.scatter_add_scaled, (values, t[2], A.nnz, alpha))
    union, map_a, map_b = A._pattern.union(B._pattern)
    opcheck(ops.csr_add_values, (values, map_a, _leaf(B.values), map_b, union.nnz, alpha,
                                 torch.tensor(2.0, dtype=torch.float64)))
    C = A @ B
    opcheck(ops.spgemm_grad_b, (crow, col, values, C.crow_indices, C.col_indices,
                                randn(C.nnz, requires_grad=True), B.crow_indices, B.col_indices,
                                12))


def test_gather_and_scatter_gradients():
    source = randn(6, requires_grad=True)
    index = torch.tensor([5, 0, 0, 3, 2])  # repeated and missing positions
    alpha = torch.tensor(1.5, dtype=torch.float64, requires_grad=True)
    assert gradcheck(lambda s, a: ops.gather_scaled(s, index, a), (source, alpha))
    assert gradgradcheck(lambda s, a: ops.gather_scaled(s, index, a), (source, alpha))
    g = randn(5, requires_grad=True)
    assert gradcheck(lambda s, a: ops.scatter_add_scaled(s, index, 6, a), (g, alpha))
    assert gradgradcheck(lambda s, a: ops.scatter_add_scaled(s, index, 6, a), (g, alpha))
    expected = torch.zeros(6, dtype=torch.float64).index_add(0, index, 1.5 * g.detach())
    assert_close(ops.scatter_add_scaled(g.detach(), index, 6, alpha.detach()), expected,
                 torch.float64)


def test_double_backward_of_transpose_and_add():
    S, A = make("square")
    Sb, B = make("square", seed=1)
    va, vb = _leaf(A.values), _leaf(B.values)
    beta = torch.tensor(-0.3, dtype=torch.float64, requires_grad=True)
    assert gradgradcheck(lambda v: A.with_values(v).T.values, (va,))
    assert gradgradcheck(lambda a, b, beta: ls.add(A.with_values(a), B.with_values(b), 2.0,
                                                   beta).values, (va, vb, beta))
