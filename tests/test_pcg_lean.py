"""PCG's lean path (no graph recorded): the iterates, residual history, stopping iteration,
status and message of the differentiable path, with its convergence checks read in blocks
(a bounded number of host synchronisations), and the choice between the two paths."""
import math

import pytest
import torch

import learnsolve as ls
from learnsolve.problems import batch_problems, diffusion_2d, disk, fem_problem, poisson_2d
from learnsolve.solvers import PCG, Jacobi
from learnsolve.solvers.cg import _Run

from cases import DEVICES, randn

F64 = torch.float64


def poisson(m, dtype=F64):
    return poisson_2d(m, dtype=dtype).A


def eigen_rhs(m, modes, dtype=F64):
    """A sum of eigenvectors of the m x m 2D Poisson matrix: CG ends in len(modes) steps."""
    t = torch.arange(1, m + 1, dtype=F64) * torch.pi / (m + 1)
    b = sum(torch.outer(torch.sin(p * t), torch.sin(q * t)).reshape(-1) for p, q in modes)
    return b.to(dtype)


def spd_like(A):
    """An SPD matrix on A's pattern (diagonally dominant), to serve as M."""
    return A.with_values(torch.where(A.row_indices() == A.col_indices, 0.25, 0.02).to(A.dtype))


@pytest.fixture
def paths(monkeypatch):
    """The path each solve of the test took, in order: "lean" or "unrolled"."""
    taken = []
    for name in ("lean", "unrolled"):
        original = getattr(_Run, name)

        def wrapped(self, *args, _original=original, _name=name):
            taken.append(_name)
            return _original(self, *args)
        monkeypatch.setattr(_Run, name, wrapped)
    return taken


@pytest.fixture
def reads(monkeypatch):
    """Counts the reads of a tensor's values on the host (each a synchronisation with
    the device): ``tolist``, ``item``, ``bool``, ``float``, ``int``."""
    count = [0]
    for name in ("tolist", "item", "__bool__", "__float__", "__int__"):
        original = getattr(torch.Tensor, name)

        def wrapped(self, *args, _original=original):
            count[0] += 1
            return _original(self, *args)
        monkeypatch.setattr(torch.Tensor, name, wrapped)
    return count


def both(solver, A, b, x0=None, **kwargs):
    """The solve by the lean path (nothing requires grad) and by the differentiable one
    (``b`` requires grad)."""
    return (solver(A, b, x0, **kwargs),
            solver(A, b.clone().requires_grad_(), x0, **kwargs))


def assert_same(lean, differentiable, dtype=F64):
    """The same solve, to rounding: the norms of the lean path come from r^T r, and its
    inner products from torch.dot."""
    assert (lean.status, lean.iterations, lean.message) == (
        differentiable.status, differentiable.iterations, differentiable.message)
    assert not lean.residuals.requires_grad and differentiable.residuals.requires_grad
    tol = 1e-10 if dtype == F64 else 1e-4
    scale = float(differentiable.residuals.detach().abs().max())
    torch.testing.assert_close(lean.residuals, differentiable.residuals.detach(), rtol=tol,
                               atol=tol * scale)
    scale = float(differentiable.x.detach().abs().max())
    torch.testing.assert_close(lean.x, differentiable.x.detach(), rtol=0, atol=tol * scale)


def test_the_path_follows_the_graph(paths):
    A = poisson(6)
    b = randn(36, seed=1)
    PCG()(A, b)                                              # nothing requires grad
    PCG()(A, b.clone().requires_grad_())
    with torch.no_grad():
        PCG()(A, b.clone().requires_grad_())
        PCG()(A.with_values(A.values.clone().requires_grad_()), b)
    PCG()(A.with_values(A.values.clone().requires_grad_()), b)
    PCG()(A, b, randn(36, seed=2, requires_grad=True))         # x0
    PCG(ls.diag(torch.full((36,), 0.25, dtype=F64)).requires_grad_())(A, b)   # M's values
    PCG(Jacobi(1.0))(A, b)                                   # a trainable preconditioner
    PCG(Jacobi(1.0, learnable=False).double())(A, b)
    PCG(differentiation="checkpoint")(A, b)
    assert paths == ["lean", "unrolled", "lean", "lean", "unrolled", "unrolled", "unrolled",
                     "unrolled", "lean", "lean"]


