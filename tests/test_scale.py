"""Scale: a learned preconditioner must behave the same on ``c A`` as on ``A`` (c > 0).

Trained with the Trainer on a matrix and on its multiples (1/400, 441: a 1/h^2
scaling, 1e6), in float64, the learned preconditioners give the same loss
history (to rounding) and the same PCG iterations; so do the domain-decomposition
interfaces. The heavy ball's step is not scale-free (documented): its iterates
on ``c A`` are those on ``A`` for the step ``alpha / c``."""
import dataclasses

import numpy as np
import pytest
import torch

from learnsolve import Trainer
from learnsolve.evaluation import compare_preconditioners
from learnsolve.nn import InterfaceNet
from learnsolve.problems import diffusion_2d, poisson_1d, poisson_2d
from learnsolve.solvers import (PCG, RAS, SPAI, Heavyball, Jacobi, LowerFactor, RobinInterface,
                                heavyball_loss, jacobi_loss, ras_loss)

F64 = torch.float64
SCALES = (1 / 400, 441.0, 1e6)
SAME = dict(rtol=1e-10, atol=0)


def scaled(problem, c):
    """The problem with ``c A``: the same right-hand sides, coordinates and partition."""
    return dataclasses.replace(problem, A=c * problem.A)


def lognormal(nx=8):
    """Variable coefficients: a diagonal that is not constant."""
    return diffusion_2d(nx, coefficient="lognormal", seed=3, dtype=F64)


def pcg_iterations(M, problem):
    """PCG iterations to 1e-6 with ``M`` and without, for the problem's seeded b."""
    trained, none = compare_preconditioners(M, problem, baselines=("none",))
    assert trained.converged and none.converged
    return trained.iterations, none.iterations


# The learned preconditioners, each as trained: a fresh model for a problem.
MODELS = {
    "LowerFactor": lambda p: PCG(M=LowerFactor(p)),
    "LowerFactor.banded": lambda p: PCG(M=LowerFactor.banded(p, 2)),
    "SPAI in PCG": lambda p: PCG(M=SPAI(p, init="jacobi", symmetric=True)),
    "SPAI": lambda p: SPAI(p),                                   # its own loss, eq. 50
    "Jacobi in PCG": lambda p: PCG(M=Jacobi(1.0, num_nodes=p.num_nodes).double()),
}


def fit(model, problem, epochs=30):
    return Trainer(model, lr=1e-2, epochs=epochs, seed=0, progress=False).fit(problem)


@pytest.mark.parametrize("name", list(MODELS))
def test_learned_preconditioners_train_the_same_on_scaled_matrices(name):
    problem = lognormal()
    reference = fit(MODELS[name](problem), problem)
    preconditioner = getattr(reference.model, "M", reference.model)
    parameters = torch.cat([p.detach().reshape(-1) for p in reference.model.parameters()])
    iterations = None if name == "SPAI" else pcg_iterations(preconditioner, problem)
    for c in SCALES:
        other = scaled(problem, c)
        trainer = fit(MODELS[name](other), other)
        np.testing.assert_allclose(trainer.history_.loss, reference.history_.loss, **SAME)
        learned = torch.cat([p.detach().reshape(-1) for p in trainer.model.parameters()])
        torch.testing.assert_close(learned, parameters, rtol=1e-8, atol=1e-12)
        M = getattr(trainer.model, "M", trainer.model)
        if iterations is not None:
            assert pcg_iterations(M, other) == iterations, c
        # The same parameters, set up for c A: M / c.
        r = other.random_rhs(seed=1)
        with torch.no_grad():
            torch.testing.assert_close(M.setup(other.A)(r), preconditioner.setup(problem.A)(r) / c,
                                       rtol=1e-10, atol=0)


