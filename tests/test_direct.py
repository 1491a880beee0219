"""spsolve, splu and the batched solves: against scipy, gradients, reuse of the
factorisation, block_diag, and the errors."""
import numpy as np
import pytest
import scipy.sparse as sp
import scipy.sparse.linalg as sla
import torch
from torch.autograd import gradcheck, gradgradcheck

import learnsolve as ls
from cases import assert_close, poisson_scipy, randn
from learnsolve.linalg import BatchedLU, splu, splu_batched, spsolve
from learnsolve.linalg import direct


def _random(n, seed, shift=2.0):
    rng = np.random.default_rng(seed)
    S = sp.random_array((n, n), density=0.2, format="csr", rng=rng) + shift * sp.eye_array(n)
    S = sp.csr_array(S)
    S.sort_indices()
    return S


def _needs_pivoting(n, seed):
    """Unsymmetric, zero diagonal: a permutation times a well-conditioned matrix."""
    rng = np.random.default_rng(seed)
    P = sp.csr_array((np.ones(n), (np.arange(n), rng.permutation(n))), shape=(n, n))
    S = sp.csr_array(P @ _random(n, seed, shift=3.0))
    S.setdiag(0.0)
    S.eliminate_zeros()
    S.sort_indices()
    return S


MATRICES = {
    "random": lambda: _random(40, 0),
    "poisson": lambda: poisson_scipy(8),
    "pivoting": lambda: _needs_pivoting(30, 1),
    "1x1": lambda: sp.csr_array(np.array([[-2.5]])),
}


