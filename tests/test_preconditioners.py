"""The factored and multigrid preconditioners: LowerFactor (M = L L^T, learned),
IncompleteCholesky (IC(0)) and AMG (pyamg), against dense torch, numpy and pyamg,
gradients, caching and errors."""
import copy
import io

import numpy as np
import pyamg
import pytest
import scipy.sparse as sp
import torch
from torch.autograd import gradcheck
from torch.library import opcheck

import learnsolve as ls
from cases import DTYPES, TOL, assert_close, m_matrix, poisson_scipy, randn
from learnsolve.problems import poisson_1d, poisson_2d
from learnsolve.solvers.amg import AMG
from learnsolve.solvers import IncompleteCholesky, LowerFactor

ops = torch.ops.learnsolve
LOOSE = {torch.float32: dict(rtol=1e-4, atol=1e-5), torch.float64: dict(rtol=1e-10, atol=1e-12)}


def _gradcheck_params(model, fn, *others):
    """gradcheck of ``fn(values, *others)`` in the module's parameter and in
    ``others``. gradcheck perturbs its inputs in place, so the parameter itself
    is an input: ``fn`` reads it through the module (``setup``)."""
    return gradcheck(fn, (model.values, *others))


# ------------------------------------------------------------------ LowerFactor

def _unit_factor_values(A, dtype=torch.float64, device="cpu", seed=0):
    """Random values of L~ on tril(A) with a positive diagonal, and L~ dense."""
    lower = A.tril()
    values = randn(lower.nnz, dtype=dtype, device=device, seed=seed)
    on_diagonal = lower.col_indices == lower.row_indices()
    values = torch.where(on_diagonal, values.abs() + 0.5, values)
    n = A.shape[0]
    L = torch.zeros(n, n, dtype=dtype, device=device)
    L[lower.row_indices(), lower.col_indices] = values
    return values, L


@pytest.mark.parametrize("columns", [None, 3])
def test_lower_factor_matches_dense(columns, dtype, device):
    A = poisson_2d(4, dtype=dtype, device=device).A
    n = A.shape[0]
    values, unit = _unit_factor_values(A, dtype, device)
    model = LowerFactor(A, init=values)
    # A variable diagonal: L = D^{-1/2} L~.
    A = A.with_values(A.values * (1.0 + A.row_indices().to(dtype) / n))
    L = torch.diag(A.diagonal().rsqrt()) @ unit
    r = randn(n, dtype=dtype, device=device) if columns is None else randn(
        n, columns, dtype=dtype, device=device)
    z = model.setup(A)(r)
    assert z.shape == r.shape and z.dtype == dtype and z.device == r.device
    torch.testing.assert_close(z, L @ (L.T @ r), **LOOSE[dtype])
    torch.testing.assert_close(model.factor().to_dense(), unit, **LOOSE[dtype])
    torch.testing.assert_close(model.factor(A).to_dense(), L, **LOOSE[dtype])
    torch.testing.assert_close(model.matrix(A).to_dense(), L @ L.T, **LOOSE[dtype])
    torch.testing.assert_close(model.matrix().to_dense(), unit @ unit.T, **LOOSE[dtype])


def test_lower_factor_inits(dtype, device):
    A = poisson_2d(3, dtype=dtype, device=device).A
    A = A.with_values(A.values * (1.0 + A.row_indices().to(dtype)))   # a variable diagonal
    r = randn(9, 2, dtype=dtype, device=device)
    model = LowerFactor(A)
    assert_close(model.setup(A)(r), r / A.diagonal()[:, None], dtype)     # M = D^{-1}
    # The Jacobi start is L~ = I (stored: zeros, the diagonal as its logarithm) ...
    assert torch.equal(model.values.detach(), torch.zeros_like(model.values))
    assert_close(model.factor().to_dense(), torch.eye(9, dtype=dtype, device=device), dtype)
    # ... and L = D^{-1/2} for any A, that of pattern or another one.
    assert_close(model.factor(A).to_dense(), torch.diag(A.diagonal().rsqrt()), dtype)
    assert_close(LowerFactor(poisson_2d(3, dtype=dtype, device=device)).setup(A)(r),
                 r / A.diagonal()[:, None], dtype)
    assert model.values.dtype == dtype
    values, unit = _unit_factor_values(A, dtype, device)
    given = LowerFactor(A, init=values)
    assert_close(given.factor().values, values, dtype)                  # init: the values of L~
    diagonal = A.tril().col_indices == A.tril().row_indices()
    assert_close(given.values.detach()[diagonal], values[diagonal].log(), dtype)


