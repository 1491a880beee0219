"""A @ x, A @ X, x @ A and the sampled product against scipy / dense torch, with gradients."""
import pytest
import torch
from torch.autograd import gradcheck, gradgradcheck
from torch.library import opcheck

import learnsolve as ls
from cases import CASES, assert_close, dense_of, make, randn

ops = torch.ops.learnsolve


@pytest.mark.parametrize("case", CASES)
def test_spmv_matches_scipy(case, dtype, device):
    S, A = make(case, dtype, device)
    x = randn(A.shape[1], dtype=dtype, device=device)
    expected = torch.tensor(S @ x.double().cpu().numpy(), dtype=dtype, device=device)
    assert_close(A @ x, expected, dtype)


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("k", [1, 3, 8, 11])
def test_spmm_matches_dense(case, k, dtype, device):
    S, A = make(case, dtype, device)
    X = randn(A.shape[1], k, dtype=dtype, device=device)
    assert_close(A @ X, dense_of(S, dtype, device) @ X, dtype)


def test_spmm_non_contiguous_operand(dtype):
    S, A = make("square", dtype)
    X = randn(3, A.shape[1], dtype=dtype).T  # a transposed view
    assert not X.is_contiguous()
    assert_close(A @ X, dense_of(S, dtype) @ X, dtype)


@pytest.mark.parametrize("case", ["square", "wide", "tall"])
def test_rmatmul_matches_dense(case, dtype):
    S, A = make(case, dtype)
    x = randn(A.shape[0], dtype=dtype)
    X = randn(2, A.shape[0], dtype=dtype)
    D = dense_of(S, dtype)
    assert_close(x @ A, x @ D, dtype)
    assert_close(X @ A, X @ D, dtype)


@pytest.mark.parametrize("case", CASES)
def test_spmv_gradcheck(case, device):
    S, A = make(case, torch.float64, device)
    values = A.values.clone().requires_grad_()
    x = randn(A.shape[1], device=device, requires_grad=True)
    assert gradcheck(lambda v, x: A.with_values(v) @ x, (values, x))
    # both gradients at once take the fused backward; each alone, the separate ones
    assert gradgradcheck(lambda v, x: A.with_values(v) @ x, (values, x))
    assert gradgradcheck(lambda v: A.with_values(v) @ x.detach(), (values,))
    assert gradgradcheck(lambda x: A @ x, (x,))


@pytest.mark.parametrize("case", ["square", "empty_rows_cols", "dense_row", "tall", "nnz0"])
@pytest.mark.parametrize("k", [3, 9])
def test_spmm_gradcheck_and_double_backward(case, k, device):
    S, A = make(case, torch.float64, device)
    values = A.values.clone().requires_grad_()
    X = randn(A.shape[1], k, device=device, requires_grad=True)
    assert gradcheck(lambda v, X: A.with_values(v) @ X, (values, X))
    assert gradgradcheck(lambda v, X: A.with_values(v) @ X, (values, X))


def test_spmv_gradient_has_the_pattern_and_matches_dense():
    S, A = make("empty_rows_cols", torch.float64)
    values = A.values.clone().requires_grad_()
    x = randn(A.shape[1], requires_grad=True)
    w = randn(A.shape[0], seed=1)
    ((A.with_values(values) @ x) * w).sum().backward()
    D = dense_of(S, torch.float64).requires_grad_()
    x2 = x.detach().clone().requires_grad_()
    ((D @ x2) * w).sum().backward()
    assert values.grad.shape == (A.nnz,)
    assert_close(values.grad, D.grad[A.row_indices(), A.col_indices], torch.float64)
    assert_close(x.grad, x2.grad, torch.float64)


def test_gradient_reaches_explicit_zeros():
    """A stored zero is part of the pattern: it gets a gradient (paper eq. 13)."""
    S, A = make("explicit_zeros", torch.float64)
    zero = torch.nonzero(A.values == 0).flatten()
    assert zero.numel() > 0
    values = A.values.clone().requires_grad_()
    (A.with_values(values) @ torch.ones(A.shape[1], dtype=torch.float64)).sum().backward()
    assert torch.all(values.grad[zero] == 1.0)


def test_transpose_is_cached_for_the_backward():
    S, A = make("square", torch.float64)
    x = randn(A.shape[1], requires_grad=True)
    (A @ x).sum().backward()
    first = A.pattern.transpose()
    (A @ x).sum().backward()
    assert A.pattern.transpose() is first


