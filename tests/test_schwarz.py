"""Restricted additive Schwarz (paper section 4.5): the preconditioner and its symmetric
variant against the dense formulas of eqs. 44 and 47, the stationary iteration and its
convergence factor against the spectral radius of the dense error propagator, gradients
through the subdomain solves, the interfaces (Robin, the graph network), and a training
whose learned interface beats classical RAS on held-out meshes."""
import functools

import pytest
import torch
from torch.autograd import gradcheck

import learnsolve.solvers.schwarz as schwarz
from cases import DEVICES
from learnsolve import Trainer
from learnsolve.evaluation import compare_schwarz
from learnsolve.nn import InterfaceNet
from learnsolve.problems import (Partition, ProblemSet, disk, fem_problem, l_shape, poisson_1d,
                                 poisson_2d, random_mesh_problem, square_with_holes)
from learnsolve.solvers import PCG, RAS, RobinInterface, best_robin, ras_loss

F64 = torch.float64


def _problem(n=10, parts=4, overlap=1, device="cpu"):
    return poisson_2d(n, dtype=F64, device=device).with_partition(parts, overlap)


def _mesh_problem(h=0.15, parts=6, seed=0):
    return random_mesh_problem(seed, h=h, num_parts=parts, dtype=F64)


def _dense_blocks(ras, A):
    """``A_i + L_i`` of every subdomain, densely, from the stacked block diagonal."""
    blocks = ras.local_matrices(A).to_dense().detach()
    sizes = [nodes.numel() for nodes in ras.partition.overlapped]
    out, start = [], 0
    for size in sizes:
        out.append(blocks[start:start + size, start:start + size])
        start += size
    return out


def _dense_ras(ras, A, symmetric=False):
    """Eq. 47 (or additive Schwarz) with dense matrices: sum_i R~_i^T (A~_i)^{-1} R_i."""
    P = ras.partition
    M = torch.zeros(A.shape, dtype=A.dtype, device=A.device)
    for i, block in enumerate(_dense_blocks(ras, A)):
        R = P.restriction(i, dtype=A.dtype).to_dense()
        Rt = R if symmetric else P.restricted_restriction(i, dtype=A.dtype).to_dense()
        M += Rt.T @ torch.linalg.solve(block, R)
    return M


# ---------------------------------------------------------------------------- the formulas
@pytest.mark.parametrize("overlap", [0, 1, 2])
@pytest.mark.parametrize("interface", [None, "robin"])
@pytest.mark.parametrize("device", DEVICES)
def test_ras_is_eq_47(overlap, interface, device):
    p = _problem(overlap=overlap, device=device)
    ras = RAS(p, interface=RobinInterface(0.6) if interface else None)
    X = torch.randn(p.num_nodes, 3, dtype=F64, device=device)
    M = _dense_ras(ras, p.A)
    torch.testing.assert_close(ras.setup(p.A)(X), M @ X, rtol=1e-11, atol=1e-12)
    torch.testing.assert_close(ras.setup(p.A)(X[:, 0]), M @ X[:, 0], rtol=1e-11, atol=1e-12)
    S = _dense_ras(ras, p.A, symmetric=True)
    torch.testing.assert_close(ras.setup_symmetric(p.A)(X), S @ X, rtol=1e-11, atol=1e-12)
    torch.testing.assert_close(S, S.T, rtol=0, atol=1e-12)
    if overlap > 0:  # restricted: not symmetric
        assert (M - M.T).abs().max() > 1e-3


def test_without_overlap_restricted_and_additive_schwarz_agree():
    """With delta = 0 the cores are the subdomains: both are block Jacobi."""
    p = _problem(overlap=0)
    ras = RAS(p)
    r = torch.randn(p.num_nodes, dtype=F64)
    torch.testing.assert_close(ras.setup(p.A)(r), ras.setup_symmetric(p.A)(r), rtol=1e-13,
                               atol=0)


def test_local_matrices_are_the_blocks_of_the_partition():
    p = _mesh_problem()
    ras = RAS(p)
    dense = p.A.to_dense()
    for i, block in enumerate(_dense_blocks(ras, p.A)):
        nodes = p.partition.overlapped[i]
        torch.testing.assert_close(block, dense[nodes][:, nodes], rtol=0, atol=0)