def test_lower_factor_diagonal_stays_positive():
    """Whatever the parameter holds, the diagonal of L~ is positive: M is SPD."""
    A = poisson_2d(4, dtype=torch.float64).A
    model = LowerFactor(A, init=_unit_factor_values(A)[0])
    with torch.no_grad():
        model.values.sub_(2.0)            # a step that would take the diagonal of L~ below 0
    L = model.factor()
    assert bool((L.values[L.col_indices == L.row_indices()] > 0).all())
    assert torch.linalg.eigvalsh(model.matrix(A).to_dense()).min() > 0


@pytest.mark.parametrize("bandwidth", [0, 1, 2, 20])
def test_banded_pattern(bandwidth):
    # The pattern of A (2D Poisson: offsets 0, -1, -3) does not matter.
    A = poisson_2d(3, dtype=torch.float64).A
    model = LowerFactor.banded(A, bandwidth)
    rows, cols = torch.meshgrid(torch.arange(9), torch.arange(9), indexing="ij")
    offset = rows - cols
    band = (offset >= 0) & (offset <= bandwidth)
    L = model.factor(A)
    stored = torch.zeros(9, 9, dtype=torch.bool)
    stored[L.row_indices(), L.col_indices] = True
    assert torch.equal(stored, band)
    assert_close(L.to_dense(), torch.diag(A.diagonal().rsqrt()), torch.float64)
    assert LowerFactor.banded(poisson_2d(3), 1).values.shape == (17,)


def test_bidiagonal_factor_gives_tridiagonal_spd_matrix():
    A = poisson_2d(3, dtype=torch.float64).A
    model = LowerFactor.banded(A, 1, init=randn(17) + 3.0)
    M = model.matrix(A).to_dense()
    rows, cols = torch.meshgrid(torch.arange(9), torch.arange(9), indexing="ij")
    assert torch.all(M[(rows - cols).abs() > 1] == 0)
    assert torch.linalg.eigvalsh(M).min() > 0


def test_lower_factor_gradcheck():
    A = poisson_2d(3, dtype=torch.float64).A
    model = LowerFactor(A, init=_unit_factor_values(A)[0])
    r = randn(9, requires_grad=True)
    R = randn(9, 2, requires_grad=True, seed=1)
    assert _gradcheck_params(model, lambda v, r: model.setup(A)(r), r)
    assert _gradcheck_params(model, lambda v, R: model.setup(A)(R), R)
    assert _gradcheck_params(model, lambda v: model.matrix(A).values)
    # M depends on A through its diagonal.
    a = A.values.clone().requires_grad_()
    assert gradcheck(lambda a: model.setup(A.with_values(a))(r.detach()), (a,))


def test_lower_factor_follows_the_module():
    A = poisson_2d(3).A
    model = LowerFactor.banded(A, 1).double()
    A64 = A.double()
    r = randn(9)
    assert_close(model.setup(A64)(r), r / A64.diagonal(), torch.float64)
    # A float32 model applied for a float64 matrix works in float64.
    assert LowerFactor(A).setup(A64)(r).dtype == torch.float64
    state = model.state_dict()
    assert set(state) == {"crow_indices", "col_indices", "values"}
    copy = LowerFactor.banded(A64, 1, init=torch.full((17,), 2.0, dtype=torch.float64))
    copy.load_state_dict(state)
    assert_close(copy.setup(A64)(r), r / A64.diagonal(), torch.float64)


