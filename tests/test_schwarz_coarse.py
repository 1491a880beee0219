"""Two-level Schwarz: RAS(coarse="nicolaides") against its dense formulas, its
gradients, and the point of it: iterations that stop growing with the subdomains.
And the losses that train a Schwarz preconditioner for the Krylov method that uses it."""
import dataclasses

import pytest
import torch
from torch.autograd import gradcheck

from cases import DEVICES
from learnsolve import Trainer
from learnsolve.problems import Partition, poisson_1d, poisson_2d, random_mesh_problem
from learnsolve.solvers import GMRES, PCG, RAS, RobinInterface, gmres_loss, pcg_loss
from learnsolve.solvers.coarse import Linear, Nicolaides
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
    torch.testing.assert_close(ras.coarse_basis(p.A).to_dense(), Z, rtol=0, atol=0)
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


@pytest.mark.parametrize("steps", [1, 2])
@pytest.mark.parametrize("device", DEVICES)
def test_smoothed_coarse_space_is_damped_jacobi_on_the_indicators(steps, device):
    p = poisson_2d(9, dtype=F64, device=device).with_partition(6, overlap=1)
    ras = RAS(p, coarse=Nicolaides(steps, omega=0.6))
    A = p.A.to_dense()
    Z = _coarse_space(ras.partition)
    for _ in range(steps):
        Z = Z - 0.6 * (A @ Z) / A.diagonal()[:, None]
    torch.testing.assert_close(ras.coarse_basis(p.A).to_dense(), Z, rtol=1e-14, atol=1e-14)
    torch.testing.assert_close(ras.coarse_matrix(p.A).to_dense(), Z.T @ A @ Z, rtol=1e-12,
                               atol=1e-12)
    Q = Z @ torch.linalg.solve(Z.T @ A @ Z, Z.T)
    I = torch.eye(p.num_nodes, dtype=F64, device=device)
    MAS = _dense_ras(RAS(p), p.A, symmetric=True)
    balanced = Q + (I - Q @ A) @ MAS @ (I - A @ Q)
    X = torch.randn(p.num_nodes, 2, dtype=F64, device=device)
    torch.testing.assert_close(ras.setup_symmetric(p.A)(X), balanced @ X, rtol=1e-10, atol=1e-12)


def test_gradcheck_of_a_learned_smoothing_weight():
    p = poisson_2d(5, dtype=F64).with_partition(3, overlap=1)
    r = torch.randn(p.num_nodes, 2, dtype=F64)
    coarse = Nicolaides(2, learnable=True).double()
    for symmetric in (False, True):
        def apply(omega, values):
            with torch.no_grad():
                coarse.omega.copy_(omega.detach())
            ras = RAS(p, coarse=_Weights(coarse, omega))
            A = p.A.with_values(values)
            return (ras.setup_symmetric(A) if symmetric else ras.setup(A))(r)
        omega = coarse.omega.detach().clone().requires_grad_()
        values = p.A.values.clone().requires_grad_()
        assert gradcheck(apply, (omega, values))


class _Weights(Nicolaides):
    """A smoothed coarse space whose weights are a given tensor (for gradcheck)."""

    def __init__(self, like, omega):
        torch.nn.Module.__init__(self)
        self.omega = omega


def test_smoothing_the_coarse_space_lowers_the_iterations_on_held_out_meshes():
    """One damped Jacobi step on the indicators: fewer PCG and GMRES iterations than
    the Nicolaides space on meshes of ~100 nodes per subdomain."""
    for seed in (7, 8):
        p = random_mesh_problem(seed, h=0.04, dtype=F64)
        p = p.with_partition(round(p.num_nodes / 100), overlap=1)
        b = p.random_rhs(seed=0)
        counts = {c: (PCG(M=RAS(p, coarse=c), rtol=1e-6)(p.A, b).iterations,
                      GMRES(M=RAS(p, coarse=c), rtol=1e-6)(p.A, b).iterations)
                  for c in ("nicolaides", "smoothed")}
        assert counts["smoothed"][0] < counts["nicolaides"][0], counts
        assert counts["smoothed"][1] < counts["nicolaides"][1], counts


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
    ras = RAS(coarse="smoothed")
    bound = ras.for_problem(p)
    assert isinstance(bound.coarse, Nicolaides) and bound.coarse is ras.coarse
    assert "(coarse): Nicolaides(omega=[0.6667])" in repr(bound)
    assert isinstance(RAS(coarse="linear").coarse, Linear)
    with pytest.raises(ValueError, match=r"coarse: expected None, a CoarseSpace or one of "
                                         r"\['linear', 'nicolaides', 'quadratic', 'smoothed', 'smoothed "
                                         r"linear'\], got 'geneo'"):
        RAS(p, coarse="geneo")
    with pytest.raises(ValueError, match=r"coarse: this RAS has no coarse level"):
        RAS(p).coarse_matrix(p.A)
    with pytest.raises(ValueError, match=r"coordinates: the Linear coarse space needs"):
        RAS(p.partition, coarse="linear").setup(p.A)
    with pytest.raises(ValueError, match=r"steps: expected an integer >= 0"):
        Nicolaides(steps=-1)
    with pytest.raises(ValueError, match=r"omega: expected a number in \(0, 2\)"):
        Nicolaides(1, omega=2.5)
    with pytest.raises(TypeError, match=r"learnable: expected a bool"):
        Linear(1, learnable=1)


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