def test_error_propagator_and_stationary_iteration():
    p = _problem(12, overlap=2)
    ras = RAS(p, maxiter=200, rtol=1e-8)
    M = _dense_ras(ras, p.A)
    T = torch.eye(p.num_nodes, dtype=F64) - M @ p.A.to_dense()
    e = torch.randn(p.num_nodes, dtype=F64)
    torch.testing.assert_close(ras.error_propagator(p.A)(e), T @ e, rtol=1e-11, atol=1e-12)
    b = torch.randn(p.num_nodes, dtype=F64)
    solution = ras(p.A, b)
    assert solution.converged and 0 < solution.iterations < 200
    exact = torch.linalg.solve(p.A.to_dense(), b)
    torch.testing.assert_close(solution.x, exact, rtol=1e-6, atol=1e-7)
    # the residuals fall at the rate of the spectral radius of T
    rho = float(torch.linalg.eigvals(T).abs().max())
    assert ras.convergence_factor(p.A) == pytest.approx(rho, rel=2e-2)
    rates = solution.residuals[1:] / solution.residuals[:-1]
    assert float(rates[-5:].mean()) == pytest.approx(rho, rel=0.1)


def test_convergence_factor_of_a_mesh_problem_matches_the_spectral_radius():
    p = _mesh_problem(parts=5)
    for interface in (None, RobinInterface(0.7)):
        ras = RAS(p, interface=interface)
        T = torch.eye(p.num_nodes, dtype=F64) - _dense_ras(ras, p.A) @ p.A.to_dense()
        rho = float(torch.linalg.eigvals(T).abs().max())
        assert ras.convergence_factor(p.A, iterations=400) == pytest.approx(rho, rel=2e-2)


def test_pcg_uses_the_symmetric_variant_and_gmres_the_restricted_one():
    from learnsolve.solvers.gmres import GMRES
    p = _mesh_problem(h=0.1, parts=8)
    b = p.random_rhs(seed=0)
    ras = RAS(p)
    plain = PCG(rtol=1e-8)(p.A, b)
    with_ras = PCG(M=ras, rtol=1e-8)(p.A, b)
    assert with_ras.converged and with_ras.iterations < plain.iterations / 2
    additive = _dense_ras(ras, p.A, symmetric=True)
    by_matrix = PCG(M=lambda r: additive @ r, rtol=1e-8)(p.A, b)
    assert with_ras.iterations == by_matrix.iterations
    gmres = GMRES(M=ras, rtol=1e-8)(p.A, b)
    assert gmres.converged and gmres.iterations < plain.iterations / 2
    exact = torch.linalg.solve(p.A.to_dense(), b)
    for x in (gmres.x, with_ras.x):  # a residual of 1e-8 ||b||: an error of cond(A) times that
        assert float(torch.linalg.vector_norm(x - exact) / torch.linalg.vector_norm(exact)) < 1e-5


# ---------------------------------------------------------------------------- gradients
def test_gradcheck_through_the_subdomain_solves():
    p = poisson_2d(5, dtype=F64).with_partition(3, overlap=1)
    r = torch.randn(p.num_nodes, 2, dtype=F64)

    def apply(values, alpha, symmetric):
        A = p.A.with_values(values)
        ras = RAS(p, interface=_Fixed(alpha))
        return (ras.setup_symmetric(A) if symmetric else ras.setup(A))(r)

    values = p.A.values.clone().requires_grad_()
    alpha = torch.tensor(0.4, dtype=F64, requires_grad=True)
    for symmetric in (False, True):
        assert gradcheck(lambda v, a: apply(v, a, symmetric), (values, alpha))


class _Fixed(torch.nn.Module):
    """A Robin interface whose alpha is a given tensor (for gradcheck)."""

    def __init__(self, alpha):
        super().__init__()
        self.alpha = alpha

    def forward(self, sub):
        return RobinInterface.forward(self, sub)


def test_gradient_of_the_loss_reaches_the_network_and_matches_finite_differences():
    torch.manual_seed(0)
    p = _mesh_problem(parts=4)
    net = InterfaceNet(hidden=8, layers=2).double()
    for parameter in net.parameters():  # away from the initial zero output layer
        torch.nn.init.normal_(parameter, std=0.3)
    model = RAS(interface=net)
    X = p.random_rhs(4, seed=0, distribution="uniform", normalize=True)
    loss = ras_loss(model, p, X)
    loss.backward()
    grads = [q.grad for q in net.parameters()]
    assert all(g is not None and bool(torch.isfinite(g).all()) for g in grads)
    assert all(float(g.abs().max()) > 0 for g in grads)
    weight = net.decode[0].weight
    eps = 1e-6
    with torch.no_grad():
        weight[0, 0] += eps
        up = ras_loss(model, p, X)
        weight[0, 0] -= 2 * eps
        down = ras_loss(model, p, X)
        weight[0, 0] += eps
    assert float(weight.grad[0, 0]) == pytest.approx(float(up - down) / (2 * eps), rel=1e-5)