def test_lower_factor_errors():
    A = poisson_2d(3, dtype=torch.float64).A
    no_diagonal = ls.CSRMatrix.from_dense(torch.tensor([[1.0, 0.0, 0.0], [1.0, 0.0, 0.0],
                                                        [0.0, 1.0, 2.0]]))
    with pytest.raises(ValueError, match="pattern: expected a stored diagonal entry in every "
                                         "row, row 1 has none"):
        LowerFactor(no_diagonal)
    with pytest.raises(ValueError, match="pattern: expected a square matrix"):
        LowerFactor(ls.eye(3, 4))
    with pytest.raises(ValueError, match=r"A: expected a positive diagonal \(the LowerFactor is "
                                         r"scaled by it\), got a_ii = -4 in row 0"):
        LowerFactor(A).setup(-A)
    with pytest.raises(ValueError, match="init: expected 'jacobi' or a tensor"):
        LowerFactor(A, init="identity")
    with pytest.raises(ValueError, match="init: expected a 1-D float tensor of 21 values"):
        LowerFactor(A, init=torch.ones(5))
    values = torch.ones(21, dtype=torch.float64)
    values[A.tril().col_indices == A.tril().row_indices()] = torch.tensor(
        [1.0, 1.0, 0.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0], dtype=torch.float64)
    with pytest.raises(ValueError, match=r"init: expected a positive diagonal in the values of "
                                         r"L~ .* got 0 in row 2"):
        LowerFactor(A, init=values)
    with pytest.raises(ValueError, match="bandwidth: expected an integer >= 0"):
        LowerFactor.banded(A, -1)
    with pytest.raises(TypeError, match="problem: expected a Problem or a CSRMatrix"):
        LowerFactor(torch.eye(3))
    with pytest.raises(ValueError, match=r"A: expected shape \(9, 9\)"):
        LowerFactor(A).setup(poisson_2d(2, dtype=torch.float64).A)
    with pytest.raises(ValueError, match="x: expected 9 rows"):
        LowerFactor(A).setup(A)(torch.ones(4, dtype=torch.float64))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_lower_factor_device_mismatch():
    A = poisson_2d(3, dtype=torch.float64).A
    with pytest.raises(ValueError, match="A: expected a matrix on cpu"):
        LowerFactor(A).setup(A.to("cuda"))
    model = LowerFactor(A).to("cuda")
    assert model.setup(A.to("cuda"))(torch.ones(9, dtype=torch.float64, device="cuda")).is_cuda


# ------------------------------------------------------------------ IncompleteCholesky

def _dense_ic0(S):
    """IC(0) of a scipy SPD matrix on its stored pattern (explicit zeros
    included), entry by entry (the textbook loops)."""
    A = S.toarray()
    n = A.shape[0]
    pattern = np.zeros((n, n), dtype=bool)
    coo = S.tocoo()
    pattern[coo.row, coo.col] = True
    L = np.zeros((n, n))
    for i in range(n):
        for k in range(i):
            if pattern[i, k]:
                L[i, k] = (A[i, k] - L[i, :k] @ L[k, :k]) / L[k, k]
        L[i, i] = np.sqrt(A[i, i] - L[i, :i] @ L[i, :i])
    return L


IC_MATRICES = {
    "poisson_2d": lambda: poisson_scipy(5),
    "m_matrix": lambda: m_matrix(25, 0.15, 0),
    "1x1": lambda: sp.csr_array(np.array([[4.0]])),
}


@pytest.mark.parametrize("name", list(IC_MATRICES))
def test_ic0_matches_dense_reference(name, dtype, device):
    S = IC_MATRICES[name]()
    A = ls.CSRMatrix.from_scipy(S, dtype=dtype, device=device)
    L = IncompleteCholesky().factor(A)
    assert L.device == A.device and L.dtype == dtype
    reference = _dense_ic0(S)
    torch.testing.assert_close(L.to_dense().cpu().double(), torch.from_numpy(reference),
                               **LOOSE[dtype])
    # IC(0)'s defining property: L L^T equals A on A's pattern.
    product = reference @ reference.T
    coo = S.tocoo()
    np.testing.assert_allclose(product[coo.row, coo.col], coo.data, rtol=1e-12, atol=1e-12)


def test_ic0_is_cholesky_on_a_tridiagonal_matrix(dtype, device):
    A = poisson_1d(12, dtype=dtype, device=device).A
    L = IncompleteCholesky().factor(A).to_dense()
    expected = torch.linalg.cholesky(A.to_dense().double()).to(dtype)
    torch.testing.assert_close(L, expected, **LOOSE[dtype])


@pytest.mark.parametrize("columns", [None, 3])
def test_ic0_apply(columns, dtype, device):
    S = m_matrix(20, 0.2, 1)
    A = ls.CSRMatrix.from_scipy(S, dtype=dtype, device=device)
    L = torch.from_numpy(_dense_ic0(S))
    r = randn(20, dtype=dtype, device=device) if columns is None else randn(
        20, columns, dtype=dtype, device=device)
    z = IncompleteCholesky().setup(A)(r)
    expected = torch.cholesky_solve(r.cpu().double().reshape(20, -1), L).reshape(r.shape)
    assert z.shape == r.shape and z.dtype == dtype and z.device == r.device
    torch.testing.assert_close(z.cpu().double(), expected, **LOOSE[dtype])


def test_ic0_gradient_reaches_r():
    A = ls.CSRMatrix.from_scipy(m_matrix(10, 0.3, 2))
    apply = IncompleteCholesky().setup(A)
    assert gradcheck(apply, (randn(10, requires_grad=True),))
    assert gradcheck(apply, (randn(10, 2, requires_grad=True),))


