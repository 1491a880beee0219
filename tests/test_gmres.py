"""Restarted GMRES: against scipy's gmres and spsolve, dense references for the residual
histories and the gradients, blocks against separate solves, breakdowns and bad input."""
import numpy as np
import pytest
import scipy.sparse as sp
import scipy.sparse.linalg as sla
import torch

import learnsolve as ls
from learnsolve.problems import poisson_1d, poisson_2d
from learnsolve.solvers.base import Preconditioner
from learnsolve.solvers.gmres import GMRES
from learnsolve.solvers.jacobi import Jacobi

from cases import DEVICES, randn

F64 = torch.float64


def convection_diffusion_scipy(m, c=2.0):
    """The 2D Poisson matrix of an m x m grid plus c times an upwind first difference
    along the grid lines: nonsymmetric, positive real part."""
    P = poisson_2d(m, dtype=F64).A.to_scipy()
    D = sp.diags_array([-1.0, 1.0], offsets=[-1, 0], shape=(m, m))
    return sp.csr_array(P + c * sp.kron(sp.eye_array(m), D))


def convection_diffusion(m, c=2.0, dtype=F64, device="cpu"):
    return ls.core.from_scipy(convection_diffusion_scipy(m, c), dtype=dtype).to(device)


def relative_error(x, reference):
    return float(torch.linalg.vector_norm(x - reference) / torch.linalg.vector_norm(reference))


def iterates(A, b, **kwargs):
    """The solution and the iterates passed to the callback."""
    seen = []
    solution = GMRES(**kwargs, callback=seen.append)(A, b)
    return solution, seen


# ---------------------------------------------------------------------------- forward


@pytest.mark.parametrize("device", DEVICES)
def test_agrees_with_spsolve(device, dtype):
    S = convection_diffusion_scipy(10)
    b = randn(100, seed=1)
    expected = torch.from_numpy(sla.spsolve(S.tocsc(), b.numpy()))
    rtol = 1e-10 if dtype == F64 else 1e-5
    A = ls.core.from_scipy(S, dtype=dtype).to(device)
    solution = GMRES(restart=10, rtol=rtol)(A, b.to(device, dtype))
    assert solution.converged, solution.message
    assert solution.x.dtype == dtype and solution.x.device.type == device
    x = solution.x.cpu().to(F64)
    # cond(A) ~ 30 here: the error is at most cond * rtol.
    assert relative_error(x, expected) < 100 * rtol
    assert float(solution.relative_residuals[-1]) <= rtol
    # Recomputed in float64 (the float32 one carries float32 rounding).
    exact_A = ls.core.from_scipy(S, dtype=F64)
    assert float(torch.linalg.vector_norm(b - exact_A @ x)) <= 2 * rtol * float(b.norm())


@pytest.mark.parametrize("restart", [4, 10, 25, 100])
def test_steps_match_scipy(restart):
    S = convection_diffusion_scipy(10)
    b = randn(100, seed=2)
    presid = []
    _, info = sla.gmres(S, b.numpy(), rtol=1e-8, restart=restart, maxiter=1000,
                        callback=presid.append, callback_type="pr_norm")
    assert info == 0
    solution = GMRES(restart=restart, rtol=1e-8)(ls.core.from_scipy(S, dtype=F64), b)
    assert solution.converged
    assert abs(solution.iterations - len(presid)) <= 1
    # Inside the first cycle both record the least-squares residual |g_{j+1}|.
    first = min(restart, solution.iterations, len(presid)) - 1
    torch.testing.assert_close(solution.relative_residuals[1:first + 1],
                               torch.tensor(presid[:first], dtype=F64), rtol=1e-8, atol=1e-14)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("precondition", [False, True])