def test_lower_factor_on_a_matrix_scaled_by_one_over_h_squared():
    """The issue: trained at the default lr on 17^2 times the 2D Poisson matrix (16 x 16,
    entries ~1000), the factor came out numerically singular (cond(MA) ~ 1e15) and PCG
    took more iterations than without it. Now it trains as on the unscaled matrix."""
    problem = scaled(poisson_2d(16, dtype=F64), 17.0 ** 2)
    model = PCG(M=LowerFactor(problem))
    trainer = Trainer(model, epochs=100, seed=0, progress=False).fit(problem)   # lr 1e-2
    with torch.no_grad():
        MA = model.M.setup(problem.A)(torch.eye(256, dtype=F64)) @ problem.A.to_dense()
    eigenvalues = torch.linalg.eigvals(MA).real
    assert eigenvalues.min() > 0 and eigenvalues.max() / eigenvalues.min() < 100
    learned, none = pcg_iterations(model.M, problem)
    assert learned < 0.75 * none
    reference = Trainer(PCG(M=LowerFactor(problem)), epochs=100, seed=0, progress=False).fit(
        scaled(problem, 1 / 17.0 ** 2))
    np.testing.assert_allclose(trainer.history_.loss, reference.history_.loss, **SAME)


def test_jacobi_solver_and_loss_scale():
    """Jacobi's weights are scale-free; its loss (an energy) scales with c."""
    problem = lognormal()
    b = problem.random_rhs(seed=0)
    X = problem.random_rhs(4, seed=1)
    omega = torch.linspace(0.5, 1.0, problem.num_nodes, dtype=F64)
    jacobi = Jacobi(omega, maxiter=20)
    solution = jacobi(problem.A, b)
    for c in SCALES:
        A = c * problem.A
        other = jacobi(A, b)
        torch.testing.assert_close(other.residuals, solution.residuals, **SAME)
        torch.testing.assert_close(other.x, solution.x / c, **SAME)
        torch.testing.assert_close(jacobi_loss(jacobi, A, X), c * jacobi_loss(jacobi, problem, X),
                                   **SAME)


def test_heavyball_step_is_not_scale_free():
    """The heavy ball on c A runs the iterates of A (divided by c) with alpha / c."""
    problem = poisson_1d(16, dtype=F64)
    b = problem.random_rhs(seed=0)
    X = problem.random_rhs(4, seed=1)

    def heavyball(alpha):
        return Heavyball(torch.tensor(alpha, dtype=F64), torch.tensor(0.2, dtype=F64),
                         maxiter=20)
    solution = heavyball(0.3)(problem.A, b)
    for c in SCALES:
        A = c * problem.A
        other = heavyball(0.3 / c)(A, b)
        torch.testing.assert_close(other.residuals, solution.residuals, **SAME)
        torch.testing.assert_close(other.x, solution.x / c, **SAME)
        torch.testing.assert_close(heavyball_loss(heavyball(0.3 / c), A, X),
                                   c * heavyball_loss(heavyball(0.3), problem, X), **SAME)
        unscaled = heavyball(0.3)(A, b)                     # the step of A does not serve c A
        assert unscaled.iterations != solution.iterations or not torch.allclose(
            unscaled.residuals, solution.residuals)


def _interface_net():
    torch.manual_seed(0)
    return InterfaceNet(hidden=8, layers=1).double()


INTERFACES = {"classical": lambda: None, "Robin": lambda: RobinInterface(0.5),
              "InterfaceNet": _interface_net}


@pytest.mark.parametrize("name", list(INTERFACES))
def test_domain_decomposition_interfaces_are_scale_free(name):
    problem = lognormal(12).with_partition(4, overlap=1)
    assert problem.coordinates is not None
    X = problem.random_rhs(4, seed=0, distribution="uniform", normalize=True)
    ras = RAS(problem, interface=INTERFACES[name]())
    factor = ras.convergence_factor(problem.A)
    with torch.no_grad():
        loss = ras_loss(RAS(interface=ras.interface), problem, X)
    iterations = pcg_iterations(ras, problem)
    for c in SCALES:
        other = scaled(problem, c)
        assert ras.convergence_factor(other.A) == pytest.approx(factor, rel=1e-10)
        with torch.no_grad():
            torch.testing.assert_close(ras_loss(RAS(interface=ras.interface), other, X), loss,
                                       **SAME)
        assert pcg_iterations(ras, other) == iterations


def test_learned_interface_trains_the_same_on_scaled_matrices():
    problem = lognormal(12).with_partition(4, overlap=1)

    def train(p):
        return Trainer(RAS(interface=_interface_net()), lr=1e-2, epochs=3, rhs_per_problem=4,
                       distribution="uniform", seed=0, progress=False).fit(p)
    reference = train(problem).history_.loss
    for c in SCALES:
        np.testing.assert_allclose(train(scaled(problem, c)).history_.loss, reference,
                                   rtol=1e-9, atol=0)