def test_ic0_cache():
    S = m_matrix(12, 0.3, 3)
    A = ls.CSRMatrix.from_scipy(S)
    model = IncompleteCholesky()
    L = model.factor(A)
    assert model.factor(A) is L                                      # cached
    with torch.no_grad():
        A.values.mul_(4.0)                                           # changed in place
    L2 = model.factor(A)
    assert L2 is not L
    assert_close(L2.values, 2.0 * L.values, torch.float64)
    B = A.with_values(A.values / 4.0)                                 # other values
    assert_close(model.factor(B).values, L.values, torch.float64)


def test_ic0_cache_never_trusts_an_inference_tensor():
    """Inference tensors have no version counter: an in-place change cannot be seen,
    so their factor is never reused."""
    with torch.inference_mode():
        A = ls.CSRMatrix.from_scipy(m_matrix(12, 0.3, 3))
        model = IncompleteCholesky()
        L = model.factor(A).values.clone()
        A.values.mul_(4.0)
        assert_close(model.factor(A).values, 2.0 * L, torch.float64)


def test_ic0_breakdown_and_errors():
    indefinite = ls.CSRMatrix.from_dense(torch.tensor([[1.0, 2.0, 0.0], [2.0, 1.0, 0.0],
                                                       [0.0, 0.0, 1.0]], dtype=torch.float64))
    with pytest.raises(torch.linalg.LinAlgError, match=r"IC\(0\) broke down at row 1: the pivot "
                                                        r".* = -3 is not positive"):
        IncompleteCholesky(shift=False).setup(indefinite)
    nonsymmetric = ls.CSRMatrix.from_dense(torch.tensor([[2.0, 1.0], [0.5, 2.0]]))
    with pytest.raises(ValueError, match="values are not symmetric"):
        IncompleteCholesky().setup(nonsymmetric)
    zero_diagonal = ls.CSRMatrix.from_dense(torch.tensor([[2.0, 1.0], [1.0, 0.0]]))
    with pytest.raises(ValueError, match="the diagonal entry at row 1 is 0"):
        IncompleteCholesky().setup(zero_diagonal)
    with pytest.raises(ValueError, match="A: expected a square matrix"):
        IncompleteCholesky().setup(ls.eye(2, 3))
    A = poisson_1d(4, dtype=torch.float64).A
    with pytest.raises(ValueError, match="r: expected shape"):
        IncompleteCholesky().setup(A)(torch.ones(3, dtype=torch.float64))


def test_ic0_op_checks_its_input():
    A = poisson_1d(4, dtype=torch.float64).A
    crow, col = A.crow_indices, A.col_indices
    with pytest.raises(ValueError, match="ic0: expected the lower triangle.*row 0 has an entry "
                                         "above the diagonal"):
        ops.ic0(crow, col, A.values)
    L = ls.CSRMatrix.from_dense(torch.tensor([[1.0, 0.0], [1.0, 0.0]]))
    with pytest.raises(ValueError, match="row 1 has no stored diagonal entry"):
        ops.ic0(L.crow_indices, L.col_indices, L.values)
    with pytest.raises(RuntimeError, match="ic0: expected 1-D values of the length of col"):
        ops.ic0(crow, col, A.values[:2])


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
def test_ic0_opcheck(dtype):
    lower = ls.CSRMatrix.from_scipy(m_matrix(12, 0.3, 4), dtype=dtype).tril()
    opcheck(ops.ic0, (lower.crow_indices, lower.col_indices, lower.values))


# ------------------------------------------------------------------ AMG

def _pcg(A, b, apply, iterations):
    """Plain PCG from x = 0 (the textbook recurrences), differentiable."""
    x = torch.zeros_like(b)
    r = b.clone()
    z = apply(r)
    p = z
    rz = r @ z
    for _ in range(iterations):
        Ap = A @ p
        alpha = rz / (p @ Ap)
        x = x + alpha * p
        r = r - alpha * Ap
        z = apply(r)
        rz_next = r @ z
        p = z + (rz_next / rz) * p
        rz = rz_next
    return x


