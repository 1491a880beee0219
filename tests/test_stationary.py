"""Weighted Jacobi and the heavy ball: iterates against dense references, stopping and
status, gradients, losses (paper eqs. 34-40) and errors."""
import numpy as np
import pytest
import torch

import learnsolve as ls
from learnsolve.problems import poisson_1d, poisson_2d
from learnsolve.solvers import Heavyball, Jacobi, heavyball_loss, jacobi_loss
from tests.cases import DEVICES, DTYPES, TOL


def _system(n=16, k=None, dtype=torch.float64, device="cpu", seed=0):
    A = poisson_1d(n, dtype=dtype).A.to(device)
    g = torch.Generator().manual_seed(seed)
    b = torch.randn((n,) if k is None else (n, k), generator=g, dtype=dtype).to(device)
    return A, b


def _jacobi_dense(A, b, omega, iterations, x0=None):
    """Jacobi on dense numpy arrays, float64: the reference."""
    a = A.to_dense().double().cpu().numpy()
    b = b.double().cpu().numpy()
    w = np.broadcast_to(omega.detach().double().cpu().numpy(), (a.shape[0],))
    scale = (w / np.diag(a)).reshape(-1, *([1] * (b.ndim - 1)))
    x = np.zeros_like(b) if x0 is None else x0.double().cpu().numpy()
    history = [np.linalg.norm(b - a @ x, axis=0)]
    for _ in range(iterations):
        x = x + scale * (b - a @ x)
        history.append(np.linalg.norm(b - a @ x, axis=0))
    return x, np.array(history)


def _heavyball_dense(A, b, alpha, beta, iterations):
    a = A.to_dense().double().cpu().numpy()
    b = b.double().cpu().numpy()
    x = previous = np.zeros_like(b)
    for _ in range(iterations):
        x, previous = x + alpha * (b - a @ x) + beta * (x - previous), x
    return x


def _close(actual, expected, dtype):
    tol = dict(rtol=1e-4, atol=1e-4) if dtype == torch.float32 else TOL[dtype]
    np.testing.assert_allclose(actual.detach().double().cpu().numpy(), expected, **tol)


# --------------------------------------------------------------------------- Jacobi

@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("k", [None, 3])
@pytest.mark.parametrize("per_node", [False, True])
def test_jacobi_iterates_match_dense(device, dtype, k, per_node):
    A, b = _system(k=k, dtype=dtype, device=device)
    omega = torch.linspace(0.5, 0.9, 16) if per_node else torch.tensor(0.7)
    solver = Jacobi(omega, maxiter=7).to(device)
    solution = solver(A, b)
    x, history = _jacobi_dense(A, b, omega, 7)
    _close(solution.x, x, dtype)
    _close(solution.residuals, history, dtype)
    assert solution.status == "maxiter" and solution.iterations == 7 and not solution.converged
    assert solution.x.dtype == dtype and solution.x.device.type == torch.device(device).type


def test_jacobi_x0_callback_and_convergence():
    A, b = _system()
    x0 = torch.ones(16, dtype=torch.float64)
    seen = []
    solution = Jacobi(0.9, maxiter=5000, rtol=1e-8, callback=seen.append)(A, b, x0)
    assert solution.converged and len(seen) == solution.iterations
    relative = solution.relative_residuals.detach()
    assert float(relative[-1]) <= 1e-8 < float(relative[-2])
    x, _ = _jacobi_dense(A, b, torch.tensor(0.9), solution.iterations, x0)
    np.testing.assert_allclose(solution.x.detach().numpy(), x, rtol=1e-10)
    exact = torch.linalg.solve(A.to_dense(), b)
    assert torch.allclose(solution.x, exact, rtol=1e-6, atol=1e-6)


def test_jacobi_atol_zero_rhs_and_maxiter_zero():
    A, _ = _system()
    zero = torch.zeros(16, dtype=torch.float64)
    solution = Jacobi(0.7, maxiter=10, rtol=1e-6)(A, zero)
    assert solution.converged and solution.iterations == 0 and torch.equal(solution.x, zero)
    b = torch.ones(16, dtype=torch.float64)
    assert Jacobi(0.7, maxiter=0)(A, b).status == "maxiter"
    loose = Jacobi(0.7, maxiter=1000, atol=1.0)(A, b)
    assert loose.converged and float(loose.residuals[-1].detach()) <= 1.0