def test_ras_loss_is_the_max_of_the_error_norms():
    p = _problem(8)
    X = p.random_rhs(5, seed=2, distribution="uniform", normalize=True)
    ras = RAS(p)
    T = torch.eye(p.num_nodes, dtype=F64) - _dense_ras(ras, p.A) @ p.A.to_dense()
    expected = torch.linalg.vector_norm(torch.linalg.matrix_power(T, 3) @ X, dim=0).max()
    torch.testing.assert_close(ras_loss(RAS(), p, X, iterations=3), expected, rtol=1e-11,
                               atol=0)


# ---------------------------------------------------------------------------- interfaces
def test_robin_interface_modifies_only_the_boundary_diagonal():
    p = _mesh_problem()
    classical, robin = RAS(p), RAS(p, interface=RobinInterface(0.5))
    A0, A1 = classical.local_matrices(p.A), robin.local_matrices(p.A)
    sub = robin.subdomains(p.A)
    changed = (A1.values - A0.values) != 0
    diagonal = sub.rows == sub.local.stacked.col
    assert bool(changed.any()) and not bool((changed & ~(diagonal & sub.boundary_entries)).any())
    # -alpha times the coupling to the nodes outside the subdomain, checked densely
    dense = p.A.to_dense().abs()
    stacked = []
    for i, nodes in enumerate(p.partition.overlapped):
        outside = torch.ones(p.num_nodes, dtype=torch.bool)
        outside[nodes] = False
        coupling = dense[nodes][:, outside].sum(dim=1) * p.partition.boundary[i]
        stacked.append(coupling)
    expected = -0.5 * torch.cat(stacked)
    torch.testing.assert_close(A1.diagonal() - A0.diagonal(), expected, rtol=1e-12, atol=1e-14)
    assert RAS(p, interface=RobinInterface(0.0)).convergence_factor(p.A) == \
        classical.convergence_factor(p.A)


def test_the_best_robin_parameter_beats_dirichlet():
    problems = [_mesh_problem(parts=6, seed=s) for s in range(2)]
    alpha, factors = best_robin(problems, [0.0, 0.3, 0.6, 0.8])
    assert factors.shape == (4,) and alpha > 0 and factors.min() < factors[0] - 0.02


def test_interface_net_output_is_symmetric_and_on_the_boundary():
    torch.manual_seed(1)
    p = _mesh_problem()
    net = InterfaceNet(hidden=8, layers=2).double()
    for parameter in net.parameters():
        torch.nn.init.normal_(parameter, std=1.0)
    ras = RAS(p, interface=net)
    sub = ras.subdomains(p.A)
    L = net(sub)
    assert L.shape == (sub.local.stacked.nnz,)
    assert not bool((L[~sub.boundary_entries] != 0).any())
    for block in _dense_blocks(ras, p.A):
        torch.testing.assert_close(block, block.T, rtol=0, atol=1e-13)
        assert float(torch.linalg.eigvalsh(block).min()) > 0  # SPD whatever the weights


def test_robin_weights_are_the_boundary_row_sums_of_the_interface():
    """On a boundary row k of subdomain i the tangential term sums to zero, so the
    row of L_i sums to -beta_k s_k^(i) (s: the coupling the subdomain cuts)."""
    torch.manual_seed(2)
    p = _mesh_problem()
    net = InterfaceNet(hidden=8, layers=2).double()
    for parameter in net.parameters():
        torch.nn.init.normal_(parameter, std=1.0)
    sub = RAS(p, interface=net).subdomains(p.A)
    with torch.no_grad():
        L, beta, outside = net(sub), net.robin_weights(sub), sub.outside_coupling()
    row_sums = torch.zeros(sub.nodes.numel(), dtype=F64).index_add(0, sub.rows, L)
    boundary = sub.boundary & (outside > 0)
    assert int(boundary.sum()) > 10 and float(beta.std()) > 0.01  # weights vary by node
    torch.testing.assert_close(row_sums[boundary], -(beta[sub.nodes] * outside)[boundary],
                               rtol=1e-12, atol=1e-14)
    assert bool(((beta > 0) & (beta < 1)).all())


