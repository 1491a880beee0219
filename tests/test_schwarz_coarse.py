"""Two-level Schwarz: RAS(coarse="nicolaides") against its dense formulas, its
gradients, and the point of it: iterations that stop growing with the subdomains."""
import pytest
import torch
from torch.autograd import gradcheck

from cases import DEVICES
from learnsolve.problems import poisson_2d, random_mesh_problem
from learnsolve.solvers import GMRES, PCG, RAS, RobinInterface
from test_schwarz import _Fixed, _dense_ras

F64 = torch.float64


def _coarse_space(partition, dtype=F64) -> torch.Tensor:
    """Z: the indicator of each subdomain's core, one column per subdomain (dense)."""
    n, S = partition.num_nodes, partition.num_parts
    Z = torch.zeros(n, S, dtype=dtype, device=partition.device)
    Z[torch.arange(n, device=partition.device), partition.membership] = 1
    return Z


@pytest.mark.parametrize("interface", [None, "robin"])
@pytest.mark.parametrize("device", DEVICES)
def test_two_level_schwarz_is_its_formulas(interface, device):
    p = poisson_2d(10, dtype=F64, device=device).with_partition(5, overlap=1)
    ras = RAS(p, interface=RobinInterface(0.4) if interface else None, coarse="nicolaides")
    A = p.A.to_dense()
    Z = _coarse_space(ras.partition)
    A0 = Z.T @ A @ Z
    torch.testing.assert_close(ras.coarse_matrix(p.A).to_dense(), A0, rtol=1e-14, atol=1e-14)
    Q = Z @ torch.linalg.solve(A0, Z.T)
    I = torch.eye(p.num_nodes, dtype=F64, device=device)
    one_level = RAS(p, interface=ras.interface)
    M1, MAS = _dense_ras(one_level, p.A), _dense_ras(one_level, p.A, symmetric=True)
    X = torch.randn(p.num_nodes, 3, dtype=F64, device=device)
    restricted = Q + M1 @ (I - A @ Q)                                  # M = Q + M_1 (I - A Q)
    torch.testing.assert_close(ras.setup(p.A)(X), restricted @ X, rtol=1e-10, atol=1e-12)
    balanced = Q + (I - Q @ A) @ MAS @ (I - A @ Q)
    torch.testing.assert_close(ras.setup_symmetric(p.A)(X), balanced @ X, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(ras.setup_symmetric(p.A)(X[:, 0]), balanced @ X[:, 0],
                               rtol=1e-10, atol=1e-12)
    assert torch.linalg.eigvalsh((balanced + balanced.T) / 2).min() > 0    # SPD
    torch.testing.assert_close(balanced, balanced.T, rtol=0, atol=1e-12)
    # The stationary iteration's error propagator is (I - M_1 A)(I - Q A).
    T = ras.error_propagator(p.A)(X)
    torch.testing.assert_close(T, (I - M1 @ A) @ (I - Q @ A) @ X, rtol=1e-10, atol=1e-12)


def test_gradcheck_through_the_coarse_level():
    p = poisson_2d(5, dtype=F64).with_partition(3, overlap=1)
    r = torch.randn(p.num_nodes, 2, dtype=F64)

    def apply(values, alpha, symmetric):
        A = p.A.with_values(values)
        ras = RAS(p, interface=_Fixed(alpha), coarse="nicolaides")
        return (ras.setup_symmetric(A) if symmetric else ras.setup(A))(r)

    values = p.A.values.clone().requires_grad_()
    alpha = torch.tensor(0.4, dtype=F64, requires_grad=True)
    for symmetric in (False, True):
        assert gradcheck(lambda v, a: apply(v, a, symmetric), (values, alpha))


def test_two_level_iterations_stop_growing_with_the_subdomains():
    """2D Poisson 60 x 60, overlap 1, PCG and GMRES to 1e-6: from 36 to 196 subdomains
    one-level Schwarz grows by 1.3 to 1.5 times, two-level by at most 1.1 times (it
    falls, here), and two-level is the faster at every count."""
    counts = {}
    for parts in (36, 100, 196):
        p = poisson_2d(60, dtype=F64).with_partition(parts, overlap=1)
        b = torch.ones(p.num_nodes, dtype=F64)
        for coarse in (None, "nicolaides"):
            ras = RAS(p, coarse=coarse)
            counts[parts, coarse] = (PCG(M=ras, rtol=1e-6)(p.A, b).iterations,
                                     GMRES(M=ras, rtol=1e-6, restart=100)(p.A, b).iterations)
    for method in (0, 1):
        one = [counts[parts, None][method] for parts in (36, 100, 196)]
        two = [counts[parts, "nicolaides"][method] for parts in (36, 100, 196)]
        assert one[-1] >= 1.3 * one[0], (method, one)
        assert max(two) <= 1.1 * two[0], (method, two)
        assert all(t < o for t, o in zip(two, one)), (method, one, two)


def test_coarse_level_lowers_the_stationary_factor_on_a_mesh():
    p = random_mesh_problem(4, h=0.05, num_parts=40, dtype=F64)
    one = RAS(p).convergence_factor(p.A)
    two = RAS(p, coarse="nicolaides").convergence_factor(p.A)
    assert two < one < 1


def test_coarse_level_is_bound_and_named():
    p = poisson_2d(8, dtype=F64).with_partition(4, overlap=1)
    ras = RAS(coarse="nicolaides")
    assert ras.for_problem(p).coarse == "nicolaides"
    assert "coarse='nicolaides'" in repr(ras.for_problem(p))
    with pytest.raises(ValueError, match=r"coarse: expected None or one of \('nicolaides',\)"):
        RAS(p, coarse="geneo")
    with pytest.raises(ValueError, match=r"coarse_matrix: this RAS has no coarse level"):
        RAS(p).coarse_matrix(p.A)


def test_coarse_factors_are_cached_with_the_subdomain_factors(monkeypatch):
    import learnsolve.solvers.schwarz as schwarz
    p = poisson_2d(8, dtype=F64).with_partition(4, overlap=1)
    ras = RAS(p, coarse="nicolaides")
    made = []
    original = schwarz.SparseLU

    def counting(matrix, *args, **kwargs):
        made.append(matrix.shape)
        return original(matrix, *args, **kwargs)
    monkeypatch.setattr(schwarz, "SparseLU", counting)
    r = torch.ones(p.num_nodes, dtype=F64)
    with torch.no_grad():
        ras.setup(p.A)(r), ras.setup_symmetric(p.A)(r), ras.setup(p.A)(r)
    assert made == [ras.local_matrices(p.A).shape, (4, 4)]          # once each