def test_jacobi_divergence_is_reported():
    A, b = _system()
    solution = Jacobi(2.5, maxiter=1000, rtol=1e-8)(A, b)
    assert solution.status == "diverged" and not solution.converged
    assert solution.iterations < 1000 and "diverged" in solution.message


def test_jacobi_as_preconditioner_and_smoother():
    A, b = _system(k=2)
    omega = torch.linspace(0.5, 1.0, 16, dtype=torch.float64)
    jacobi = Jacobi(omega)
    d = A.diagonal()
    assert torch.allclose(jacobi.setup(A)(b), (omega / d)[:, None] * b, rtol=1e-15, atol=0)
    assert torch.allclose(jacobi.setup(A)(b[:, 0]), omega / d * b[:, 0], rtol=1e-15, atol=0)
    x, _ = _jacobi_dense(A, b, omega, 3)
    np.testing.assert_allclose(jacobi.smooth(A, b, torch.zeros_like(b), 3).detach().numpy(), x,
                               rtol=1e-12)


def test_jacobi_on_2d_poisson_device_dtype_of_weights():
    """Weights kept in float32 are used in the matrix's dtype."""
    A = poisson_2d(5, dtype=torch.float64).A
    b = torch.ones(25, dtype=torch.float64)
    solution = Jacobi(torch.full((25,), 0.8, dtype=torch.float32), maxiter=4)(A, b)
    x, _ = _jacobi_dense(A, b, torch.tensor(0.8), 4)
    np.testing.assert_allclose(solution.x.detach().numpy(), x, rtol=1e-7)


def test_jacobi_gradcheck():
    A, b = _system(n=8, k=2)
    omega = torch.linspace(0.5, 0.9, 8, dtype=torch.float64, requires_grad=True)
    values = A.values.detach().clone().requires_grad_()
    b = b.requires_grad_()

    def run(w, v, rhs):
        solver = Jacobi(maxiter=3)
        del solver.omega
        solver.omega = w
        return solver(A.with_values(v), rhs).x

    assert torch.autograd.gradcheck(run, (omega, values, b))


def test_jacobi_loss_matches_dense_and_gradcheck():
    A, X = _system(k=5)
    omega = torch.linspace(0.5, 0.9, 16, dtype=torch.float64)
    model = Jacobi(omega)
    a = A.to_dense()
    T = torch.eye(16, dtype=torch.float64) - torch.diag(omega / torch.diag(a)) @ a
    for t in (1, 3):
        E = torch.linalg.matrix_power(T, t) @ X
        expected = (E * (a @ E)).sum(0).mean()
        assert torch.allclose(jacobi_loss(model, A, X, iterations=t), expected, rtol=1e-13, atol=0)
    assert torch.equal(model.loss(poisson_1d(16, dtype=torch.float64), X),
                       jacobi_loss(model, A, X))

    def loss(w):
        m = Jacobi(maxiter=1)
        del m.omega
        m.omega = w
        return jacobi_loss(m, A, X, iterations=2)

    assert torch.autograd.gradcheck(loss, (omega.clone().requires_grad_(),))


def test_jacobi_scalar_optimum_of_the_expected_loss():
    """With X of identity covariance the loss of eq. 36 is its expectation,
    tr(T^T A T) for T = I - w D^-1 A; for D = 2I its minimiser is
    w* = 2 tr(A^2) / tr(A^3), near the 2/3 of the paper's fig. 7."""
    A = poisson_1d(64, dtype=torch.float64).A
    a = A.to_dense()
    best = float(2 * torch.trace(a @ a) / torch.trace(a @ a @ a))
    X = torch.eye(64, dtype=torch.float64)
    grid = torch.linspace(0.4, 1.0, 601, dtype=torch.float64)
    losses = torch.stack([jacobi_loss(Jacobi(float(w)), A, X) for w in grid])
    assert abs(float(grid[losses.argmin()]) - best) <= 1e-3
    assert abs(best - 2 / 3) < 0.1