def test_interface_net_without_coordinates():
    p = poisson_1d(20, dtype=F64)
    p = Partition.from_membership(p.A, [0] * 10 + [1] * 10, overlap=1)
    A = poisson_1d(20, dtype=F64).A
    with pytest.raises(ValueError, match="coordinates"):
        RAS(p, interface=InterfaceNet(hidden=4).double()).setup(A)
    ras = RAS(p, interface=InterfaceNet(hidden=4, coordinates=False).double())
    assert torch.isfinite(ras.setup(A)(torch.ones(20, dtype=F64))).all()


# ---------------------------------------------------------------------------- set-up
def test_factored_once_per_matrix(monkeypatch):
    calls = []
    original = schwarz.SparseLU

    def counting(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)
    monkeypatch.setattr(schwarz, "SparseLU", counting)
    p = _problem()
    ras = RAS(p)
    apply = ras.setup(p.A)
    for _ in range(5):
        apply(torch.ones(p.num_nodes, dtype=F64))
    ras.setup(p.A)
    ras.setup_symmetric(p.A)
    PCG(M=ras)(p.A, torch.ones(p.num_nodes, dtype=F64))
    assert len(calls) == 1
    p.A.values.mul_(2)  # in place: refactored
    ras.setup(p.A)
    assert len(calls) == 2
    values = p.A.values.detach().clone().requires_grad_()
    ras.setup(p.A.with_values(values))(torch.ones(p.num_nodes, dtype=F64)).sum().backward()
    assert len(calls) == 3 and values.grad is not None


def test_an_in_place_change_of_the_interface_refactors():
    p = _problem()
    robin = RobinInterface(0.3)
    ras = RAS(p, interface=robin)
    r = torch.ones(p.num_nodes, dtype=F64)
    before = ras.setup(p.A)(r)
    robin.alpha.fill_(0.6)  # a buffer, changed in place
    torch.testing.assert_close(ras.setup(p.A)(r),
                               RAS(p, interface=RobinInterface(0.6)).setup(p.A)(r),
                               rtol=0, atol=0)
    assert not torch.equal(before, ras.setup(p.A)(r))


def test_binding_to_problems_and_partitions():
    p = _problem()
    assert RAS(p).partition is p.partition
    assert RAS(p.partition).partition is p.partition
    assert RAS(p, overlap=2).partition.overlap == 2
    bare = poisson_2d(8, dtype=F64)
    assert RAS(bare, num_parts=4).partition.num_parts == 4
    with pytest.raises(ValueError, match="num_parts"):
        RAS(bare)
    with pytest.raises(ValueError, match="overlap"):
        RAS(p.partition, overlap=3)
    with pytest.raises(TypeError, match="problem_or_partition"):
        RAS(p.A)
    with pytest.raises(ValueError, match="no partition"):
        RAS().setup(p.A)
    with pytest.raises(ValueError, match="shape"):
        RAS(p).setup(poisson_2d(9, dtype=F64).A)
    with pytest.raises(TypeError, match="interface"):
        RAS(p, interface=3)
    with pytest.raises(TypeError, match="problem"):
        ras_loss(RAS(), p.A, torch.ones(p.num_nodes, 1, dtype=F64))
    net = InterfaceNet(hidden=4).double()
    unbound = RAS(interface=net, overlap=1)
    bound = unbound.for_problem(_mesh_problem())
    assert bound.interface is net and bound.partition.overlap == 1


def test_bad_arguments_name_themselves():
    p = _problem(6, parts=2)
    sub = RAS(p).subdomains(p.A)
    cases = [
        (lambda: RobinInterface(float("nan")), ValueError, "alpha"),
        (lambda: RobinInterface(True), ValueError, "alpha"),
        (lambda: InterfaceNet(hidden=0), ValueError, "hidden"),
        (lambda: InterfaceNet(layers=-1), ValueError, "layers"),
        (lambda: InterfaceNet(coordinates=1), TypeError, "coordinates"),
        (lambda: RAS(p, overlap=-1), ValueError, "overlap"),
        (lambda: RAS(p).convergence_factor(p.A, iterations=0), ValueError, "iterations"),
        (lambda: ras_loss(RAS(), p, torch.ones(36, 1, dtype=F64), iterations=0), ValueError,
         "iterations"),
        (lambda: best_robin([p], []), ValueError, "alphas"),
        (lambda: best_robin([], [0.5]), ValueError, "problems"),
        (lambda: sub.on_boundary(torch.ones(3, dtype=F64)), ValueError, "values"),
        (lambda: compare_schwarz({}, p), TypeError, "methods"),
        (lambda: InterfaceNet(hidden=4).double().output(
            p.A, p.coordinates, torch.ones(5, dtype=F64), torch.ones(36, dtype=F64)),
         ValueError, "d: expected shape"),
        (lambda: InterfaceNet(hidden=4).double().output(
            p.A, torch.ones(36, 3, dtype=F64), torch.ones(36, dtype=F64),
            torch.ones(36, dtype=F64)), ValueError, "2-D coordinates"),
        (lambda: InterfaceNet(hidden=4).double().output(
            -p.A, p.coordinates, torch.ones(36, dtype=F64), torch.ones(36, dtype=F64)),
         ValueError, "positive diagonal"),
    ]
    for make, error, match in cases:
        with pytest.raises(error, match=match):
            make()