@pytest.mark.parametrize("name", list(MATRICES))
@pytest.mark.parametrize("columns", [None, 4])
def test_spsolve_matches_scipy(name, columns, dtype, device):
    S = MATRICES[name]()
    A = ls.CSRMatrix.from_scipy(S, dtype=dtype, device=device)
    n = S.shape[0]
    b = randn(n, dtype=dtype, device=device) if columns is None else randn(
        n, columns, dtype=dtype, device=device)
    x = spsolve(A, b)
    expected = sla.spsolve(sp.csc_array(S), b.cpu().double().numpy())
    assert x.shape == b.shape and x.dtype == dtype and x.device == b.device
    tol = dict(rtol=1e-4, atol=1e-4) if dtype == torch.float32 else dict(rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(x.cpu().double(), torch.tensor(expected).reshape(b.shape), **tol)


@pytest.mark.parametrize("name", ["random", "pivoting"])
def test_splu_solves_and_transposed_solves(name):
    S = MATRICES[name]()
    A = ls.CSRMatrix.from_scipy(S)
    lu = splu(A)
    for trans in (False, True):
        b = randn(S.shape[0], 3)
        x = lu.solve(b, trans=trans)
        D = torch.tensor(S.toarray())
        assert_close((D.T if trans else D) @ x, b, torch.float64)
    assert lu.shape == A.shape and lu.fill_nnz >= A.nnz


@pytest.mark.parametrize("trans", [False, True])
@pytest.mark.parametrize("columns", [None, 2])
def test_solves_with_the_factors_match_superlu(trans, columns):
    """The path of matrices on a GPU (triangular solves with L and U on the
    device), run here on the CPU: the same solution as SuperLU's solve."""
    S = MATRICES["pivoting"]()
    lu = splu(ls.CSRMatrix.from_scipy(S))
    b = randn(30) if columns is None else randn(30, columns)
    assert_close(lu._solve_with_factors(b, trans), lu._solve_now(b, trans), torch.float64)


@pytest.mark.parametrize("name", ["random", "pivoting"])
@pytest.mark.parametrize("trans", [False, True])
def test_gradcheck(name, trans):
    S = MATRICES[name]()
    A = ls.CSRMatrix.from_scipy(S)
    values = A.values.clone().requires_grad_()
    b = randn(S.shape[0], 2, requires_grad=True)

    def solve(v, b):
        return splu(A.with_values(v)).solve(b, trans=trans)

    assert gradcheck(solve, (values, b))
    assert gradgradcheck(solve, (values, b))
    assert gradcheck(lambda v, b: spsolve(A.with_values(v), b), (values, b[:, 0]))


def test_gradient_matches_dense():
    S = MATRICES["pivoting"]()
    A = ls.CSRMatrix.from_scipy(S)
    values = A.values.clone().requires_grad_()
    b = randn(30, requires_grad=True)
    spsolve(A.with_values(values), b).square().sum().backward()
    dense_values = A.values.clone().requires_grad_()
    b2 = b.detach().clone().requires_grad_()
    torch.linalg.solve(A.with_values(dense_values).to_dense(), b2).square().sum().backward()
    assert_close(values.grad, dense_values.grad, torch.float64)
    assert_close(b.grad, b2.grad, torch.float64)


def test_backward_reuses_the_factorisation(monkeypatch):
    factorisations = []
    real_splu = direct.scipy.sparse.linalg.splu
    monkeypatch.setattr(direct.scipy.sparse.linalg, "splu",
                        lambda *args, **kwargs: factorisations.append(1) or real_splu(*args,
                                                                                          **kwargs))
    A = ls.CSRMatrix.from_scipy(MATRICES["random"]())
    values = A.values.clone().requires_grad_()
    lu = splu(A.with_values(values))
    x = lu.solve(randn(40, requires_grad=True))
    y = lu.solve(randn(40, seed=1), trans=True)
    (x.sum() + y.sum()).backward()
    assert len(factorisations) == 1


@pytest.mark.parametrize("dense", [
    [[1.0, 2.0], [2.0, 4.0]],                     # singular
    [[1.0, 0.0], [2.0, 0.0]],                     # an empty column
    [[1.0, 3.0], [0.0, 0.0]],                     # an empty row
])
def test_singular_matrix_raises(dense):
    A = ls.CSRMatrix.from_dense(torch.tensor(dense, dtype=torch.float64))
    with pytest.raises(torch.linalg.LinAlgError, match="A is singular"):
        spsolve(A, torch.ones(2, dtype=torch.float64))


def test_numerically_singular_raises_rather_than_returning_inf():
    A = ls.CSRMatrix.from_dense(torch.tensor([[1e-20, 1.0], [0.0, 1e-20]],
                                             dtype=torch.float64))
    with pytest.raises(torch.linalg.LinAlgError, match="not finite"):
        spsolve(A, torch.tensor([1e300, 1e300], dtype=torch.float64))


@pytest.mark.parametrize("bad, error, message", [
    (lambda A, b: spsolve(ls.CSRMatrix.from_dense(torch.ones(2, 3, dtype=torch.float64)), b),
     ValueError, "A: expected a square matrix"),
    (lambda A, b: spsolve(A.to_dense(), b), TypeError, "A: expected a learnsolve.CSRMatrix"),
    (lambda A, b: spsolve(A, b[:2]), ValueError, r"b: expected shape \(3,\)"),
    (lambda A, b: spsolve(A, b.float()), TypeError, "b: expected dtype torch.float64"),
    (lambda A, b: splu(A).solve(b.reshape(1, 3)), ValueError, "b: expected shape"),
    (lambda A, b: spsolve(A.with_values(A.values * float("nan")), b), ValueError,
     "A: expected finite values"),
])
def test_bad_input(bad, error, message):
    A = ls.CSRMatrix.from_scipy(_random(3, 2))
    with pytest.raises(error, match=message):
        bad(A, torch.ones(3, dtype=torch.float64))


def test_empty_system():
    A = ls.CSRMatrix.from_scipy(sp.csr_array((0, 0)))
    assert spsolve(A, torch.zeros(0, dtype=torch.float64)).shape == (0,)


# --------------------------------------------------------------------------- block_diag


def test_block_diag_matches_scipy(dtype):
    blocks = [_random(3, 0), sp.csr_array((2, 4)), _random(1, 1), sp.csr_array(np.ones((2, 1)))]
    A = ls.block_diag([ls.CSRMatrix.from_scipy(S, dtype=dtype) for S in blocks])
    expected = sp.block_diag(blocks).toarray()
    assert A.shape == expected.shape
    torch.testing.assert_close(A.to_dense(), torch.tensor(expected, dtype=dtype))


def test_block_diag_is_differentiable():
    blocks = [ls.CSRMatrix.from_scipy(_random(4, s)) for s in range(3)]
    values = [B.values.clone().requires_grad_() for B in blocks]
    x = randn(12)
    assert gradcheck(lambda *v: ls.block_diag([B.with_values(w) for B, w in zip(blocks, v)]) @ x,
                     tuple(values))


def test_block_diag_bad_input():
    with pytest.raises(ValueError, match="matrices: expected at least one"):
        ls.block_diag([])
    with pytest.raises(TypeError, match=r"matrices\[1\]: expected a CSRMatrix"):
        ls.block_diag([ls.eye(2), torch.eye(2)])
    with pytest.raises(TypeError, match=r"matrices\[1\]: expected dtype"):
        ls.block_diag([ls.eye(2), ls.eye(2, dtype=torch.float64)])


# --------------------------------------------------------------------------- batched


def _blocks(count=6):
    return [_random(5 + (i % 3), 10 + i) for i in range(count)]


def test_batched_matches_scipy_per_block():
    S = _blocks()
    lu = splu_batched([ls.CSRMatrix.from_scipy(B) for B in S])
    assert isinstance(lu, BatchedLU) and len(lu) == 6
    parts = [randn(B.shape[0], 2, seed=i) for i, B in enumerate(S)]
    for trans in (False, True):
        xs = lu.solve(parts, trans=trans)
        stacked = lu.solve(torch.cat(parts), trans=trans)
        for i, (B, b, x) in enumerate(zip(S, parts, xs)):
            expected = sla.spsolve(sp.csc_array(B.T if trans else B), b.numpy())
            assert_close(x, torch.tensor(expected), torch.float64)
            assert_close(stacked[lu.offsets[i]:lu.offsets[i + 1]], x, torch.float64)


def test_batched_gradcheck():
    S = _blocks(3)
    blocks = [ls.CSRMatrix.from_scipy(B) for B in S]
    values = [B.values.clone().requires_grad_() for B in blocks]
    b = randn(sum(B.shape[0] for B in S), 2, requires_grad=True)

    def solve(b, *v):
        return splu_batched([B.with_values(w) for B, w in zip(blocks, v)]).solve(b)

    assert gradcheck(solve, (b, *values))
    assert gradgradcheck(solve, (b, *values))


def test_batched_singular_block_raises():
    blocks = [ls.eye(2, dtype=torch.float64), ls.CSRMatrix.from_dense(
        torch.tensor([[1.0, 1.0], [1.0, 1.0]], dtype=torch.float64))]
    with pytest.raises(torch.linalg.LinAlgError, match="singular"):
        splu_batched(blocks)


def test_batched_bad_input():
    blocks = [ls.eye(2, dtype=torch.float64), ls.eye(3, dtype=torch.float64)]
    with pytest.raises(ValueError, match=r"matrices\[1\]: expected a square matrix"):
        splu_batched([blocks[0], ls.CSRMatrix.from_dense(torch.ones(2, 3, dtype=torch.float64))])
    lu = splu_batched(blocks)
    ones = torch.ones(5, dtype=torch.float64)
    with pytest.raises(ValueError, match="b: expected 2 right-hand sides"):
        lu.solve([ones[:2]])
    with pytest.raises(ValueError, match=r"b\[1\]: expected shape \(3,\)"):
        lu.solve([ones[:2], ones[:2]])
    with pytest.raises(TypeError, match=r"b\[0\]: expected a torch.Tensor"):
        lu.solve([[1.0, 1.0], ones[:3]])
    with pytest.raises(ValueError, match=r"b: expected shape \(5,\)"):
        lu.solve(ones[:4])
