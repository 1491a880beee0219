"""CoarseNet: a learned correction of the linear coarse space that starts as it."""
from functools import partial

import pytest
import torch
from torch.autograd import gradcheck

from learnsolve import Trainer
from learnsolve.nn import CoarseNet
from learnsolve.problems import ProblemSet, poisson_2d, random_schwarz_problem
from learnsolve.solvers import PCG, RAS

F64 = torch.float64


def _problem():
    return poisson_2d(9, dtype=F64).with_partition(5, overlap=1)


def test_an_untrained_network_is_the_linear_space():
    p = _problem()
    torch.manual_seed(0)
    net = CoarseNet(hidden=8, layers=2).double()
    learned = RAS(p, coarse=net).coarse_basis(p.A)
    linear = RAS(p, coarse="linear").coarse_basis(p.A)
    assert torch.equal(learned.to_dense(), linear.to_dense())


def test_the_correction_sits_on_each_nodes_own_columns():
    p = _problem()
    torch.manual_seed(0)
    net = CoarseNet(hidden=8, layers=1).double()
    with torch.no_grad():
        net.alpha.copy_(torch.tensor([0.3, -0.2, 0.1], dtype=F64))
    Z = RAS(p, coarse=net).coarse_basis(p.A).to_dense()
    linear = RAS(p, coarse="linear").coarse_basis(p.A).to_dense()
    G = net.correction(p.A, p.partition, p.coordinates).detach()
    S = p.partition.num_parts
    m = p.partition.membership
    expected = linear.clone()
    rows = torch.arange(p.num_nodes)
    expected[rows, m] += 0.3 * G[:, 0]
    expected[rows, S + 2 * m] += -0.2 * G[:, 1]
    expected[rows, S + 2 * m + 1] += 0.1 * G[:, 2]
    torch.testing.assert_close(Z.detach(), expected, rtol=1e-13, atol=1e-13)
    assert bool((G.abs() < 1).all())


def test_gradients_reach_the_network_through_the_coarse_solve():
    p = _problem()
    torch.manual_seed(0)
    net = CoarseNet(hidden=4, layers=1).double()
    r = torch.randn(p.num_nodes, 2, dtype=F64)

    for symmetric in (False, True):
        def output(alpha):
            original = net.alpha
            try:
                del net.alpha
                net.alpha = alpha
                ras = RAS(p, coarse=net)
                return (ras.setup_symmetric(p.A) if symmetric else ras.setup(p.A))(r)
            finally:
                del net.alpha
                net.alpha = original
        alpha = torch.tensor([0.2, -0.1, 0.3], dtype=F64, requires_grad=True)
        assert gradcheck(output, (alpha,))
    model = PCG(M=RAS(coarse=net))
    with torch.no_grad():
        net.alpha.fill_(0.1)
    model.loss(p, p.random_rhs(4, seed=0, normalize=True)).backward()
    assert all(param.grad is not None and bool(param.grad.abs().sum() > 0)
               for name, param in net.named_parameters() if name != "omega")


def test_training_lowers_the_loss_on_fixed_vectors():
    problems = ProblemSet(partial(random_schwarz_problem, nodes=(300, 600), dtype=F64), 4,
                          seed=0)
    torch.manual_seed(0)
    net = CoarseNet(hidden=8, layers=1).double()
    trainer = Trainer(PCG(M=RAS(coarse=net)), lr=1e-2, epochs=6, seed=0, progress=False)
    trainer.fit(problems, validation=problems)
    assert trainer.history_.val_loss[-1] < trainer.history_.val_loss[0]
    assert bool(net.alpha.detach().abs().sum() > 0)


def test_bad_input_names_itself():
    p = _problem()
    net = CoarseNet(hidden=4, layers=1).double()
    with pytest.raises(ValueError, match=r"coordinates: the CoarseNet coarse space needs"):
        RAS(p.partition, coarse=net).setup(p.A)
    with pytest.raises(ValueError, match=r"coordinates: expected 3-D coordinates"):
        RAS(p, coarse=CoarseNet(hidden=4, layers=1, dimensions=3).double()).setup(p.A)
    with pytest.raises(ValueError, match=r"hidden: expected an integer >= 1"):
        CoarseNet(hidden=0)