# ---------------------------------------------------------------- losses for the Krylov use
def test_gmres_loss_is_the_weighted_residual_history():
    p = poisson_2d(10, dtype=F64).with_partition(4, overlap=1)
    B = p.random_rhs(3, seed=1, normalize=True)
    model = GMRES(M=RAS(coarse="nicolaides"))
    solution = GMRES(M=RAS(p, coarse="nicolaides"), restart=5, maxiter=5, rtol=0.0)(p.A, B)
    relative = solution.relative_residuals[1:]                      # (5, 3)
    weights = 0.5 ** torch.arange(4, -1, -1, dtype=F64)
    expected = (weights[:, None] * relative).sum(0).mean() / weights.sum()
    torch.testing.assert_close(gmres_loss(model, p, B, iterations=5, gamma=0.5), expected)
    torch.testing.assert_close(model.loss(p, B), gmres_loss(model, p, B))
    with pytest.raises(TypeError, match=r"model: expected a GMRES, got PCG"):
        gmres_loss(PCG(), p, B)
    with pytest.raises(ValueError, match=r"iterations: expected an integer >= 1, got 0"):
        gmres_loss(model, p, B, iterations=0)
    with pytest.raises(ValueError, match=r"gamma: expected a number in \(0, 1\], got 1.5"):
        gmres_loss(model, p, B, gamma=1.5)


def test_krylov_losses_bind_the_preconditioner_to_each_problem():
    """An unbound RAS (a learned interface trained over problems) takes each problem's
    partition in pcg_loss and gmres_loss, as in ras_loss."""
    problems = [poisson_2d(n, dtype=F64).with_partition(parts, overlap=1)
                for n, parts in ((8, 4), (10, 6))]
    for problem in problems:
        B = problem.random_rhs(2, seed=0, normalize=True)
        bound = RAS(problem, coarse="nicolaides")
        torch.testing.assert_close(pcg_loss(PCG(M=RAS(coarse="nicolaides")), problem, B),
                                   pcg_loss(PCG(M=bound), problem, B))
        torch.testing.assert_close(gmres_loss(GMRES(M=RAS(coarse="nicolaides")), problem, B),
                                   gmres_loss(GMRES(M=bound), problem, B))


def test_gradcheck_of_the_gmres_loss_in_the_interface():
    p = poisson_2d(5, dtype=F64).with_partition(3, overlap=1)
    B = p.random_rhs(2, seed=0, normalize=True)

    def loss(alpha):
        return gmres_loss(GMRES(M=RAS(interface=_Fixed(alpha), coarse="nicolaides")), p, B,
                          iterations=3)
    assert gradcheck(loss, (torch.tensor(0.3, dtype=F64, requires_grad=True),))


def test_a_robin_weight_trained_for_gmres_lowers_its_loss():
    """The Trainer fits a Robin weight on two-level RAS through gmres_loss (GMRES's
    default loss): the loss on fixed vectors falls (little: four GMRES steps are
    not sensitive to the weight on these meshes)."""
    train = [random_mesh_problem(seed, h=0.12, num_parts=8, dtype=F64) for seed in range(3)]
    interface = RobinInterface(0.0, learnable=True)
    model = GMRES(M=RAS(interface=interface, coarse="nicolaides"))
    trainer = Trainer(model, lr=0.05, epochs=10, rhs_per_problem=16, seed=0, progress=False)
    trainer.fit(train, validation=train)
    assert trainer.history_.val_loss[-1] < trainer.history_.val_loss[0]
    assert float(interface.alpha.detach()) != 0.0


