"""The quadratic coarse space and EnrichmentNet, its learned correction: the linear
space kept as it is, three more columns a core independent of its linear functions,
and what that buys (fewer iterations, never more than the linear space's with PCG)."""
import dataclasses

import pytest
import torch
from torch.autograd import gradcheck

from learnsolve.nn import EnrichmentNet
from learnsolve.problems import Partition, poisson_2d
from learnsolve.solvers import GMRES, PCG, RAS, pcg_loss
from learnsolve.solvers.coarse import Quadratic

F64 = torch.float64


def _problem(side=12, parts=6):
    return poisson_2d(side, dtype=F64).with_partition(parts, overlap=1)


def _bases(p, coarse):
    Z = RAS(p, coarse=coarse).coarse_basis(p.A).to_dense()
    return Z, RAS(p, coarse="linear").coarse_basis(p.A).to_dense()


def test_quadratic_space_is_the_linear_one_and_projected_quadratics():
    p = _problem()
    Z, linear = _bases(p, "quadratic")
    S, m, X = p.partition.num_parts, p.partition.membership, p.coordinates
    width = linear.shape[1]
    assert Z.shape == (p.num_nodes, 6 * S)
    torch.testing.assert_close(Z[:, :width], linear, rtol=0, atol=0)   # kept as it is
    for i in range(S):
        core = m == i
        extra = Z[:, width + 3 * i: width + 3 * i + 3]
        assert not bool(extra[~core].any())                            # on the core only
        # The columns are the quadratic monomials of the core's coordinates, less their
        # least-squares fit by 1, x, y, at unit root mean square.
        x = X[core] - X[core].mean(0)
        u = x / x.pow(2).mean(0).sqrt()
        monomials = torch.stack([u[:, 0] ** 2, u[:, 0] * u[:, 1], u[:, 1] ** 2], 1)
        basis = torch.cat([torch.ones(len(u), 1, dtype=F64), u], 1)
        rest = monomials - basis @ torch.linalg.lstsq(basis, monomials).solution
        expected = rest / rest.pow(2).mean(0).sqrt()
        torch.testing.assert_close(extra[core], expected, rtol=1e-10, atol=1e-12)
    assert torch.linalg.matrix_rank(Z) == Z.shape[1]


def test_a_core_without_independent_quadratics_keeps_its_linear_columns():
    # Cores of 2 and 3 nodes: too few for 6 independent functions; one of 20 has them.
    p = poisson_2d(5, dtype=F64)
    membership = torch.zeros(25, dtype=torch.long)
    membership[:2], membership[2:5] = 1, 2
    partition = Partition.from_membership(p.A, membership, 1)
    q = dataclasses.replace(p, partition=partition)
    Z, linear = _bases(q, "quadratic")
    assert Z.shape == (25, linear.shape[1] + 3)
    assert torch.linalg.matrix_rank(Z) == Z.shape[1]
    b = torch.ones(25, dtype=F64)
    assert PCG(M=RAS(q, coarse="quadratic"), rtol=1e-8)(p.A, b).converged


def test_quadratic_space_lowers_the_iterations_and_does_not_grow():
    """2D Poisson 60 x 60: fewer PCG and GMRES iterations than the linear space at 36
    and 196 subdomains, and no more at 196 than at 36."""
    counts = []
    for parts in (36, 196):
        p = poisson_2d(60, dtype=F64).with_partition(parts, overlap=1)
        b = torch.ones(p.num_nodes, dtype=F64)
        its = {c: (PCG(M=RAS(p, coarse=c), rtol=1e-6)(p.A, b).iterations,
                   GMRES(M=RAS(p, coarse=c), rtol=1e-6)(p.A, b).iterations)
               for c in ("linear", "quadratic")}
        assert its["quadratic"][0] < its["linear"][0], its
        assert its["quadratic"][1] < its["linear"][1], its
        counts.append(its["quadratic"])
    assert counts[1][0] <= counts[0][0] and counts[1][1] <= counts[0][1], counts


def test_an_untrained_enrichment_net_is_the_quadratic_space():
    p = _problem()
    torch.manual_seed(0)
    Z, _ = _bases(p, EnrichmentNet(hidden=8, layers=2).double())
    quadratic, _ = _bases(p, "quadratic")
    assert torch.equal(Z, quadratic)


def test_the_learned_columns_are_added_projected_and_the_linear_ones_kept():
    p = _problem()
    torch.manual_seed(0)
    net = EnrichmentNet(hidden=8, layers=1).double()
    with torch.no_grad():
        net.alpha.copy_(torch.tensor([2.0, -1.0, 3.0], dtype=F64))
    Z, linear = _bases(p, net)
    quadratic, _ = _bases(p, "quadratic")
    width = linear.shape[1]
    torch.testing.assert_close(Z[:, :width], linear, rtol=0, atol=0)
    assert not torch.allclose(Z, quadratic)
    # Each learned column stays orthogonal on its core to the core's 1, x, y.
    torch.testing.assert_close(linear.T @ Z[:, width:], torch.zeros(width, Z.shape[1] - width,
                                                                      dtype=F64), rtol=0,
                               atol=1e-10)


def test_gradcheck_of_the_enriched_basis_in_its_values():
    p = _problem(7, 3)
    layout = Quadratic.enrichment(p.A, p.partition, p.coordinates)
    values = layout.monomials.clone().requires_grad_()
    assert gradcheck(lambda v: layout.basis(v).values, (values,))


def test_gradients_reach_the_network_through_pcg_loss():
    p = _problem()
    torch.manual_seed(0)
    net = EnrichmentNet(hidden=8, layers=1).double()
    model = PCG(M=RAS(coarse=net), maxiter=6)
    X = torch.randn(p.num_nodes, 4, dtype=F64)
    pcg_loss(model, p, X).backward()
    assert net.alpha.grad is not None and bool(net.alpha.grad.abs().sum() > 0)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_pcg_with_any_enrichment_converges_no_slower_than_the_linear_space(seed):
    """Balanced two-level Schwarz on the A-orthogonal complement of the coarse space: a
    space that contains the linear one has an effective condition number at most the
    linear space's, whatever the network outputs (here random weights, large alpha)."""
    p = poisson_2d(30, dtype=F64).with_partition(25, overlap=1)
    torch.manual_seed(seed)
    net = EnrichmentNet(hidden=8, layers=2).double()
    with torch.no_grad():
        net.alpha.fill_(20.0)
    b = torch.randn(p.num_nodes, dtype=F64, generator=torch.Generator().manual_seed(seed))
    learned = PCG(M=RAS(p, coarse=net), rtol=1e-8)(p.A, b).iterations
    linear = PCG(M=RAS(p, coarse="linear"), rtol=1e-8)(p.A, b).iterations
    assert learned <= linear, (learned, linear)


@pytest.mark.parametrize("coarse", [Quadratic(), EnrichmentNet(hidden=4, layers=1).double()])
def test_the_quadratic_spaces_need_coordinates(coarse):
    p = _problem()
    with pytest.raises(ValueError, match=r"coordinates: the (Quadratic|EnrichmentNet) coarse "
                                         r"space needs the problem's node coordinates"):
        coarse.basis(p.A, p.partition)