def test_recorded_residuals_are_true_residuals(device, precondition):
    A = convection_diffusion(8, device=device)
    b = randn(64, seed=3, device=device)
    M = ls.diag(1.0 / A.diagonal() * 0.9) if precondition else None
    restart = 7
    solution, seen = iterates(A, b, M=M, restart=restart, rtol=1e-10)
    assert solution.converged
    assert len(seen) == solution.iterations
    direct = torch.stack([torch.linalg.vector_norm(b - A @ x) for x in seen])
    assert float(solution.residuals[0]) == pytest.approx(float(b.norm()), rel=1e-14, abs=0)
    torch.testing.assert_close(solution.residuals[1:], direct, rtol=1e-7,
                               atol=1e-13 * float(b.norm()))
    # Non-increasing: within a cycle GMRES minimises over a growing space.
    for start in range(0, solution.iterations, restart):
        cycle = solution.residuals[start:start + restart + 1]
        assert bool((cycle[1:] <= cycle[:-1] * (1 + 1e-12)).all())
    assert solution.residuals.shape == (solution.iterations + 1,)


def test_least_squares_optimal():
    """Without restart, step j attains min ||b - A x|| over x in M K_j(A M, b) (dense
    least squares on the Krylov matrix)."""
    S = convection_diffusion_scipy(6)
    A = ls.core.from_scipy(S, dtype=F64)
    dense = torch.from_numpy(S.toarray())
    Mdense = torch.diag(1.0 / torch.arange(1.0, 37.0, dtype=F64).sqrt())
    b = randn(36, seed=4)
    solution = GMRES(M=lambda r: Mdense @ r, restart=36, maxiter=6, rtol=0)(A, b)
    AM = dense @ Mdense
    K = [b / b.norm()]
    for _ in range(5):
        K.append(AM @ K[-1])
        K[-1] = K[-1] / K[-1].norm()
    K = torch.stack(K, dim=1)
    for j in range(1, 7):
        y = torch.linalg.lstsq(AM @ K[:, :j], b[:, None]).solution
        best = torch.linalg.vector_norm(b - AM @ K[:, :j] @ y[:, 0])
        assert float(solution.residuals[j]) == pytest.approx(float(best), rel=1e-8, abs=0)


def test_no_restart_converges_in_n_steps():
    S = convection_diffusion_scipy(5, c=4.0)
    A = ls.core.from_scipy(S, dtype=F64)
    b = randn(25, seed=5)
    solution = GMRES(restart=25, maxiter=25, rtol=1e-10)(A, b)
    assert solution.converged, solution.message
    assert solution.iterations <= 25
    expected = torch.from_numpy(sla.spsolve(S.tocsc(), b.numpy()))
    assert relative_error(solution.x, expected) < 1e-8
    # A restart longer than n is cut to n (the space is then the whole space).
    longer = GMRES(restart=10**9, maxiter=25, rtol=1e-10)(A, b)
    assert longer.iterations == solution.iterations


def test_restart_one_on_spd():
    A = poisson_2d(5, dtype=F64).A
    b = randn(25, seed=6)
    solution = GMRES(restart=1, rtol=1e-8)(A, b)
    assert solution.converged, solution.message
    assert solution.iterations > 25                     # it did restart, many times
    expected = torch.linalg.solve(A.to_dense(), b)
    assert relative_error(solution.x, expected) < 1e-6
    assert bool((solution.residuals[1:] <= solution.residuals[:-1] * (1 + 1e-12)).all())


@pytest.mark.parametrize("device", DEVICES)
def test_preconditioners_reduce_steps(device):
    m = 10
    S = convection_diffusion_scipy(m)
    scale = np.logspace(0, 4, m * m)
    np.random.default_rng(0).shuffle(scale)
    S = sp.csr_array(sp.diags_array(scale) @ S)          # rows scaled over 4 decades
    A = ls.core.from_scipy(S, dtype=F64).to(device)
    b = randn(m * m, seed=7, device=device)
    inverse_diagonal = 1.0 / A.diagonal()
    plain = GMRES(restart=20, rtol=1e-8, maxiter=400)(A, b)
    preconditioners = {"jacobi": Jacobi(omega=1.0, learnable=False),
                       "csr": ls.diag(inverse_diagonal),
                       "callable": lambda r: r * inverse_diagonal}
    steps = {}
    for name, M in preconditioners.items():
        solution = GMRES(M=M, restart=20, rtol=1e-8)(A, b)
        assert solution.converged, (name, solution.message)
        # Right preconditioning: the tolerance holds for the true residual b - A x.
        assert float(torch.linalg.vector_norm(b - A @ solution.x)) <= 1e-8 * float(b.norm())
        steps[name] = solution.iterations
    assert len(set(steps.values())) == 1, steps
    assert steps["csr"] * 2 < plain.iterations, (steps, plain.iterations)