def test_compare_schwarz_reports_a_divergent_stationary_iteration():
    """A Robin weight past Neumann (1.5) makes the stationary iteration diverge: the
    table marks it and a warning names the problem and the method."""
    from learnsolve.evaluation import compare_schwarz
    p = poisson_2d(12, dtype=F64).with_partition(4, overlap=1)
    methods = {"classical": RAS(), "too far": RAS(interface=RobinInterface(1.5))}
    with pytest.warns(RuntimeWarning, match=r"stationary iteration of 'too far' diverges on "
                                            r"'2D Poisson, 12 x 12' \(n = 144, 4 subdomains\)"):
        table = compare_schwarz(methods, p)
    factors = {row.method: row.factor for row in table}
    assert factors["classical"] < 1 <= factors["too far"]
    marked = [cells[4] for cells in table.cells()]
    assert marked[0].endswith(f"{factors['classical']:.3f}") and marked[1].endswith("(diverges)")


# ---------------------------------------------------------------- the linear coarse space
def test_linear_coarse_space_is_the_indicators_and_the_scaled_linear_functions():
    p = poisson_2d(9, dtype=F64).with_partition(5, overlap=1)
    Z = RAS(p, coarse="linear").coarse_basis(p.A).to_dense()
    membership, X = p.partition.membership, p.coordinates
    S = p.partition.num_parts
    assert Z.shape == (p.num_nodes, 3 * S)
    torch.testing.assert_close(Z[:, :S], _coarse_space(p.partition), rtol=0, atol=0)
    for i in range(S):
        core = membership == i
        deviation = X[core] - X[core].mean(0)
        expected = deviation / deviation.pow(2).mean(0).sqrt()
        columns = Z[:, S + 2 * i: S + 2 * i + 2]
        torch.testing.assert_close(columns[core], expected, rtol=1e-12, atol=1e-12)
        assert not bool(columns[~core].any())                       # supported on the core
    # A core whose coordinates do not vary (one node) adds no linear vector.
    q = poisson_1d(9, dtype=F64)
    single = Partition.from_membership(q.A, torch.tensor([0, 1, 1, 1, 1, 2, 2, 2, 2]), 1)
    Z1 = RAS(dataclasses.replace(q, partition=single), coarse="linear").coarse_basis(q.A)
    assert Z1.shape == (9, 3 + 2)
    assert torch.linalg.matrix_rank(Z1.to_dense()) == 5


def test_linear_coarse_space_halves_the_iterations_and_does_not_grow():
    """2D Poisson 60 x 60: the linear space takes at most 0.6 times the Nicolaides
    space's PCG and GMRES iterations, and falls from 36 to 196 subdomains."""
    pcg, gmres = [], []
    for parts in (36, 196):
        p = poisson_2d(60, dtype=F64).with_partition(parts, overlap=1)
        b = torch.ones(p.num_nodes, dtype=F64)
        counts = {c: (PCG(M=RAS(p, coarse=c), rtol=1e-6)(p.A, b).iterations,
                      GMRES(M=RAS(p, coarse=c), rtol=1e-6)(p.A, b).iterations)
                  for c in ("nicolaides", "linear")}
        assert counts["linear"][0] <= 0.6 * counts["nicolaides"][0], counts
        assert counts["linear"][1] <= 0.6 * counts["nicolaides"][1], counts
        pcg.append(counts["linear"][0])
        gmres.append(counts["linear"][1])
    assert pcg[1] <= pcg[0] and gmres[1] <= gmres[0]


def test_linear_basis_is_kept_per_coordinates():
    p = poisson_2d(8, dtype=F64).with_partition(4, overlap=1)
    ras = RAS(p, coarse="linear")
    first = ras.coarse_basis(p.A)
    assert ras.coarse_basis(p.A) is first                        # one basis, patterns cached
    with torch.no_grad():
        ras.coordinates.mul_(2.0)                                # changed in place: rebuilt
    again = ras.coarse_basis(p.A)
    assert again is not first
    torch.testing.assert_close(again.to_dense(), first.to_dense())   # scale-free