def test_singular_subdomain_matrix_is_reported():
    p = _problem(6, parts=2)
    A = p.A.with_values(torch.zeros_like(p.A.values))
    with pytest.raises(torch.linalg.LinAlgError, match="subdomain"):
        RAS(p).setup(A)


# ---------------------------------------------------------------------------- training
@pytest.fixture(scope="module")
def trained():
    """A graph-network interface trained with the Trainer on small random polygons."""
    torch.manual_seed(0)
    problems = ProblemSet(functools.partial(random_mesh_problem, h=0.12, num_parts=6,
                                            dtype=F64), 6, seed=0)
    model = RAS(interface=InterfaceNet(hidden=16, layers=2).double())
    trainer = Trainer(model, lr=1e-3, epochs=40, rhs_per_problem=8, seed=0, progress=False,
                      distribution="uniform").fit(problems)
    return model, trainer, problems


def test_training_lowers_the_loss(trained):
    _, trainer, _ = trained
    loss = trainer.history_.loss
    assert loss[-5:].mean() < 0.8 * loss[:5].mean()


def test_learned_interface_beats_classical_ras_on_held_out_meshes(trained):
    """Larger meshes of other shapes, with subdomains of the training ones' size (so more
    of them, floating ones among them). The training's target, the convergence factor of
    the stationary iteration, must be better on every one; the Krylov iterations are
    reported (bench/dd.py), not required: the loss does not aim at them."""
    model, _, problems = trained
    meshes = [l_shape(0.07), square_with_holes(0.05), disk(0.07)]
    size = sum(p.num_nodes for p in problems) / (6 * len(problems))
    held_out = [fem_problem(mesh, dtype=F64, seed=1) for mesh in meshes]
    held_out = [p.with_partition(round(p.num_nodes / size), 1) for p in held_out]
    assert min(p.num_nodes for p in held_out) > max(p.num_nodes for p in problems)
    table = compare_schwarz({"classical": RAS(), "learned": model}, held_out)
    for classical, learned in zip(table.rows[0::2], table.rows[1::2]):
        assert learned.factor < classical.factor - 0.01, str(table)
        assert learned.gmres is not None and learned.pcg is not None, str(table)
    assert table.mean("learned") < table.mean("classical") - 0.05, str(table)
    assert "GMRES iterations" in str(table) and table.to_markdown().startswith("| problem")


def test_trainer_evaluate_binds_the_model_to_each_problem(trained):
    model, trainer, problems = trained
    table = trainer.evaluate(list(problems)[:2], baselines=("none",))
    rows = [row for row in table if row.method == "trained"]
    assert len(rows) == 2 and all(row.converged for row in rows)
    assert [row.n for row in rows] == [p.num_nodes for p in list(problems)[:2]]
    with pytest.raises(ValueError, match="no partition"):  # unbound, used directly
        PCG(M=model)(problems[0].A, problems[0].random_rhs(seed=0))


def test_compare_schwarz_counts_iterations():
    from learnsolve.solvers.gmres import GMRES
    p = _mesh_problem(parts=6)
    table = compare_schwarz({"classical": RAS(), "robin": RAS(interface=RobinInterface(0.7))},
                            [p], rtol=1e-6)
    assert [row.method for row in table] == ["classical", "robin"]
    for row in table:
        b = p.random_rhs(seed=0)
        ras = RAS(p, interface=None if row.method == "classical" else RobinInterface(0.7))
        assert row.pcg == PCG(M=ras, rtol=1e-6)(p.A, b).iterations
        assert row.gmres == GMRES(M=ras, rtol=1e-6)(p.A, b).iterations
        assert row.factor == ras.convergence_factor(p.A) and row.subdomains == 6
    assert table.mean("robin") < table.mean("classical")
    with pytest.raises(ValueError, match="method"):
        table.mean("learned")
