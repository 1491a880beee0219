"""SPAI: the learned sparse approximate inverse against dense torch, spai_loss against
the dense ||I - M A||_F^2, spai_classical against per-row numpy least squares, and
gradient descent reaching the classical minimum (the paper's fig. 19)."""
import numpy as np
import pytest
import scipy.sparse as sp
import torch
from torch.autograd import gradcheck

import learnsolve as ls
from cases import assert_close, poisson_scipy, randn
from learnsolve.problems import poisson_2d
from learnsolve.solvers.spai import SPAI, spai_classical, spai_loss

LOOSE = {torch.float32: dict(rtol=1e-4, atol=1e-4), torch.float64: dict(rtol=1e-10, atol=1e-10)}


def _random_pattern(n, density, seed, dtype=torch.float64, device="cpu"):
    """A random square pattern with empty rows and rows without a diagonal entry."""
    S = sp.random_array((n, n), density=density, format="csr", rng=np.random.default_rng(seed))
    S = S.tolil()
    S[1, :] = 0
    S = sp.csr_array(S)
    S.eliminate_zeros()
    return S, ls.CSRMatrix.from_scipy(S, dtype=dtype, device=device)


def _dense_m(model, A=None):
    """``M = W D^{-1}`` for ``A`` (``W`` without ``A``), dense."""
    return model.matrix(A).to_dense().detach()


def _numpy_spai(S, P):
    """The classical SPAI, one least-squares problem per row of M, in a loop."""
    A = S.toarray()
    n = A.shape[0]
    M = np.zeros((n, n))
    for k in range(n):
        J = P.indices[P.indptr[k]:P.indptr[k + 1]]
        if J.size == 0:
            continue
        I = np.nonzero(np.any(A[J, :] != 0, axis=0))[0]
        e = (I == k).astype(float)
        m, *_ = np.linalg.lstsq(A[np.ix_(J, I)].T, e, rcond=None)
        M[k, J] = m
    return M


# ------------------------------------------------------------------ SPAI module

@pytest.mark.parametrize("symmetric", [False, True])
@pytest.mark.parametrize("columns", [None, 3])
def test_spai_apply_matches_dense(symmetric, columns, dtype, device):
    A = poisson_2d(4, dtype=dtype, device=device).A
    sign = 1.0 - 3.0 * (A.row_indices() % 2).to(dtype)                   # diagonal of each sign
    A = A.with_values(A.values * sign)
    _, P = _random_pattern(16, 0.2, 0, dtype, device)
    model = SPAI(P, init=randn(P.nnz, dtype=dtype, device=device), symmetric=symmetric)
    W = _dense_m(model)
    assert torch.equal(W != 0, P.to_dense() != 0)
    M = _dense_m(model, A)
    torch.testing.assert_close(M, W / A.diagonal(), **LOOSE[dtype])      # M = W D^{-1}
    r = randn(16, dtype=dtype, device=device) if columns is None else randn(
        16, columns, dtype=dtype, device=device)
    z = model.setup(A)(r)
    expected = ((M + M.T) / 2 if symmetric else M) @ r
    assert z.shape == r.shape and z.dtype == dtype and z.device == r.device
    torch.testing.assert_close(z, expected, **LOOSE[dtype])


def test_spai_inits(dtype, device):
    A = poisson_2d(3, dtype=dtype, device=device).A
    A = A.with_values(A.values * (1.0 + A.row_indices().to(dtype)))   # a variable diagonal
    D = A.to_dense()
    mask = (D != 0).to(dtype)
    assert torch.equal(_dense_m(SPAI(A)), mask)                          # W = mask(A)
    assert_close(_dense_m(SPAI(A), A), mask / D.diagonal(), dtype)       # M = mask(A) D^{-1}
    assert_close(_dense_m(SPAI(A, init="jacobi"), A), torch.diag(1 / D.diagonal()), dtype)
    values = randn(A.nnz, dtype=dtype, device=device)
    assert_close(SPAI(A, init=values).values.detach(), values, dtype)
    assert SPAI(A).values.dtype == dtype and SPAI(A).values.device == A.device