class _Counting(Preconditioner):
    """Jacobi, counting its setups."""

    def __init__(self):
        super().__init__()
        self.setups = 0

    def setup(self, A):
        self.setups += 1
        d = 1.0 / A.diagonal()
        return lambda r: r * (d if r.dim() == 1 else d[:, None])


def test_setup_once_per_solve_and_block_shapes():
    A = convection_diffusion(6)
    M = _Counting()
    B = randn(36, 3, seed=8)
    solution = GMRES(M=M, restart=5, rtol=1e-10)(A, B)
    assert M.setups == 1 and solution.converged
    assert solution.iterations > 5                      # several cycles
    assert solution.x.shape == (36, 3)
    assert solution.residuals.shape == (solution.iterations + 1, 3)
    with pytest.raises(ValueError, match="M: expected M r shaped like r"):
        GMRES(M=lambda r: r[:-1])(A, B)


# ---------------------------------------------------------------------------- blocks


@pytest.mark.parametrize("device", DEVICES)
def test_block_equals_separate_solves(device):
    A = convection_diffusion(8, device=device)
    B = torch.cat([randn(64, 3, seed=9), torch.zeros(64, 1, dtype=F64)], dim=1).to(device)
    # Starting nearer the solution, a column has less to gain and converges sooner.
    exact = torch.linalg.solve(A.to_dense(), B)
    X0 = exact + torch.tensor([1.0, 1e-3, 1e-6, 0.0], dtype=F64, device=device) * \
        randn(64, 4, seed=10, device=device)
    X0[:, 0] = 0.0
    X0[:, 3] = 0.0
    solver = GMRES(restart=6, rtol=1e-9)
    block = solver(A, B, X0)
    assert block.converged
    separate = [solver(A, B[:, c], X0[:, c]) for c in range(B.shape[1])]
    counts = [s.iterations for s in separate]
    assert len(set(counts)) == 4, counts                 # columns converge at different steps
    assert block.iterations == max(counts)
    assert block.residuals.shape == (block.iterations + 1, 4)
    for c, single in enumerate(separate):
        assert single.converged
        scale = float(B[:, c].norm()) or 1.0
        torch.testing.assert_close(block.x[:, c], single.x, rtol=1e-9, atol=1e-9 * scale)
        steps = single.iterations
        torch.testing.assert_close(block.residuals[:steps + 1, c], single.residuals,
                                   rtol=1e-7, atol=1e-14 * scale)
        # Frozen after converging: x and the residual stay as they were.
        torch.testing.assert_close(block.residuals[steps:, c],
                                   single.residuals[-1].expand(block.iterations + 1 - steps),
                                   rtol=1e-5, atol=1e-14 * scale)
    assert bool((block.x[:, 3] == 0).all())             # b = 0: x = 0 exactly


def test_block_gradient_equals_separate_gradients():
    """Freezing converged columns keeps the gradient finite and per column."""
    base = convection_diffusion(5)
    easy = torch.zeros(25, dtype=F64)
    easy[7] = 1.0
    B = torch.stack([randn(25, seed=11), base @ easy], dim=1).requires_grad_()
    values = base.values.clone().requires_grad_()
    A = base.with_values(values)
    solver = GMRES(restart=4, rtol=1e-10)
    weights = randn(25, 2, seed=12)
    block = solver(A, B)
    counts = [solver(base, B[:, c].detach()).iterations for c in range(2)]
    assert counts[0] != counts[1], counts
    (block.x * weights).sum().backward()
    grads = values.grad.clone(), B.grad.clone()
    values.grad = None
    B.grad = None
    total = 0
    for c in range(2):
        single = solver(A, B[:, c])
        total = total + (single.x * weights[:, c]).sum()
    total.backward()
    assert torch.isfinite(grads[0]).all() and torch.isfinite(grads[1]).all()
    torch.testing.assert_close(grads[0], values.grad, rtol=1e-7, atol=1e-9)
    torch.testing.assert_close(grads[1], B.grad, rtol=1e-7, atol=1e-9)


