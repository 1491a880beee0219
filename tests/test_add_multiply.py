"""A + B, A - B, alpha * A, A / alpha, -A and A ⊙ B: values, patterns, gradients, errors."""
import math

import pytest
import scipy.sparse as sp
import torch
from torch.autograd import gradcheck
from torch.library import opcheck

import learnsolve as ls
from cases import CASES, assert_close, dense_of, make

ops = torch.ops.learnsolve
SAME_SHAPE = list(CASES)


def _two(case, dtype=torch.float64, device="cpu"):
    Sa, A = make(case, dtype, device, seed=0)
    Sb, B = make(case, dtype, device, seed=1)
    return Sa, A, Sb, B


@pytest.mark.parametrize("case", SAME_SHAPE)
def test_add_and_subtract_match_scipy(case, dtype, device):
    Sa, A, Sb, B = _two(case, dtype, device)
    Da, Db = dense_of(Sa, dtype, device), dense_of(Sb, dtype, device)
    assert_close((A + B).to_dense(), Da + Db, dtype)
    assert_close((A - B).to_dense(), Da - Db, dtype)
    # The pattern is the union of the patterns, explicit zeros included.
    pattern_a = sp.csr_array((torch.ones(A.nnz).numpy(), A.col_indices.cpu().numpy(),
                              A.crow_indices.cpu().numpy()), shape=A.shape)
    pattern_b = sp.csr_array((torch.ones(B.nnz).numpy(), B.col_indices.cpu().numpy(),
                              B.crow_indices.cpu().numpy()), shape=B.shape)
    assert (A + B).nnz == (pattern_a + pattern_b).nnz


def test_add_scales_keep_the_sign_of_zero():
    """A scale given as a number is made into a tensor once and cached: -0.0 is not
    served the tensor of 0.0 (they are equal as keys), which would flip the sign of
    the entries alpha * a of A alone."""
    A = ls.eye(2, dtype=torch.float64)
    B = ls.CSRMatrix.from_dense(torch.tensor([[0.0, 1.0], [0.0, 0.0]], dtype=torch.float64))
    for alpha in (0.0, -0.0, 0.0):
        C = ls.add(A, B, alpha=alpha)           # entries (0, 0), (0, 1), (1, 1)
        alone = C.values[C.col_indices == C.row_indices()]
        assert torch.signbit(alone).tolist() == [math.copysign(1.0, alpha) < 0] * 2


@pytest.mark.parametrize("case", SAME_SHAPE)
def test_hadamard_matches_dense(case, dtype, device):
    Sa, A, Sb, B = _two(case, dtype, device)
    C = A * B
    assert_close(C.to_dense(), dense_of(Sa, dtype, device) * dense_of(Sb, dtype, device), dtype)
    assert C.nnz <= min(A.nnz, B.nnz)


def test_scalars(dtype):
    Sa, A = make("square", dtype)
    D = dense_of(Sa, dtype)
    assert_close((2.5 * A).to_dense(), 2.5 * D, dtype)
    assert_close((A * 2.5).to_dense(), 2.5 * D, dtype)
    assert_close((A / 4).to_dense(), D / 4, dtype)
    assert_close((-A).to_dense(), -D, dtype)
    alpha = torch.tensor(3.0, dtype=dtype)
    assert_close((alpha * A).to_dense(), 3 * D, dtype)
    assert_close((A / alpha).to_dense(), D / 3, dtype)
    assert (alpha * A).pattern is A.pattern


@pytest.mark.parametrize("case", ["square", "empty_rows_cols", "explicit_zeros", "nnz0", "1x1"])
def test_linear_combination_gradcheck(case, device):
    Sa, A, Sb, B = _two(case, torch.float64, device)
    va, vb = A.values.clone().requires_grad_(), B.values.clone().requires_grad_()
    alpha = torch.tensor(0.7, dtype=torch.float64, device=device, requires_grad=True)
    beta = torch.tensor(-1.3, dtype=torch.float64, device=device, requires_grad=True)

    def fn(a, b, alpha, beta):
        return ls.add(A.with_values(a), B.with_values(b), alpha, beta).values

    assert gradcheck(fn, (va, vb, alpha, beta))
    assert gradcheck(lambda a, b: (A.with_values(a) - B.with_values(b)).values, (va, vb))
    assert gradcheck(lambda a, s: (s * A.with_values(a) / s ** 2).values, (va, alpha))
    assert gradcheck(lambda a, b: (A.with_values(a) * B.with_values(b)).values, (va, vb))


def test_hadamard_gradient_is_masked():
    Sa, A, Sb, B = _two("square")
    va, vb = A.values.clone().requires_grad_(), B.values.clone().requires_grad_()
    (A.with_values(va) * B.with_values(vb)).values.sum().backward()
    Da, Db = dense_of(Sa, torch.float64), dense_of(Sb, torch.float64)
    both = (Da != 0) & (Db != 0)
    assert_close(va.grad, (Db * both)[A.row_indices(), A.col_indices], torch.float64)


def test_csr_merge_opcheck():
    Sa, A, Sb, B = _two("square")
    for intersect in (False, True):
        opcheck(ops.csr_merge, (A.crow_indices, A.col_indices, B.crow_indices, B.col_indices,
                                intersect))


def test_add_bad_operands():
    Sa, A = make("square")
    Sw, W = make("wide")
    with pytest.raises(ValueError, match=r"add: expected operands of equal shape"):
        A + W
    with pytest.raises(TypeError, match=r"B: expected dtype torch.float64"):
        A + A.float()
    with pytest.raises(TypeError, match=r"add: expected a CSRMatrix operand, got float"):
        A + 1.0
    with pytest.raises(TypeError, match=r"add: expected a CSRMatrix operand, got Tensor"):
        A - torch.ones(12, 12, dtype=torch.float64)
    with pytest.raises(TypeError, match=r"multiply: expected a number"):
        A * torch.ones(12, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"alpha: expected a 0-d tensor"):
        ls.add(A, A, alpha=torch.ones(2, dtype=torch.float64))
    with pytest.raises(TypeError, match=r"divisor: expected a real number"):
        A / "2"
