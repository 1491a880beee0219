"""The paper's applications at its small sizes, trained with the Trainer: the results of
sections 4.1 (fig. 7), 4.2 (fig. 8), 4.3 (fig. 11) and 4.6 (fig. 19)."""
import torch

from learnsolve.problems import poisson_1d, poisson_2d
from learnsolve.solvers import (PCG, SPAI, Heavyball, Jacobi, LowerFactor, heavyball_loss,
                                spai_classical, spai_loss)
from learnsolve.train import Trainer

F64 = torch.float64


def _expected_loss_minimiser(A):
    """Per-node weights minimising the expectation of eq. 36 over x with identity
    covariance, tr(T^T A T) with T = I - diag(w) D^-1 A: a quadratic in w, solved
    exactly by its normal equations (independent of the Trainer and of Jacobi)."""
    a = A.to_dense()
    B = torch.diag(1 / torch.diag(a)) @ a  # T = I - diag(w) B
    # tr((I - W B)^T A (I - W B)) = tr(A) - 2 sum_i w_i (B A)_ii + sum_ij w_i w_j A_ij (B B^T)_ij
    H = a * (B @ B.T)
    g = torch.diag(B @ a)
    return torch.linalg.solve(H, g)


def test_jacobi_per_node_weights_fig7():
    problem = poisson_1d(16, dtype=F64)
    model = Jacobi(1.0, num_nodes=16).double()
    trainer = Trainer(model, lr=1e-2, epochs=400, rhs_per_problem=32, seed=0, progress=False)
    trainer.fit(problem)
    omega = model.omega.detach()
    interior, ends = omega[2:-2], omega[[0, -1]]
    assert abs(float(interior.mean()) - 2 / 3) < 0.1           # the paper: near 2/3
    assert bool((ends > interior.mean() + 0.1).all())          # the paper: ends larger
    best = _expected_loss_minimiser(problem.A)
    assert float((omega - best).abs().max()) < 0.06
    assert trainer.history_[-1]["loss"] < 0.5 * trainer.history_[0]["loss"]


def test_heavyball_fig8():
    n = 16
    problem = poisson_1d(n, dtype=F64)
    model = Heavyball(torch.tensor(0.1, dtype=F64), torch.tensor(0.1, dtype=F64),
                      maxiter=3 * n // 4)
    X = torch.randn(n, 64, dtype=F64, generator=torch.Generator().manual_seed(123))
    X = X / X.norm(dim=0)
    before = float(heavyball_loss(model, problem.A, X).detach())
    trainer = Trainer(model, lr=1e-2, epochs=200, rhs_per_problem=16, seed=0, progress=False).fit(
        problem)
    after = float(heavyball_loss(model, problem.A, X).detach())
    assert after < 0.2 * before
    assert trainer.history_[-1]["loss"] < trainer.history_[0]["loss"]


def test_pcg_learned_lower_factor_fig11():
    problem = poisson_2d(8, dtype=F64)
    A = problem.A
    model = PCG(M=LowerFactor.banded(A, 1))
    Trainer(model, lr=1e-2, epochs=300, rhs_per_problem=16, seed=0, progress=False).fit(problem)
    b = problem.random_rhs(seed=7)
    with torch.no_grad():
        learned = PCG(M=model.M, rtol=1e-6)(A, b)
        plain = PCG(rtol=1e-6)(A, b)
    assert learned.converged and plain.converged
    assert learned.iterations < plain.iterations


def test_spai_gradient_descent_reaches_classical_fig19():
    problem = poisson_2d(8, dtype=F64)
    A = problem.A
    classical = float(spai_loss(spai_classical(A), A))
    model = SPAI(A)  # M = mask(A), as the paper
    start = float(spai_loss(model, A).detach())
    Trainer(model, lr=2e-2, epochs=400, rhs_per_problem=1, seed=0, progress=False).fit(problem)
    reached = float(spai_loss(model, A).detach())
    assert start > 10 * classical
    assert reached <= 1.03 * classical
    assert reached >= classical * (1 - 1e-9)  # the classical one is the least-squares optimum
