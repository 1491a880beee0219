"""The raw ops of torch.ops.learnsolve: gradcheck and double backward of the
value-moving ops, and the transposed products against dense torch (their opcheck
samples are in test_op_registry.py)."""
import pytest
import torch
from torch.autograd import gradcheck, gradgradcheck

import learnsolve as ls
from cases import DEVICES, assert_close, dense_of, make, randn

ops = torch.ops.learnsolve


def _leaf(t):
    return t.detach().clone().requires_grad_()


@pytest.mark.parametrize("case", ["square", "wide", "empty_rows_cols", "nnz0"])
def test_transposed_products(case, dtype):
    S, A = make(case, dtype)
    D = dense_of(S, dtype)
    t = A.pattern.transpose_arrays()
    x = randn(A.shape[0], dtype=dtype)
    assert_close(ops.spmv(A.crow_indices, A.col_indices, A.values, x, *t, True), D.T @ x, dtype)
    for k in (3, 8, 11):  # the columns in blocks of 8 and the rest
        X = randn(A.shape[0], k, dtype=dtype)
        assert_close(ops.spmm(A.crow_indices, A.col_indices, A.values, X, *t, True), D.T @ X,
                     dtype)


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


@pytest.mark.parametrize("case", ["square", "wide", "empty_rows_cols", "nnz0"])
def test_int32_and_int64_columns_agree(case):
    """The products read the cached int32 copy of the columns; int64 gives the same."""
    S, A = make(case)
    crow, col64 = A.crow_indices, A.col_indices
    col32 = A.pattern.kernel_col()
    assert col32.dtype == torch.int32 and torch.equal(col32.long(), col64)
    x, X = randn(A.shape[1]), randn(A.shape[1], 3)
    g, G = randn(A.shape[0], seed=1), randn(A.shape[0], 3, seed=1)
    t = A.pattern.transpose_arrays()
    for col in (col32, col64):
        assert_close(ops.spmv(crow, col, A.values, x), dense_of(S, torch.float64) @ x,
                     torch.float64)
    assert torch.equal(ops.spmm(crow, col32, A.values, X), ops.spmm(crow, col64, A.values, X))
    assert torch.equal(ops.spmv(crow, col32, A.values, g, *t, True),
                       ops.spmv(crow, col64, A.values, g, *t, True))
    assert torch.equal(ops.sampled_matmul(crow, col32, G, X),
                       ops.sampled_matmul(crow, col64, G, X))
    for one, other in zip(ops.spmv_backward(crow, col32, A.values, x, g),
                          ops.spmv_backward(crow, col64, A.values, x, g)):
        assert torch.equal(one, other)
    for one, other in zip(ops.transpose(crow, col32, A.shape[1]), t):
        assert torch.equal(one, other)
    with pytest.raises(RuntimeError, match=r"spmv: expected col to have dtype int64 or int32"):
        ops.spmv(crow, col64.short(), A.values, x)


@pytest.mark.parametrize("device", DEVICES)
def test_csr_check_finds_the_first_offence_of_each_kind(device):
    """[row whose pointers leave [0, nnz] or decrease, column out of range, entry not
    above its predecessor in the row], -1 for none; rows with bad pointers are not read."""
    def check(crow, col, ncols):
        return ops.csr_check(torch.tensor(crow, device=device),
                             torch.tensor(col, dtype=torch.long, device=device),
                             ncols).tolist()
    assert check([0, 2, 3], [0, 1, 1], 2) == [-1, -1, -1]
    assert check([0, 2, 3], [0, 1, 1000000], 2) == [-1, 2, -1]
    assert check([0, 2, 3], [1, 0, -1], 2) == [-1, 2, 1]
    assert check([0, 2, 2, 4], [0, 0, 1, 1], 2) == [-1, -1, 1]
    assert check([0, 5, 3], [1, 0, 1], 2) == [0, -1, -1]                 # past nnz: not read
    assert check([0, 2, 1], [1, 0, 5], 2) == [1, -1, 1]
    assert check([-7, 0, 3], [0, 1, 0], 2) == [0, -1, 2]
    assert check([0], [], 0) == [-1, -1, -1]
    rows = 100_000                                                      # several threads
    crow = torch.arange(rows + 1, device=device) * 3
    col = torch.arange(3 * rows, device=device) % 3                    # rows 0, 1, 2
    col[[70_001, 150_001]] = torch.tensor([9, 0], device=device)
    assert ops.csr_check(crow, col, 5).tolist() == [-1, 70_001, 150_001]