# ---------------------------------------------------------------------------- ends


def test_zero_steps():
    A = convection_diffusion(5)
    x_true = randn(25, seed=13)
    solution = GMRES()(A, A @ x_true, x0=x_true.clone())
    assert solution.converged and solution.iterations == 0
    torch.testing.assert_close(solution.x, x_true)
    assert solution.residuals.shape == (1,)
    zero = GMRES()(A, torch.zeros(25, dtype=F64))
    assert zero.converged and zero.iterations == 0 and bool((zero.x == 0).all())


def test_happy_breakdown(dtype):
    n = 12
    b = randn(n, seed=14, dtype=dtype)
    # A = I: the first step breaks down; with rtol = atol = 0 only the breakdown ends it.
    identity = GMRES(rtol=0.0, maxiter=10)(ls.eye(n, dtype=dtype), b)
    assert identity.converged and identity.iterations == 1
    assert torch.isfinite(identity.residuals).all()
    torch.testing.assert_close(identity.x, b)
    # A diagonal, b in a 2-dimensional invariant subspace: exact in 2 steps.
    D = ls.diag(torch.arange(1.0, n + 1, dtype=dtype))
    e = torch.zeros(n, dtype=dtype)
    e[[2, 5]] = torch.tensor([1.0, 2.0], dtype=dtype)
    two = GMRES(rtol=0.0, maxiter=10)(D, e)
    assert two.converged and two.iterations == 2, two.message
    torch.testing.assert_close(two.x, e / torch.arange(1.0, n + 1, dtype=dtype))
    # In a block, the column that broke down stays frozen (x and residual unchanged)
    # while another runs on through restarts (rtol = 0: it never converges).
    d = 1.0 + randn(n, seed=15, dtype=dtype).abs()
    e[[2, 5]] = randn(2, seed=16, dtype=dtype)
    block = GMRES(rtol=0.0, restart=3, maxiter=9)(ls.diag(d), torch.stack([e, b], dim=1))
    assert block.status == "maxiter" and block.iterations == 9
    assert float(block.residuals[2, 0]) == 0.0           # the estimate at the breakdown
    assert float(block.residuals[3, 0]) > 0.0            # the true residual, rounding
    assert bool((block.residuals[3:, 0] == block.residuals[3, 0]).all())
    torch.testing.assert_close(block.x[:, 0], e / d)
    # b an eigenvector of the 1D Poisson matrix (to rounding): one step, and no NaN
    # when pushed on at rounding level.
    A = poisson_1d(n, dtype=dtype).A
    t = torch.arange(1, n + 1, dtype=F64) * torch.pi / (n + 1)
    v = torch.sin(3 * t).to(dtype)
    assert GMRES(rtol=1e-5 if dtype == torch.float32 else 1e-12)(A, v).iterations == 1
    pushed = GMRES(rtol=0.0, maxiter=6, restart=3)(A, v)
    assert torch.isfinite(pushed.x).all() and torch.isfinite(pushed.residuals).all()


def test_singular_breakdown():
    A = ls.diag(torch.tensor([0.0, 0.0, 1.0], dtype=F64))
    b = torch.tensor([1.0, 1.0, 0.0], dtype=F64)
    solution = GMRES()(A, b)
    assert solution.status == "breakdown"
    assert "singular" in solution.message
    assert bool((solution.x == 0).all())
    B = torch.stack([torch.tensor([0.0, 0.0, 2.0], dtype=F64), b], dim=1)
    block = GMRES()(A, B)
    assert block.status == "breakdown" and "column 1" in block.message
    torch.testing.assert_close(block.x[:, 0], torch.tensor([0.0, 0.0, 2.0], dtype=F64))