def test_spai_gradcheck():
    A = poisson_2d(3, dtype=torch.float64).A
    for symmetric in (False, True):
        model = SPAI(A, init=randn(A.nnz), symmetric=symmetric)
        # gradcheck perturbs its inputs in place: the parameter itself is one,
        # read through the module.
        assert gradcheck(lambda v, r: model.setup(A)(r),
                         (model.values, randn(9, requires_grad=True)))
        assert gradcheck(lambda v, R: model.setup(A)(R),
                         (model.values, randn(9, 2, requires_grad=True)))


def test_spai_errors():
    A = poisson_2d(3, dtype=torch.float64).A
    with pytest.raises(ValueError, match="init: expected 'ones', 'jacobi'"):
        SPAI(A, init="identity")
    with pytest.raises(ValueError, match="init: expected a 1-D float tensor of 33 values"):
        SPAI(A, init=torch.ones(3, 11))
    with pytest.raises(ValueError, match="pattern: expected a stored diagonal entry in every "
                                         "row, row 1 has none"):
        SPAI(_random_pattern(6, 0.4, 0)[1], init="jacobi")
    zero = ls.CSRMatrix(torch.arange(4), torch.arange(3), torch.tensor([1.0, 0.0, 2.0]), (3, 3))
    with pytest.raises(ValueError, match=r"A: expected a nonzero diagonal \(the SPAI is scaled "
                                         r"by it\), got a_ii = 0 in row 1"):
        SPAI(zero, init="jacobi").setup(zero)
    with pytest.raises(ValueError, match="pattern: expected a square matrix"):
        SPAI(ls.eye(2, 3))
    with pytest.raises(TypeError, match="symmetric: expected a bool"):
        SPAI(A, symmetric=1)
    with pytest.raises(ValueError, match=r"A: expected shape \(9, 9\)"):
        SPAI(A).setup(ls.eye(4, dtype=torch.float64))
    with pytest.raises(ValueError, match="x: expected 9 rows"):
        SPAI(A).setup(A)(torch.ones(8, dtype=torch.float64))


# ------------------------------------------------------------------ spai_loss

@pytest.mark.parametrize("pattern", ["A", "random"])
def test_spai_loss_matches_dense(pattern, dtype, device):
    A = poisson_2d(4, dtype=dtype, device=device).A
    P = A if pattern == "A" else _random_pattern(16, 0.2, 1, dtype, device)[1]
    model = SPAI(P, init=randn(P.nnz, dtype=dtype, device=device) / 4)
    M, D = _dense_m(model, A), A.to_dense()
    expected = torch.sum((torch.eye(16, dtype=dtype, device=device) - M @ D) ** 2)
    loss = spai_loss(model, A)
    assert loss.dim() == 0 and loss.dtype == dtype and loss.device == A.device
    torch.testing.assert_close(loss, expected, **LOOSE[dtype])
    torch.testing.assert_close(model.loss(A, randn(16, 2, dtype=dtype, device=device)), loss)
    torch.testing.assert_close(spai_loss(model.matrix(A), A), loss)
    symmetric = SPAI(P, init=model.values.detach(), symmetric=True)
    S = (M + M.T) / 2
    torch.testing.assert_close(spai_loss(symmetric, A),
                               torch.sum((torch.eye(16, dtype=dtype, device=device) - S @ D) ** 2),
                               **LOOSE[dtype])


def test_spai_loss_is_exact_near_the_minimum():
    # Where M A is close to I a formula ||MA||^2 - 2 tr(MA) + n would cancel.
    A = ls.eye(1000, dtype=torch.float32) * 3.0
    M = ls.eye(1000, dtype=torch.float32) * (1 / 3.0 + 1e-6)
    assert_close(spai_loss(M, A), torch.tensor(1000 * 9e-12), torch.float32)