@pytest.mark.parametrize("method", ["smoothed_aggregation", "ruge_stuben"])
@pytest.mark.parametrize("cycle", ["V", "W"])
def test_amg_matches_pyamg(method, cycle, dtype, device):
    S = poisson_scipy(12)
    A = ls.CSRMatrix.from_scipy(S, dtype=dtype, device=device)
    solver = {"smoothed_aggregation": pyamg.smoothed_aggregation_solver,
              "ruge_stuben": pyamg.ruge_stuben_solver}[method]
    np.random.seed(0)                       # as AMG seeds pyamg's spectral radius estimates
    M = solver(sp.csr_matrix(S), max_coarse=10).aspreconditioner(cycle=cycle)
    apply = AMG(method, cycle, max_coarse=10).setup(A)
    R = randn(144, 3, dtype=dtype, device=device)
    Z = apply(R)
    assert Z.shape == R.shape and Z.dtype == dtype and Z.device == R.device
    expected = np.stack([M.matvec(c) for c in R.cpu().double().numpy().T], axis=1)
    torch.testing.assert_close(Z.cpu().double(), torch.from_numpy(expected), **TOL[dtype])
    torch.testing.assert_close(apply(R[:, 1]), Z[:, 1], rtol=0, atol=0)


@pytest.mark.parametrize("method", ["smoothed_aggregation", "ruge_stuben"])
@pytest.mark.parametrize("cycle", ["V", "W"])
def test_amg_cycle_is_symmetric(method, cycle):
    A = poisson_2d(10, dtype=torch.float64).A
    apply = AMG(method, cycle, max_coarse=10).setup(A)
    v, w = randn(100), randn(100, seed=1)
    torch.testing.assert_close(v @ apply(w), w @ apply(v), rtol=1e-12, atol=0)


def test_amg_pcg_agrees_with_pyamg():
    S = poisson_scipy(12)
    A = ls.CSRMatrix.from_scipy(S)
    b = randn(144)
    np.random.seed(0)
    ml = pyamg.smoothed_aggregation_solver(sp.csr_matrix(S), max_coarse=10)
    residuals = []
    expected = ml.solve(b.numpy(), accel="cg", tol=1e-10, maxiter=4, residuals=residuals)
    assert len(residuals) == 5                                       # 4 iterations ran
    x = _pcg(A, b, AMG(max_coarse=10).setup(A), 4)
    torch.testing.assert_close(x, torch.from_numpy(expected), rtol=1e-9, atol=1e-12)


def test_amg_gradient_through_pcg():
    A = poisson_2d(6, dtype=torch.float64).A
    apply = AMG(max_coarse=5).setup(A)
    assert gradcheck(apply, (randn(36, requires_grad=True),))
    assert gradcheck(apply, (randn(36, 2, requires_grad=True),))
    assert gradcheck(lambda b: _pcg(A, b, apply, 3), (randn(36, requires_grad=True),))


def test_amg_nonsymmetric_cycle_refuses_backward():
    A = poisson_2d(8, dtype=torch.float64).A
    forward_only = ("gauss_seidel", {"sweep": "forward"})
    apply = AMG(presmoother=forward_only, postsmoother=forward_only, max_coarse=5).setup(A)
    r = randn(64, requires_grad=True)
    z = apply(r)                                                     # the forward works
    with pytest.raises(RuntimeError, match="AMG: the cycle is not symmetric"):
        z.sum().backward()


def test_amg_cache():
    A = poisson_2d(8, dtype=torch.float64).A
    model = AMG(max_coarse=5)
    ml = model.hierarchy(A)
    assert model.hierarchy(A) is ml
    with torch.no_grad():
        A.values.mul_(2.0)
    ml2 = model.hierarchy(A)
    assert ml2 is not ml
    np.testing.assert_allclose(ml2.levels[0].A.toarray(), 2.0 * ml.levels[0].A.toarray())


def test_amg_errors():
    with pytest.raises(ValueError, match="method: expected one of"):
        AMG("geometric")
    with pytest.raises(ValueError, match="cycle: expected one of"):
        AMG(cycle="X")
    A = poisson_2d(4, dtype=torch.float64).A
    apply = AMG(max_coarse=5).setup(A)
    with pytest.raises(ValueError, match=r"r: expected shape \(16,\) or \(16, k\)"):
        apply(torch.ones(15, dtype=torch.float64))
    with pytest.raises(TypeError, match="r: expected dtype torch.float64"):
        apply(torch.ones(16))


def test_copies_and_pickles_start_with_empty_caches():
    A = poisson_2d(4, dtype=torch.float64).A
    r = randn(16)
    for model in (LowerFactor(A), IncompleteCholesky(), AMG(max_coarse=5)):
        expected = model.setup(A)(r)                                 # fills the caches
        buffer = io.BytesIO()
        torch.save(model, buffer)
        buffer.seek(0)
        for other in (copy.deepcopy(model), torch.load(buffer, weights_only=False)):
            assert_close(other.setup(A)(r), expected, torch.float64)