def test_maxiter():
    A = convection_diffusion(8)
    b = randn(64, seed=15)
    solution = GMRES(restart=5, maxiter=7, rtol=1e-12)(A, b)
    assert solution.status == "maxiter" and not solution.converged
    assert "maxiter = 7" in solution.message
    assert solution.iterations == 7 and solution.residuals.shape == (8,)
    # The last row is the true residual of the returned x.
    assert float(solution.residuals[-1]) == pytest.approx(
        float(torch.linalg.vector_norm(b - A @ solution.x)), rel=1e-12, abs=0)
    assert GMRES(maxiter=0)(A, b).status == "maxiter"
    # Far below rounding, the estimates go on falling; the last row is still the true
    # residual, at rounding level.
    pushed = GMRES(restart=30, maxiter=90, rtol=0.0)(A, b)
    assert pushed.status == "maxiter"
    true = float(torch.linalg.vector_norm(b - A @ pushed.x))
    assert float(pushed.residuals[-1]) == pytest.approx(true, rel=1e-12, abs=0)
    assert 1e-17 < true / float(b.norm()) < 1e-13


def test_diverged():
    A = convection_diffusion(4)
    b = randn(16, seed=16)
    solution = GMRES(M=lambda r: r * float("nan"))(A, b)
    assert solution.status == "diverged"


# ---------------------------------------------------------------------------- gradients


def test_gradcheck():
    rng = np.random.default_rng(0)
    S = sp.random_array((6, 6), density=0.5, rng=rng, format="csr") + 3 * sp.eye_array(6)
    S = sp.csr_array(S)
    A = ls.core.from_scipy(S, dtype=F64)
    M = ls.core.from_scipy(sp.csr_array(sp.eye_array(6) * 0.4 + 0.05 * (S != 0)), dtype=F64)
    b, x0 = randn(6, seed=17), 0.1 * randn(6, seed=18)
    # Two cycles of two steps: the gradient goes through a restart.
    solver = GMRES(restart=2, maxiter=4, rtol=0.0)
    assert solver(A, b).iterations == 4

    def solve(values, b, x0, m_values):
        gm = GMRES(M=M.with_values(m_values), restart=2, maxiter=4, rtol=0.0)
        solution = gm(A.with_values(values), b, x0)
        return solution.x, solution.residuals

    inputs = [t.clone().requires_grad_() for t in (A.values, b, x0, M.values)]
    assert torch.autograd.gradcheck(solve, inputs)
    block = randn(6, 2, seed=19).requires_grad_()
    assert torch.autograd.gradcheck(lambda v, B: solver(A.with_values(v), B).x,
                                    (inputs[0], block))
    # One input at a time: the basis starts without a gradient and gains one later.
    assert torch.autograd.gradcheck(lambda v: solver(A.with_values(v), b).x, (inputs[0],))
    assert torch.autograd.gradcheck(
        lambda v: GMRES(M=M.with_values(v), restart=2, maxiter=4, rtol=0.0)(A, b).residuals,
        (inputs[3],))


def test_converged_gradient_is_the_adjoint():
    """Solved tightly, the unrolled gradient is that of A^{-1} b: grad_b = A^{-T} c,
    grad_A = -(A^{-T} c) x^T on A's pattern."""
    S = convection_diffusion_scipy(5)
    A0 = ls.core.from_scipy(S, dtype=F64)
    values = A0.values.clone().requires_grad_()
    b = randn(25, seed=20).requires_grad_()
    c = randn(25, seed=21)
    solution = GMRES(restart=6, rtol=1e-13)(A0.with_values(values), b)
    assert solution.converged and solution.iterations > 6
    (solution.x @ c).backward()
    dense = A0.to_dense()
    lam = torch.linalg.solve(dense.T, c)
    x = torch.linalg.solve(dense, b.detach())
    torch.testing.assert_close(b.grad, lam, rtol=1e-8, atol=1e-10)
    expected = -(lam[A0.row_indices()] * x[A0.col_indices])
    torch.testing.assert_close(values.grad, expected, rtol=1e-8, atol=1e-10)


