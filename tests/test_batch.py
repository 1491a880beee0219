"""A batch of problems as one block-diagonal problem: the same loss and gradient as the
problems one by one, and the same training."""
import pytest
import torch

from learnsolve.nn import FactorNet
from learnsolve.problems import (diffusion_2d, fem_problem, l_shape, poisson_1d, poisson_2d,
                                 random_spd_problem)
from learnsolve.problems.batch import batch_problems, block_rhs, unbatch
from learnsolve.solvers import GMRES, PCG, IncompleteLU, NeuralFactor, gmres_loss, pcg_loss
from learnsolve.train import Trainer

F64 = torch.float64


def _problems():
    return [diffusion_2d(6, 6, "lognormal", seed=1, dtype=F64),
            fem_problem(l_shape(0.3), dtype=F64),
            poisson_2d(5, dtype=F64)]


def _factor(seed=0, ordering=None):
    torch.manual_seed(seed)
    M = NeuralFactor(FactorNet(8, 2), ordering=ordering).double()
    with torch.no_grad():
        M.alpha.fill_(0.3)
    return M


def _blocks(problems, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [p.random_rhs(3, generator=g, normalize=True) for p in problems]


def test_the_batch_is_block_diagonal():
    problems = _problems()
    batch = batch_problems(problems)
    sizes = [p.num_nodes for p in problems]
    assert batch.info["offsets"] == [0, sizes[0], sizes[0] + sizes[1], sum(sizes)]
    torch.testing.assert_close(batch.A.to_dense(),
                               torch.block_diag(*[p.A.to_dense() for p in problems]))
    assert batch.coordinates.shape == (sum(sizes), 2)
    X = block_rhs(batch, _blocks(problems))
    assert X.shape == (sum(sizes), 9)
    for p, (part, block) in enumerate(zip(unbatch(batch, X), _blocks(problems))):
        torch.testing.assert_close(part[:, 3 * p:3 * p + 3], block, rtol=0, atol=0)
        assert int((part[:, :3 * p] != 0).sum()) == 0 and int((part[:, 3 * p + 3:] != 0).sum()) == 0


@pytest.mark.parametrize("ordering", [None, "rcm"])
@pytest.mark.parametrize("loss, make", [
    (pcg_loss, lambda M: PCG(M=M, maxiter=6, rtol=0.0)),
    (gmres_loss, lambda M: GMRES(M=M, maxiter=6, rtol=0.0)),
])
def test_a_batch_has_the_mean_loss_and_gradient_of_its_problems(loss, make, ordering):
    problems = _problems() + [random_spd_problem(7, nodes=(200, 400), dtype=F64)
                              for _ in range(1)]
    M = _factor(ordering=ordering)
    model = make(M)
    blocks = _blocks(problems)
    separate = torch.stack([loss(model, p, X, iterations=6) for p, X in zip(problems, blocks)])
    separate.mean().backward()
    expected = [q.grad.clone() for q in M.parameters()]
    M.zero_grad()
    batched = loss(model, batch_problems(problems), torch.cat(blocks), iterations=6)
    torch.testing.assert_close(batched, separate.mean(), rtol=1e-12, atol=0)
    batched.backward()
    for q, g in zip(M.parameters(), expected):
        torch.testing.assert_close(q.grad, g, rtol=1e-9, atol=1e-14)


def test_a_fixed_preconditioner_batches_too():
    problems = _problems()
    model = GMRES(M=IncompleteLU(), maxiter=5, rtol=0.0)
    blocks = _blocks(problems, seed=2)
    batch = batch_problems(problems)
    separate = torch.stack([gmres_loss(model, p, X, iterations=5)
                            for p, X in zip(problems, blocks)]).mean()
    torch.testing.assert_close(gmres_loss(model, batch, torch.cat(blocks), iterations=5),
                               separate, rtol=1e-12, atol=0)


def test_pcg_solves_each_block_of_a_batch_as_its_own_system():
    problems = _problems()
    M = _factor()
    blocks = _blocks(problems, seed=4)
    batch = batch_problems(problems)
    with torch.no_grad():
        solution = PCG(M=M, rtol=1e-8)(batch.A, torch.cat(blocks), blocks=batch.info["offsets"])
        alone = [PCG(M=M, rtol=1e-8)(p.A, X) for p, X in zip(problems, blocks)]
    assert solution.converged
    assert solution.iterations == max(s.iterations for s in alone)
    assert solution.residuals.shape == (solution.iterations + 1, 9)
    for x, s in zip(unbatch(batch, solution.x), alone):
        torch.testing.assert_close(x, s.x, rtol=1e-10, atol=1e-12)
    for p, s in enumerate(alone):        # each block's history, frozen once converged
        history = solution.residuals[:s.iterations + 1, 3 * p:3 * p + 3]
        torch.testing.assert_close(history, s.residuals, rtol=1e-9, atol=1e-14)
    with pytest.raises(ValueError, match="blocks: expected offsets rising from 0"):
        PCG(M=M)(batch.A, torch.cat(blocks), blocks=[0, 5, 3])


def test_batched_training_follows_the_unbatched_one():
    problems = [diffusion_2d(5, 5, "lognormal", seed=s, dtype=F64) for s in range(5)]

    def trained(batch):
        M = _factor(seed=3)
        trainer = Trainer(PCG(M=M, maxiter=5, rtol=0.0), lr=1e-2, epochs=3, seed=0,
                          rhs_per_problem=2, problems_per_step=2, batch=batch, progress=False)
        trainer.fit(problems)
        return trainer, [q.detach().clone() for q in M.parameters()]
    unbatched, expected = trained(False)
    batched, parameters = trained(True)
    for q, e in zip(parameters, expected):
        torch.testing.assert_close(q, e, rtol=1e-8, atol=1e-10)
    torch.testing.assert_close(torch.tensor(batched.history_.loss),
                               torch.tensor(unbatched.history_.loss), rtol=1e-9, atol=0)


def test_bad_input():
    with pytest.raises(TypeError, match="problems: expected a non-empty sequence"):
        batch_problems([])
    with pytest.raises(ValueError, match=r"problems\[1\]: expected dtype torch.float64"):
        batch_problems([poisson_1d(3, dtype=F64), poisson_1d(3, dtype=torch.float32)])
    batch = batch_problems([poisson_1d(2), poisson_1d(3)])
    with pytest.raises(ValueError, match="blocks: expected one block per problem"):
        block_rhs(batch, [torch.ones(2)])
    with pytest.raises(ValueError, match=r"blocks\[1\]: expected 3 rows"):
        block_rhs(batch, [torch.ones(2), torch.ones(2)])
    with pytest.raises(ValueError, match="batch: expected a problem made by batch_problems"):
        block_rhs(poisson_1d(2), [torch.ones(2)])
    with pytest.raises(TypeError, match="batch: expected a bool"):
        Trainer(PCG(M=_factor()), batch=1)