@pytest.mark.parametrize("case", ["square", "wide", "empty_rows_cols", "nnz0", "1x1"])
def test_sampled_matmul_matches_dense(case, dtype, device):
    S, A = make(case, dtype, device)
    X = randn(A.shape[0], 4, dtype=dtype, device=device)
    Y = randn(A.shape[1], 4, dtype=dtype, device=device, seed=1)
    out = ls.sampled_matmul(A, X, Y)
    assert out.nnz == A.nnz and torch.equal(out.col_indices, A.col_indices)
    assert_close(out.values, (X @ Y.T)[A.row_indices(), A.col_indices], dtype)
    x, y = X[:, 0].contiguous(), Y[:, 0].contiguous()
    assert_close(ls.sampled_matmul(A, x, y).values,
                 torch.outer(x, y)[A.row_indices(), A.col_indices], dtype)


@pytest.mark.parametrize("case", ["square", "empty_rows_cols", "dense_row", "wide"])
@pytest.mark.parametrize("k", [None, 2])
def test_sampled_matmul_gradcheck(case, k):
    S, A = make(case)
    shape = () if k is None else (k,)
    X = randn(A.shape[0], *shape, requires_grad=True)
    Y = randn(A.shape[1], *shape, seed=1, requires_grad=True)
    assert gradcheck(lambda X, Y: ls.sampled_matmul(A, X, Y).values, (X, Y))
    assert gradgradcheck(lambda X, Y: ls.sampled_matmul(A, X, Y).values, (X, Y))


@pytest.mark.parametrize("case", ["square", "empty_rows_cols", "nnz0"])
def test_opcheck(case):
    S, A = make(case)
    values = A.values.clone().requires_grad_()
    x = randn(A.shape[1], requires_grad=True)
    X = randn(A.shape[1], 2, requires_grad=True)
    Y = randn(A.shape[0], 2, requires_grad=True)
    crow, col = A.crow_indices, A.col_indices
    opcheck(ops.spmv, (crow, col, values, x))
    opcheck(ops.spmv, (crow, col, values, x, *A.pattern.transpose_arrays()))
    opcheck(ops.spmm, (crow, col, values, X))
    opcheck(ops.sampled_matmul, (crow, col, Y, X))
    opcheck(ops.transpose, (crow, col, A.shape[1]))
    opcheck(ops.spmv_backward, (crow, col, values, x, randn(A.shape[0], requires_grad=True)))


def test_matmul_bad_operands():
    S, A = make("square", torch.float64)
    with pytest.raises(ValueError, match=r"x: expected 12 rows"):
        A @ torch.ones(5, dtype=torch.float64)
    with pytest.raises(TypeError, match=r"x: expected dtype torch.float64"):
        A @ torch.ones(12, dtype=torch.float32)
    with pytest.raises(ValueError, match=r"x: expected a 1-D or 2-D tensor"):
        A @ torch.ones(12, 1, 1, dtype=torch.float64)
    with pytest.raises(TypeError, match=r"torch.Tensor or a CSRMatrix"):
        A @ [1.0] * 12
    with pytest.raises(ValueError, match=r"X, Y: expected shapes"):
        ls.sampled_matmul(A, torch.ones(3, 2, dtype=torch.float64),
                          torch.ones(12, 2, dtype=torch.float64))
    with pytest.raises(TypeError, match=r"Y: expected dtype"):
        ls.sampled_matmul(A, torch.ones(12, dtype=torch.float64), torch.ones(12))


def test_device_mismatch():
    """A tensor on another device (the meta device stands in for a GPU) is refused."""
    S, A = make("square", torch.float64)
    other = torch.ones(12, dtype=torch.float64, device="meta")
    with pytest.raises(ValueError, match=r"x: expected a tensor on cpu"):
        A @ other
    with pytest.raises(ValueError, match=r"x: expected a tensor on cpu"):
        other @ A
    with pytest.raises(ValueError, match=r"X: expected a tensor on cpu"):
        ls.sampled_matmul(A, other, other)
    with pytest.raises(ValueError, match=r"B: expected a tensor on cpu"):
        A @ A.to("meta")
    with pytest.raises(ValueError, match=r"values: expected a tensor on cpu"):
        A.with_values(A.values.to("meta"))


def test_native_op_rejects_bad_arguments():
    """The raw ops check what is cheap to check (dtype, rank, lengths)."""
    S, A = make("square", torch.float64)
    crow, col, v = A.crow_indices, A.col_indices, A.values
    with pytest.raises(RuntimeError, match=r"spmv: expected crow to have dtype int64"):
        ops.spmv(crow.int(), col, v, torch.ones(12, dtype=torch.float64))
    with pytest.raises(RuntimeError, match=r"spmv: expected values and x to have the same dtype"):
        ops.spmv(crow, col, v, torch.ones(12))
    with pytest.raises(RuntimeError, match=r"spmv: expected values and col of equal length"):
        ops.spmv(crow, col, v[:-1], torch.ones(12, dtype=torch.float64))
    with pytest.raises(RuntimeError, match=r"spmm: expected x to be 2-D"):
        ops.spmm(crow, col, v, torch.ones(12, dtype=torch.float64))