def test_spai_loss_gradcheck():
    A = poisson_2d(3, dtype=torch.float64).A
    _, P = _random_pattern(9, 0.3, 2)
    model = SPAI(P, init=randn(P.nnz))
    values = A.values.clone().requires_grad_()
    assert gradcheck(lambda v, a: spai_loss(model, A.with_values(a)), (model.values, values))


def test_spai_loss_errors():
    A = poisson_2d(3, dtype=torch.float64).A
    with pytest.raises(TypeError, match="model: expected an SPAI or a CSRMatrix"):
        spai_loss(torch.eye(9), A)
    with pytest.raises(ValueError, match=r"model: expected M of the shape of A \(9, 9\)"):
        spai_loss(ls.eye(4, dtype=torch.float64), A)


# ------------------------------------------------------------------ spai_classical

@pytest.mark.parametrize("pattern", ["A", "A2", "random"])
def test_spai_classical_matches_numpy(pattern, dtype, device):
    S = poisson_scipy(5)
    S = sp.csr_array(S + sp.random_array((25, 25), density=0.05, rng=np.random.default_rng(3)))
    S.sort_indices()
    P = {"A": S, "A2": sp.csr_array(S @ S), "random": _random_pattern(25, 0.1, 4)[0]}[pattern]
    P.sort_indices()
    A = ls.CSRMatrix.from_scipy(S, dtype=dtype, device=device)
    M = spai_classical(A, None if pattern == "A" else
                       ls.CSRMatrix.from_scipy(P, dtype=dtype, device=device))
    assert M.dtype == dtype and M.device == A.device and M.nnz == P.nnz
    torch.testing.assert_close(M.to_dense().cpu().double(), torch.from_numpy(_numpy_spai(S, P)),
                               **LOOSE[dtype])


def test_spai_classical_is_the_minimum():
    A = poisson_2d(5, dtype=torch.float64).A
    M = spai_classical(A)
    values = M.values.clone().requires_grad_()
    loss = spai_loss(M.with_values(values), A)
    (gradient,) = torch.autograd.grad(loss, values)
    assert float(gradient.abs().max()) < 1e-10                       # stationary point
    for seed in range(3):                                            # and a minimum
        assert spai_loss(M.with_values(M.values + 1e-3 * randn(M.nnz, seed=seed)), A) > loss


def test_spai_classical_errors():
    A = poisson_2d(3, dtype=torch.float64).A
    with pytest.raises(ValueError, match=r"pattern: expected the shape of A \(9, 9\)"):
        spai_classical(A, ls.eye(4))
    with pytest.raises(ValueError, match="A: expected a square matrix"):
        spai_classical(ls.eye(3, 4))
    empty = ls.CSRMatrix(torch.zeros(10, dtype=torch.long), torch.zeros(0, dtype=torch.long),
                         torch.zeros(0, dtype=torch.float64), (9, 9))
    assert spai_classical(A, empty).nnz == 0


def test_gradient_descent_reaches_the_classical_spai():
    """The paper's fig. 19: Adam on ||I - M A||_F^2 (2D Poisson 8 x 8) comes within
    a few percent of the classical SPAI's loss, and to its values. The start is
    the paper's M = mask(A): W = mask(A) D, as M = W D^{-1} (here D = 4 I);
    Adam's steps in W are those of lr / 4 in M."""
    problem = poisson_2d(8, dtype=torch.float64)
    classical = spai_classical(problem.A)
    best = float(spai_loss(classical, problem))
    A = problem.A
    model = SPAI(problem, init=A.diagonal()[A.col_indices])               # M = mask(A)
    assert torch.equal(model.matrix(A).values, torch.ones_like(A.values))
    optimiser = torch.optim.Adam(model.parameters(), lr=0.05 * 4)
    start = float(model.loss(problem, None).detach())
    for _ in range(200):
        optimiser.zero_grad()
        loss = model.loss(problem, None)
        loss.backward()
        optimiser.step()
    final = float(spai_loss(model, problem).detach())
    assert start > 100 * best
    assert best <= final < 1.03 * best
    M = model.matrix(problem.A).detach()
    assert float((M.values - classical.values).norm() / classical.values.norm()) < 1e-3
