"""A @ B for two CSRMatrix: values, pattern, gradients, caching, errors."""
import numpy as np
import pytest
import scipy.sparse as sp
import torch
from torch.autograd import gradcheck, gradgradcheck
from torch.library import opcheck

import learnsolve as ls
from cases import CASES, assert_close, dense_of

ops = torch.ops.learnsolve

# (left case, right case) with compatible shapes
PAIRS = [("square", "square"), ("wide", "tall"), ("tall", "wide"), ("1x1", "1x1"),
         ("empty_rows_cols", "empty_rows_cols_T"), ("nnz0", "dense_row_T"), ("dense_row", "dense_row_T"),
         ("no_cols", "no_rows"), ("no_rows", "no_rows_T")]


def _operand(name, dtype, device, seed):
    base, transposed = (name[:-2], True) if name.endswith("_T") else (name, False)
    S = CASES[base](seed)
    S = sp.csr_array(S.T) if transposed else S
    return S, ls.CSRMatrix.from_scipy(S, dtype=dtype, device=device)


def _pair(pair, dtype=torch.float64, device="cpu"):
    (Sa, A), (Sb, B) = _operand(pair[0], dtype, device, 0), _operand(pair[1], dtype, device, 1)
    if A.shape[1] != B.shape[0]:  # nnz0 is 4x6; fit the right operand
        Sb = sp.random_array((A.shape[1], 5), density=0.4, rng=np.random.default_rng(1),
                             format="csr")
        B = ls.CSRMatrix.from_scipy(Sb, dtype=dtype, device=device)
    return Sa, A, Sb, B


@pytest.mark.parametrize("pair", PAIRS, ids=["x".join(p) for p in PAIRS])
def test_spgemm_matches_scipy(pair, dtype, device):
    Sa, A, Sb, B = _pair(pair, dtype, device)
    C = A @ B
    expected = sp.csr_array(Sa @ Sb)
    expected.sum_duplicates()
    assert C.shape == expected.shape
    assert_close(C.to_dense(), torch.tensor(expected.toarray(), dtype=dtype, device=device), dtype)
    # The pattern is the symbolic product: scipy's, with its cancellations kept.
    assert torch.equal(C.crow_indices.cpu(), torch.from_numpy(expected.indptr.astype(np.int64)))
    assert torch.equal(C.col_indices.cpu(), torch.from_numpy(expected.indices.astype(np.int64)))


def test_spgemm_keeps_structural_zeros():
    """[1 1] @ [1, -1]^T cancels to 0 but stays stored: the pattern is structural."""
    A = ls.CSRMatrix.from_dense(torch.tensor([[1.0, 1.0]], dtype=torch.float64))
    B = ls.CSRMatrix.from_dense(torch.tensor([[1.0], [-1.0]], dtype=torch.float64))
    C = A @ B
    assert C.nnz == 1 and C.values.item() == 0.0


@pytest.mark.parametrize("pair", PAIRS, ids=["x".join(p) for p in PAIRS])
def test_spgemm_gradcheck(pair, device):
    Sa, A, Sb, B = _pair(pair, torch.float64, device)
    va, vb = A.values.clone().requires_grad_(), B.values.clone().requires_grad_()
    fn = lambda a, b: (A.with_values(a) @ B.with_values(b)).values  # noqa: E731
    assert gradcheck(fn, (va, vb))


@pytest.mark.parametrize("pair", PAIRS[:3], ids=["x".join(p) for p in PAIRS[:3]])
def test_spgemm_double_backward(pair):
    Sa, A, Sb, B = _pair(pair)
    va, vb = A.values.clone().requires_grad_(), B.values.clone().requires_grad_()
    assert gradgradcheck(lambda a, b: (A.with_values(a) @ B.with_values(b)).values, (va, vb))


def test_spgemm_gradient_matches_dense_masked():
    Sa, A, Sb, B = _pair(("square", "square"))
    va, vb = A.values.clone().requires_grad_(), B.values.clone().requires_grad_()
    W = torch.randn(A.shape[0], B.shape[1], dtype=torch.float64)
    C = A.with_values(va) @ B.with_values(vb)
    (C.to_dense() * W).sum().backward()
    Da, Db = dense_of(Sa, torch.float64), dense_of(Sb, torch.float64)
    Wc = torch.zeros_like(W)
    Wc[C.row_indices(), C.col_indices] = W[C.row_indices(), C.col_indices]
    assert_close(va.grad, (Wc @ Db.T)[A.row_indices(), A.col_indices], torch.float64)
    assert_close(vb.grad, (Da.T @ Wc)[B.row_indices(), B.col_indices], torch.float64)


def test_symbolic_product_is_cached():
    Sa, A, Sb, B = _pair(("square", "square"))
    C1 = A @ B
    C2 = A.with_values(A.values * 2) @ B
    assert C1.pattern is C2.pattern
    assert_close(C2.values, 2 * C1.values, torch.float64)


def test_spgemm_opcheck():
    Sa, A, Sb, B = _pair(("square", "square"))
    C = A @ B
    va, vb = A.values.clone().requires_grad_(), B.values.clone().requires_grad_()
    opcheck(ops.spgemm_symbolic, (A.crow_indices, A.col_indices, B.crow_indices, B.col_indices,
                                  B.shape[1]))
    opcheck(ops.spgemm_numeric, (A.crow_indices, A.col_indices, va, B.crow_indices,
                                 B.col_indices, vb, C.crow_indices, C.col_indices, B.shape[1]))
    g = torch.randn(C.nnz, dtype=torch.float64, requires_grad=True)
    opcheck(ops.spgemm_masked, (A.crow_indices, A.col_indices, C.crow_indices, C.col_indices, g,
                                B.crow_indices, B.col_indices, vb, B.shape[1]))


def test_spgemm_bad_operands():
    Sa, A, Sb, B = _pair(("wide", "tall"))
    with pytest.raises(ValueError, match=r"matmul: expected B with 11 rows"):
        A @ A
    with pytest.raises(TypeError, match=r"B: expected dtype torch.float64"):
        A @ B.float()