def test_jacobi_errors():
    A, b = _system()
    with pytest.raises(ValueError, match="A: expected 16 rows"):
        Jacobi(1.0, num_nodes=16)(poisson_1d(8, dtype=torch.float64).A,
                                   torch.ones(8, dtype=torch.float64))
    no_diagonal = ls.diags([torch.ones(15, dtype=torch.float64)] * 2, [-1, 1])
    with pytest.raises(torch.linalg.LinAlgError, match="row 0"):
        Jacobi()(no_diagonal, b)
    with pytest.raises(TypeError, match="omega"):
        Jacobi("fast")
    with pytest.raises(ValueError, match="omega"):
        Jacobi(torch.ones(2, 2))
    with pytest.raises(ValueError, match="num_nodes"):
        Jacobi(torch.ones(3), num_nodes=3)
    with pytest.raises(ValueError, match="num_nodes"):
        Jacobi(1.0, num_nodes=0)
    with pytest.raises(ValueError, match="maxiter"):
        Jacobi(maxiter=-1)
    with pytest.raises(ValueError, match="rtol"):
        Jacobi(rtol=-1.0)
    with pytest.raises(TypeError, match="callback"):
        Jacobi(callback=3)
    with pytest.raises(ValueError, match="b: expected shape"):
        Jacobi()(A, torch.ones(5, dtype=torch.float64))
    with pytest.raises(TypeError, match="b: expected dtype"):
        Jacobi()(A, torch.ones(16, dtype=torch.float32))
    with pytest.raises(ValueError, match="x0"):
        Jacobi()(A, b, torch.ones(16, 2, dtype=torch.float64))
    with pytest.raises(ValueError, match="square"):
        Jacobi()(ls.eye(3, 4, dtype=torch.float64), torch.ones(3, dtype=torch.float64))


def test_fixed_weights_are_buffers():
    model = Jacobi(0.5, num_nodes=4, learnable=False)
    assert list(model.parameters()) == [] and "omega" in dict(model.named_buffers())
    assert len(list(Jacobi(0.5).parameters())) == 1


# --------------------------------------------------------------------------- heavy ball

@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("k", [None, 2])
def test_heavyball_iterates_match_dense(device, dtype, k):
    A, b = _system(k=k, dtype=dtype, device=device)
    model = Heavyball(0.3, 0.4, maxiter=9).to(device)
    solution = model(A, b)
    alpha, beta = float(model.alpha.detach()), float(model.beta.detach())  # float32's 0.3, 0.4
    _close(solution.x, _heavyball_dense(A, b, alpha, beta, 9), dtype)
    assert solution.iterations == 9 and solution.residuals.shape[0] == 10


def test_heavyball_polyak_beats_plain_gradient_descent():
    A, b = _system(n=32)
    ev = torch.linalg.eigvalsh(A.to_dense())
    polyak = Heavyball.polyak(float(ev[0]), float(ev[-1]), maxiter=5000, rtol=1e-8)(A, b)
    plain = Heavyball(2 / float(ev[0] + ev[-1]), 0.0, maxiter=5000, rtol=1e-8)(A, b)
    assert polyak.converged and plain.converged
    assert polyak.iterations < plain.iterations / 3
    with pytest.raises(ValueError, match="lambda_min"):
        Heavyball.polyak(0.0, 1.0)


def test_heavyball_gradcheck_and_loss():
    A, X = _system(n=10, k=3)

    def run(alpha, beta, v, rhs):
        model = Heavyball(0.0, 0.0, maxiter=4)
        del model.alpha, model.beta
        model.alpha, model.beta = alpha, beta
        return model(A.with_values(v), rhs).x, heavyball_loss(model, A.with_values(v), rhs)

    alpha = torch.tensor(0.3, dtype=torch.float64, requires_grad=True)
    beta = torch.tensor(0.2, dtype=torch.float64, requires_grad=True)
    values = A.values.detach().clone().requires_grad_()
    assert torch.autograd.gradcheck(run, (alpha, beta, values, X.clone().requires_grad_()))

    a = A.to_dense()
    f64 = dict(dtype=torch.float64)
    model = Heavyball(torch.tensor(0.3, **f64), torch.tensor(0.2, **f64), maxiter=6)
    E, previous = X, X
    for _ in range(6):
        E, previous = E - 0.3 * (a @ E) + 0.2 * (E - previous), E
    expected = (E * (a @ E)).sum(0).mean()
    assert torch.allclose(heavyball_loss(model, A, X), expected, rtol=1e-13, atol=0)
    assert torch.allclose(model.loss(A, X), expected, rtol=1e-13, atol=0)
    assert torch.allclose(heavyball_loss(model, A, X, iterations=0), (X * (a @ X)).sum(0).mean(),
                          rtol=1e-14, atol=0)


def test_heavyball_errors():
    with pytest.raises(TypeError, match="alpha"):
        Heavyball("a", 0.1)
    with pytest.raises(ValueError, match="beta"):
        Heavyball(0.1, torch.ones(2))
    model = Heavyball(0.1, 0.1, learnable=False)
    assert list(model.parameters()) == []