# ---------------------------------------------------------------------------- errors


@pytest.mark.parametrize("restart", [0, 1.5, True, -3, "5"])
def test_bad_restart(restart):
    with pytest.raises(ValueError, match="restart"):
        GMRES(restart=restart)


def test_bad_input():
    A = convection_diffusion(3)
    with pytest.raises(ValueError, match="A: expected a square"):
        GMRES()(ls.core.from_scipy(sp.csr_array(np.ones((3, 4))), dtype=F64), torch.ones(3))
    with pytest.raises(ValueError, match="b: expected shape"):
        GMRES()(A, torch.ones(8, dtype=F64))
    with pytest.raises(ValueError, match="x0"):
        GMRES()(A, torch.ones(9, dtype=F64), torch.ones(9, 2, dtype=F64))
    with pytest.raises(ValueError, match="maxiter"):
        GMRES(maxiter=-1)
    with pytest.raises(ValueError, match="rtol"):
        GMRES(rtol=-1.0)
    with pytest.raises(TypeError, match="M:"):
        GMRES(M=3)(A, torch.ones(9, dtype=F64))
    with pytest.raises(TypeError, match="callback"):
        GMRES(callback=3)


# ------------------------------------------------------------------ divergence penalty

def test_gmres_loss_penalty_is_zero_while_the_stationary_iteration_contracts():
    from learnsolve.solvers.gmres import gmres_loss
    p = poisson_2d(10, dtype=torch.float64).with_partition(4, overlap=1)
    B = p.random_rhs(3, seed=0, normalize=True)
    model = GMRES(M=ls.solvers.RAS(coarse="nicolaides"))
    plain = gmres_loss(model, p, B)
    assert torch.equal(gmres_loss(model, p, B, divergence_penalty=10.0), plain)
    assert torch.equal(gmres_loss(model, p, B, divergence_penalty=0.0), plain)


def test_gmres_loss_penalty_pushes_a_divergent_iteration_back():
    from learnsolve.solvers.gmres import gmres_loss, stationary_growth
    p = poisson_1d(32, dtype=torch.float64)
    B = p.random_rhs(4, seed=1, normalize=True)
    jacobi = Jacobi(omega=2.5, num_nodes=32)           # I - 2.5 D^{-1} A diverges
    model = GMRES(M=jacobi)
    growth = stationary_growth(jacobi.setup(p.A), p.A, B, 8)
    assert float(growth.detach()) > 1.5
    plain = gmres_loss(model, p, B)
    penalised = gmres_loss(model, p, B, divergence_penalty=1.0)
    torch.testing.assert_close(penalised - plain, (growth - 1) ** 2)
    (gradient,) = torch.autograd.grad(penalised - plain, jacobi.omega)
    assert (gradient > 0).all()                         # descent lowers the weights
    # The estimate approaches the spectral radius: 1 - 2.5 * (2 - 2 cos(pi h)) / 2 in
    # magnitude for the highest mode, here ~4.0.
    h = 1 / 33
    rho = abs(1 - 2.5 * (1 + np.cos(np.pi * h)))
    assert abs(float(stationary_growth(jacobi.setup(p.A), p.A, B, 200).detach()) - rho) < 0.05 * rho


def test_gmres_loss_penalty_arguments():
    from learnsolve.solvers.gmres import gmres_loss
    p = poisson_1d(8, dtype=torch.float64)
    B = p.random_rhs(2, seed=0, normalize=True)
    for bad in (-1.0, float("nan"), float("inf"), True, "1"):
        with pytest.raises(ValueError, match="divergence_penalty"):
            gmres_loss(GMRES(), p, B, divergence_penalty=bad)
    for bad in (0, 1.5, True):
        with pytest.raises(ValueError, match="penalty_steps"):
            gmres_loss(GMRES(), p, B, divergence_penalty=1.0, penalty_steps=bad)
    assert gmres_loss(GMRES(), p, B, divergence_penalty=1.0).isfinite()    # M = I