def test_implicit_solves_lean_forward_and_adjoint(paths):
    A = poisson(5)
    values = A.values.clone().requires_grad_()
    b = randn(25, seed=3, requires_grad=True)
    solution = PCG(rtol=1e-12, differentiation="implicit")(A.with_values(values), b)
    solution.x.sum().backward()
    x = torch.linalg.solve(A.to_dense(), b.detach())
    torch.testing.assert_close(solution.x, x, rtol=0, atol=1e-10)
    torch.testing.assert_close(b.grad, torch.linalg.solve(A.to_dense(), torch.ones(25, dtype=F64)),
                               rtol=0, atol=1e-10)
    assert paths == ["lean", "lean"]


def test_matrix_free_callable_with_a_graph_takes_the_differentiable_path(paths):
    A = poisson(6)
    b = randn(36, seed=4)
    weight = torch.tensor(2.0, dtype=F64, requires_grad=True)
    products = []

    def scaled(x):
        products.append(1)
        return weight * (A @ x)
    solution = PCG(rtol=1e-10)(scaled, b)
    solution.x.sum().backward()
    # x = A^{-1} b / w: dx/dw = -x / w
    torch.testing.assert_close(weight.grad, -solution.x.detach().sum() / 2.0)
    assert paths == ["unrolled"]
    assert len(products) == solution.iterations + 1          # the first product: the probe
    products.clear()
    plain = PCG(rtol=1e-10)(lambda x: A @ x, b)              # no graph: lean, no product lost
    assert paths == ["unrolled", "lean"] and plain.converged
    torch.testing.assert_close(plain.x, 2.0 * solution.x.detach(), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("problem", ["poisson", "fem"])
@pytest.mark.parametrize("precondition", [None, "jacobi", "spd"])
@pytest.mark.parametrize("rtol", [1e-3, 1e-6, 1e-11])
def test_same_solve_as_the_differentiable_path(problem, precondition, rtol, paths):
    A = poisson(12) if problem == "poisson" else fem_problem(disk(0.15), dtype=F64).A
    M = {None: None, "jacobi": ls.diag(1.0 / A.diagonal()), "spd": spd_like(A)}[precondition]
    lean, differentiable = both(PCG(M, rtol=rtol), A, randn(A.shape[0], seed=5))
    assert lean.converged and lean.iterations > 2
    assert_same(lean, differentiable)
    assert paths == ["lean", "unrolled"]


@pytest.mark.parametrize("device", DEVICES)
def test_on_each_device(device):
    A = poisson(12).to(device)
    M = ls.diag(1.0 / A.diagonal())
    B = torch.stack([eigen_rhs(12, [(1, 1), (3, 2)]), randn(144, seed=17)], dim=1).to(device)
    for rhs in (B[:, 1], B):
        lean, differentiable = both(PCG(M, rtol=1e-9), A, rhs)
        assert lean.converged and lean.x.device == lean.residuals.device == A.device
        assert_same(lean, differentiable)


def test_float32(dtype):
    A = poisson(10, dtype)
    lean, differentiable = both(PCG(ls.diag(1.0 / A.diagonal()), rtol=1e-4), A,
                                randn(100, seed=6, dtype=dtype))
    assert lean.converged and lean.x.dtype == lean.residuals.dtype == dtype
    assert_same(lean, differentiable, dtype)


def test_convergence_at_the_first_iteration_and_at_once():
    A = poisson(8)
    lean, differentiable = both(PCG(rtol=1e-10), A, eigen_rhs(8, [(2, 3)]))
    assert lean.iterations == 1 and lean.converged
    assert_same(lean, differentiable)
    zero = PCG()(A, torch.zeros(64, 2, dtype=F64))
    assert zero.iterations == 0 and zero.residuals.shape == (1, 2) and zero.converged


@pytest.fixture
def steps(monkeypatch) -> list:
    """One entry per lean iteration run (``_Run.step`` calls), replays included."""
    calls, original = [], _Run.step

    def counted(self, *args, **kwargs):
        calls.append(1)
        return original(self, *args, **kwargs)
    monkeypatch.setattr(_Run, "step", counted)
    return calls


def test_stopping_inside_a_block_returns_that_iterate(steps):
    """Three eigenvectors: CG ends at iteration 3, inside the block of iterations 3 and 4;
    the iterate is recomputed from the block's start, and equals the one of a check after
    every iteration (a callback makes the blocks one iteration long)."""
    A = poisson(10)
    b = eigen_rhs(10, [(1, 1), (2, 3), (4, 1)])
    lean = PCG(rtol=1e-10)(A, b)
    assert lean.iterations == 3 and len(steps) > 3            # ran past it, recomputed
    iterates = []
    every = PCG(rtol=1e-10, callback=iterates.append)(A, b)
    assert every.iterations == 3 and len(iterates) == 3
    assert lean.x.equal(every.x) and lean.residuals.equal(every.residuals)
    assert lean.x.equal(iterates[-1])
    assert_same(lean, PCG(rtol=1e-10)(A, b.clone().requires_grad_()))


@pytest.mark.parametrize("rtol", [1e-4, 1e-8, 0.0])
def test_blocks_of_checks_match_a_check_every_iteration(rtol):
    """Bitwise: the lean path with blocks of checks and with a check after every
    iteration (the callback) run the same operations."""
    A = poisson(16)
    b = randn(256, seed=7)
    blocked = PCG(rtol=rtol, maxiter=60)(A, b)
    every = PCG(rtol=rtol, maxiter=60, callback=lambda x: None)(A, b)
    assert (blocked.status, blocked.iterations) == (every.status, every.iterations)
    assert blocked.x.equal(every.x) and blocked.residuals.equal(every.residuals)


def test_maxiter():
    A = poisson(12)
    lean, differentiable = both(PCG(ls.diag(1.0 / A.diagonal()), maxiter=7), A, randn(144, seed=8))
    assert lean.status == "maxiter" and lean.iterations == 7 and lean.residuals.shape == (8,)
    assert "maxiter = 7" in lean.message
    assert_same(lean, differentiable)


def test_x0_and_inputs_untouched():
    A = poisson(10)
    b = randn(100, seed=9)
    x0 = randn(100, seed=10)
    lean, differentiable = both(PCG(spd_like(A), rtol=1e-9), A, b, x0)
    assert lean.converged
    assert_same(lean, differentiable)
    torch.testing.assert_close(lean.residuals[0], torch.linalg.vector_norm(b - A @ x0))
    assert b.equal(randn(100, seed=9)) and x0.equal(randn(100, seed=10))
    assert PCG(maxiter=0)(A, b, x0).x.equal(x0)


def test_callback_gets_every_iterate_once():
    A = poisson(10)
    b = randn(100, seed=11)
    got = {"lean": [], "differentiable": []}
    lean = PCG(rtol=1e-8, callback=got["lean"].append)(A, b)
    differentiable = PCG(rtol=1e-8, callback=got["differentiable"].append)(
        A, b.clone().requires_grad_())
    assert_same(lean, differentiable)
    assert len(got["lean"]) == len(got["differentiable"]) == lean.iterations
    for mine, theirs in zip(*got.values()):            # copies: not changed by later updates
        torch.testing.assert_close(mine, theirs, rtol=0, atol=1e-10)
    assert got["lean"][-1].equal(lean.x) and got["lean"][-1] is not lean.x
    first = PCG(maxiter=1)(A, b).x
    assert got["lean"][0].equal(first)


def test_columns_stopping_at_different_iterations():
    m = 10
    A = poisson(m)
    B = torch.stack([eigen_rhs(m, [(1, 1), (2, 3), (4, 1)]), randn(m * m, seed=12),
                     torch.zeros(m * m, dtype=F64), 1e-3 * randn(m * m, seed=13)], dim=1)
    lean, differentiable = both(PCG(spd_like(A), rtol=1e-9), A, B)
    assert lean.converged and lean.residuals.shape == (lean.iterations + 1, 4)
    assert_same(lean, differentiable)
    for j, b in enumerate(B.T):                        # frozen once converged, as alone
        alone = PCG(spd_like(A), rtol=1e-9)(A, b)
        history = lean.residuals[:, j]
        torch.testing.assert_close(history[:alone.iterations + 1], alone.residuals,
                                   rtol=1e-12, atol=1e-14)
        assert bool((history[alone.iterations:] == history[alone.iterations]).all())
        torch.testing.assert_close(lean.x[:, j], alone.x, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("columns", [None, 2])
def test_batched_problems(columns):
    problems = [diffusion_2d(m, m, "lognormal", seed=m, dtype=F64) for m in (4, 6, 5)]
    batch = batch_problems(problems)
    n = batch.A.shape[0]
    B = randn(*((n,) if columns is None else (n, columns)), seed=14)
    M = Jacobi(1.0, learnable=False).double()
    lean, differentiable = both(PCG(M, rtol=1e-8), batch.A, B, blocks=batch.info["offsets"])
    assert lean.converged and lean.residuals.shape[1] == 3 * (columns or 1)
    assert_same(lean, differentiable)
    offsets = batch.info["offsets"]
    for p, (start, stop) in enumerate(zip(offsets, offsets[1:])):
        alone = PCG(M, rtol=1e-8)(problems[p].A, B[start:stop])
        torch.testing.assert_close(lean.x[start:stop], alone.x, rtol=1e-10, atol=1e-12)


def test_breakdowns():
    # p^T A p <= 0 at a later iteration, inside a block: x is the iterate before it.
    A = ls.diag(torch.cat([torch.linspace(1.0, 20.0, 30, dtype=F64),
                           torch.tensor([-0.05], dtype=F64)]))
    lean, differentiable = both(PCG(check_spd=False), A, torch.ones(31, dtype=F64))
    assert lean.status == "breakdown" and lean.iterations > 3
    assert "p^T A p <= 0" in lean.message
    assert_same(lean, differentiable)
    # r^T M r <= 0: an indefinite M, in a column of a block.
    A = poisson(3)
    M = ls.diag(torch.tensor([1.0] * 8 + [-20.0], dtype=F64))
    B = torch.ones(9, 2, dtype=F64)
    B[:, 0] = torch.arange(9.0) < 8
    lean, differentiable = both(PCG(M), A, B)
    assert lean.status == "breakdown" and "r^T M r <= 0 in column 1" in lean.message
    assert_same(lean, differentiable)
    M = ls.diag(torch.tensor([1.0, -1.0], dtype=F64))            # after one iteration
    lean, differentiable = both(PCG(M), ls.diags([-1.0, 2.0, -1.0], [-1, 0, 1], shape=(2, 2),
                                                 dtype=F64), torch.tensor([1.0, 0.0], dtype=F64))
    assert lean.status == "breakdown" and lean.iterations == 1
    assert_same(lean, differentiable)


def test_divergence():
    A = poisson(3)
    values = A.values.clone()
    values[0] = float("inf")
    lean, differentiable = both(PCG(check_spd=False), A.with_values(values),
                                torch.ones(9, dtype=F64))
    assert lean.status == differentiable.status == "diverged"
    assert lean.iterations == differentiable.iterations
    assert lean.message == differentiable.message


def test_host_reads_are_bounded(reads):
    """The lean path reads the host once per block of iterations, the differentiable one
    about three times per iteration."""
    A = poisson(64)
    b = randn(4096, seed=15)
    PCG(rtol=1e-8)(A, b)                               # the SPD check, remembered
    reads[0] = 0
    lean = PCG(rtol=1e-8)(A, b)
    lean_reads = reads[0]
    reads[0] = 0
    differentiable = PCG(rtol=1e-8)(A, b.clone().requires_grad_())
    assert lean.iterations == differentiable.iterations > 150
    assert reads[0] >= 3 * lean.iterations
    # The blocks grow to 32 iterations: 1, 1, 2, 3, 4, 6, 9, 14, 21, 31, 32, ... then
    # shrink near the tolerance; at most about log2(m) + m / 32 + 2 log2(32) of them.
    bound = math.log2(lean.iterations) + lean.iterations / 32 + 10
    assert lean_reads <= bound < lean.iterations / 5
    reads[0] = 0
    every = PCG(rtol=1e-8, callback=lambda x: None)(A, b)    # a callback: each iteration
    assert lean.iterations <= reads[0] <= lean.iterations + 5 and every.x.equal(lean.x)


def test_few_iterations_wasted(steps):
    A = poisson(32)
    b = randn(1024, seed=16)
    solutions = [PCG(rtol=rtol)(A, b) for rtol in (1e-4, 1e-8, 1e-12)]
    iterations = sum(s.iterations for s in solutions)
    assert iterations <= len(steps) <= 1.1 * iterations
