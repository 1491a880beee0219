"""Preconditioned conjugate gradients: against scipy's CG, a hand-written dense CG and dense
solves; its three modes of differentiation; breakdowns and bad input."""
import math

import numpy as np
import pytest
import scipy.sparse.linalg as sla
import torch

import learnsolve as ls
from learnsolve.problems import disk, fem_problem, poisson_1d, poisson_2d
from learnsolve.solvers.base import Preconditioner
from learnsolve.solvers import cg as cg_module
from learnsolve.solvers.cg import PCG, check_spd, pcg_loss

from cases import DEVICES, randn

F64 = torch.float64


def poisson(m, device="cpu", dtype=F64):
    return poisson_2d(m, dtype=dtype).A.to(device)


def jacobi(A):
    """The Jacobi preconditioner diag(1 / a_ii) as a CSRMatrix."""
    return ls.diag(1.0 / A.diagonal())


def spd_like(A, diagonal=0.25, off=0.02):
    """An SPD matrix (diagonally dominant) on A's pattern, to serve as M; for the 2D
    Poisson matrix it is a polynomial in A, with A's eigenvectors."""
    rows = A.row_indices()
    values = torch.where(rows == A.col_indices, diagonal, off).to(A.dtype)
    return A.with_values(values)


def eigen_rhs(m, modes, device="cpu"):
    """A sum of eigenvectors of the m x m 2D Poisson matrix: CG ends in len(modes) steps."""
    t = torch.arange(1, m + 1, dtype=F64) * torch.pi / (m + 1)
    b = sum(torch.outer(torch.sin(p * t), torch.sin(q * t)).reshape(-1) for p, q in modes)
    return b.to(device)


def dense_pcg(A, M, b, iterations):
    """Textbook PCG on dense tensors: the relative residual norms ||r_i|| / ||b||, i >= 1."""
    x = torch.zeros_like(b)
    r = b.clone()
    z = M @ r
    p = z
    rz = r @ z
    out = []
    for _ in range(iterations):
        Ap = A @ p
        alpha = rz / (p @ Ap)
        x = x + alpha * p
        r = r - alpha * Ap
        out.append(torch.linalg.vector_norm(r) / torch.linalg.vector_norm(b))
        z = M @ r
        rz_new = r @ z
        p = z + rz_new / rz * p
        rz = rz_new
    return torch.stack(out)


# ---------------------------------------------------------------------------- forward


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("problem", ["poisson", "fem"])
@pytest.mark.parametrize("precondition", [False, True])
def test_iterates_match_scipy(device, problem, precondition):
    A = poisson(12) if problem == "poisson" else fem_problem(disk(0.15), dtype=F64).A
    b = randn(A.shape[0], seed=1)
    M = jacobi(A) if precondition else None
    expected = []
    x_ref, info = sla.cg(A.to_scipy(), b.numpy(), rtol=1e-6,
                         M=None if M is None else M.to_scipy(),
                         callback=lambda xk: expected.append(xk.copy()))
    assert info == 0
    got = []
    solution = PCG(None if M is None else M.to(device), rtol=1e-6,
                   callback=lambda x: got.append(x.cpu()))(A.to(device), b.to(device))
    assert solution.status == "converged"
    assert solution.iterations == len(expected) == len(got)
    scale = float(np.linalg.norm(x_ref))
    for mine, ref in zip(got, expected):
        np.testing.assert_allclose(mine.numpy(), ref, rtol=0, atol=1e-9 * scale)
    # The recurrence residual is the true residual, to rounding.
    true = torch.linalg.vector_norm(b.to(device) - A.to(device) @ solution.x)
    assert float(solution.residuals[-1]) <= 1e-6 * float(torch.linalg.vector_norm(b))
    torch.testing.assert_close(solution.residuals[-1], true, rtol=1e-6, atol=1e-12)
    assert solution.residuals.shape == (solution.iterations + 1,)


def test_x0_matches_scipy():
    A = poisson(10)
    b = randn(100, seed=2)
    x0 = randn(100, seed=3)
    expected = []
    x_ref, _ = sla.cg(A.to_scipy(), b.numpy(), x0=x0.numpy(), rtol=1e-8,
                      callback=lambda xk: expected.append(xk.copy()))
    solution = PCG(rtol=1e-8)(A, b, x0)
    assert solution.iterations == len(expected)
    np.testing.assert_allclose(solution.x.numpy(), x_ref, rtol=0, atol=1e-10)
    torch.testing.assert_close(solution.residuals[0], torch.linalg.vector_norm(b - A @ x0))
    assert x0.equal(randn(100, seed=3))  # not modified


@pytest.mark.parametrize("device", DEVICES)
def test_block_equals_separate_solves(device):
    m = 10
    A = poisson(m, device)
    M = spd_like(A)
    columns = [eigen_rhs(m, [(1, 1), (2, 3), (4, 1)], device),  # 3 eigenvalues: 3 iterations
               randn(m * m, seed=4, device=device),
               torch.zeros(m * m, dtype=F64, device=device),       # converged at once
               1e-3 * randn(m * m, seed=5, device=device)]
    B = torch.stack(columns, dim=1)
    pcg = PCG(M, rtol=1e-9)
    block = pcg(A, B)
    singles = [pcg(A, b) for b in columns]
    assert block.status == "converged"
    assert singles[0].iterations == 3 and singles[2].iterations == 0 and singles[1].iterations > 20
    assert block.iterations == max(s.iterations for s in singles)
    assert block.residuals.shape == (block.iterations + 1, 4)
    for j, single in enumerate(singles):
        torch.testing.assert_close(block.x[:, j], single.x, rtol=1e-12, atol=1e-14)
        history = block.residuals[:, j]
        torch.testing.assert_close(history[:single.iterations + 1], single.residuals,
                                   rtol=1e-12, atol=1e-14)
        # Frozen once converged: its residual stays.
        assert bool((history[single.iterations:] == history[single.iterations]).all())
    assert bool((block.x[:, 2] == 0).all())


def test_float32_agrees_with_float64(dtype):
    A = poisson(8, dtype=dtype)
    b = randn(64, seed=6).to(dtype)
    solution = PCG(jacobi(A), rtol=1e-4)(A, b)
    reference = PCG(jacobi(A.double()), rtol=1e-12)(A.double(), b.double())
    assert solution.converged and solution.x.dtype == dtype
    torch.testing.assert_close(solution.x.double(), reference.x, rtol=0,
                               atol=1e-3 * float(reference.x.abs().max()))


def test_default_maxiter_is_10n():
    # Identity plus a skew part: p^T A p = |p|^2 > 0, so CG neither converges nor breaks down.
    A = ls.CSRMatrix.from_dense(torch.tensor([[1.0, 2.0, 0.0], [-2.0, 1.0, 1.0],
                                              [0.0, -1.0, 1.0]], dtype=F64))
    count = []
    pcg = PCG(check_spd=False, callback=count.append)
    solution = pcg(A, torch.tensor([1.0, 0.5, 0.25], dtype=F64))
    assert pcg.maxiter is None
    assert solution.status == "maxiter" and solution.iterations == 30 == len(count)
    assert not solution.converged and "maxiter = 30" in solution.message


@pytest.mark.parametrize("device", DEVICES)
def test_maxiter_zero_and_zero_rhs(device):
    A = poisson(4, device)
    b = randn(16, seed=7, device=device)
    x0 = randn(16, seed=8, device=device)
    for mode in ("unrolled", "checkpoint", "implicit"):
        solution = PCG(maxiter=0, differentiation=mode)(A, b.requires_grad_(), x0)
        assert solution.status == "maxiter" and solution.iterations == 0
        assert solution.residuals.shape == (1,)
        torch.testing.assert_close(solution.x, x0)
    b = b.detach()
    assert PCG(maxiter=0)(A, b).x.equal(torch.zeros_like(b))

    for zero in (torch.zeros(16, dtype=F64, device=device),
                 torch.zeros(16, 3, dtype=F64, device=device)):
        for mode in ("unrolled", "checkpoint", "implicit"):
            solution = PCG(jacobi(A), differentiation=mode)(A, zero)
            assert solution.status == "converged" and solution.iterations == 0
            assert bool((solution.x == 0).all()) and bool(torch.isfinite(solution.residuals).all())


def test_zero_column_gives_finite_gradients():
    A = poisson(4)
    B = randn(16, 2, seed=9)
    B[:, 1] = 0
    values = A.values.clone().requires_grad_()
    B.requires_grad_()
    solution = PCG(maxiter=6, rtol=0)(A.with_values(values), B)
    (solution.x.sum() + solution.residuals.sum()).backward()
    assert bool(torch.isfinite(values.grad).all()) and bool(torch.isfinite(B.grad).all())


# ---------------------------------------------------------------------------- failures


def test_breakdown_on_indefinite_matrix():
    # p^T A p = 0 at once for b = (1, 1): reported, x left at x0.
    A = ls.CSRMatrix.from_dense(torch.tensor([[1.0, 0.0], [0.0, -1.0]], dtype=F64))
    solution = PCG(check_spd=False)(A, torch.ones(2, dtype=F64))
    assert solution.status == "breakdown" and not solution.converged
    assert solution.iterations == 0 and bool((solution.x == 0).all())
    assert "p^T A p <= 0" in solution.message and "A is not positive definite" in solution.message

    # Later: the iterate returned is the last good one (scipy's, which does not check).
    A = ls.diag(torch.tensor([1.0, 2.0, 3.0, -0.2], dtype=F64))
    b = torch.ones(4, dtype=F64)
    iterates = []
    sla.cg(A.to_scipy(), b.numpy(), maxiter=8, callback=lambda xk: iterates.append(xk.copy()))
    solution = PCG(check_spd=False)(A, b)
    assert solution.status == "breakdown" and solution.iterations >= 1
    assert "p^T A p <= 0" in solution.message
    np.testing.assert_allclose(solution.x.numpy(), iterates[solution.iterations - 1], rtol=1e-14)
    assert solution.residuals.shape == (solution.iterations + 1,)


def test_breakdown_on_indefinite_preconditioner():
    A = poisson(3)
    M = ls.diag(torch.tensor([1.0] * 8 + [-20.0], dtype=F64))
    solution = PCG(M)(A, torch.ones(9, dtype=F64))
    assert solution.status == "breakdown" and solution.iterations == 0
    assert "r^T M r <= 0" in solution.message and "preconditioner" in solution.message
    # In a block, the message names the column.
    B = torch.ones(9, 2, dtype=F64)
    B[:, 0] = torch.arange(9.0) < 8
    solution = PCG(M)(A, B)
    assert solution.status == "breakdown" and "column 1" in solution.message


def test_diverged_is_not_converged():
    A = poisson(3)
    values = A.values.clone()
    values[0] = float("inf")
    solution = PCG(check_spd=False)(A.with_values(values), torch.ones(9, dtype=F64))
    assert solution.status == "diverged" and not solution.converged


def test_check_spd_errors():
    dense = torch.tensor([[2.0, -1.0, 0.0], [-1.0, 2.0, -1.0], [0.0, -1.0, 2.0]], dtype=F64)
    A = ls.CSRMatrix.from_dense(dense)
    assert check_spd(A) is A
    # Asymmetry within rounding is accepted.
    assert check_spd(A.with_values(A.values * (1 + 2e-16 * torch.arange(7.0, dtype=F64))))

    lower = dense.clone()
    lower[0, 1] = 0.0
    with pytest.raises(ValueError, match=r"pattern is not symmetric: entry \(0, 1\) is stored and "
                                         r"\(1, 0\) is not"):
        check_spd(ls.CSRMatrix.from_dense(lower.T.contiguous()))
    unsymmetric = dense.clone()
    unsymmetric[1, 2] = -1.5
    unsymmetric[0, 1] += 1e-11  # small, far above rounding
    with pytest.raises(ValueError, match=r"values are not symmetric: the largest asymmetry "
                                         r"\|a_ij - a_ji\| is 5.000e-01 at \(i, j\) = \(1, 2\)"):
        check_spd(ls.CSRMatrix.from_dense(unsymmetric))
    unsymmetric[1, 2] = -1.0
    with pytest.raises(ValueError, match=r"largest asymmetry \|a_ij - a_ji\| is 1.000e-11 at "
                                         r"\(i, j\) = \(0, 1\)"):
        check_spd(ls.CSRMatrix.from_dense(unsymmetric))
    for bad_diagonal in (0.0, -3.0):
        indefinite = dense.clone()
        indefinite[2, 2] = bad_diagonal
        with pytest.raises(ValueError, match="symmetric positive definite matrix, but the "
                                             "diagonal entry at row 2"):
            PCG()(ls.CSRMatrix(A.crow_indices, A.col_indices,
                               indefinite[A.row_indices(), A.col_indices], A.shape),
                  torch.ones(3, dtype=F64))
    nan = A.values.clone()
    nan[3] = float("nan")
    with pytest.raises(ValueError, match=r"values are not finite: nan at \(1, 1\)"):
        check_spd(A.with_values(nan), name="K")
    with pytest.raises(TypeError, match="K: expected a learnsolve.CSRMatrix"):
        check_spd(dense, "K")


# ---------------------------------------------------------------------------- gradients


def _solve(mode, A, M, x0=None, maxiter=3, rtol=0.0, segments=None):
    def f(values, b, m_values, *rest):
        pcg = PCG(M.with_values(m_values), maxiter=maxiter, rtol=rtol, differentiation=mode,
                  checkpoint_segments=segments, check_spd=False)
        solution = pcg(A.with_values(values), b, rest[0] if rest else None)
        return solution.x, solution.residuals
    return f


@pytest.mark.parametrize("block", [False, True])
def test_gradcheck_unrolled(block):
    A = poisson(3)
    M = spd_like(A)
    b = randn(*((9, 2) if block else (9,)), seed=10, requires_grad=True)
    x0 = randn(*b.shape, seed=11, requires_grad=True)
    inputs = (A.values.clone().requires_grad_(), b, M.values.clone().requires_grad_(), x0)
    assert torch.autograd.gradcheck(_solve("unrolled", A, M), inputs)


@pytest.mark.parametrize("segments", [None, 1, 2, 3, 40])
def test_checkpoint_gradients_equal_unrolled(segments):
    m = 6
    A = poisson(m)
    M = spd_like(A)
    B = torch.stack([eigen_rhs(m, [(1, 1), (2, 1)]), randn(m * m, seed=12),
                     randn(m * m, seed=13)], dim=1)
    inputs = [A.values.clone(), B, M.values.clone(), randn(m * m, 3, seed=14) * 0.1]
    weights = randn(m * m, 3, seed=15)
    results = {}
    calls = {}
    for mode in ("unrolled", "checkpoint"):
        leaves = [t.clone().requires_grad_() for t in inputs]
        calls[mode] = []
        pcg = PCG(M.with_values(leaves[2]), rtol=1e-7, differentiation=mode,
                  checkpoint_segments=segments if mode == "checkpoint" else None,
                  check_spd=False, callback=calls[mode].append)
        solution = pcg(A.with_values(leaves[0]), leaves[1], leaves[3])
        assert solution.status == "converged"
        loss = (solution.x * weights).sum() + solution.relative_residuals.sum()
        results[mode] = (solution, torch.autograd.grad(loss, leaves))
    (unrolled, g_u), (checkpointed, g_c) = results["unrolled"], results["checkpoint"]
    assert checkpointed.iterations == unrolled.iterations > 2
    torch.testing.assert_close(checkpointed.x, unrolled.x, rtol=0, atol=0)
    for a, c in zip(g_u, g_c):
        torch.testing.assert_close(c, a, rtol=1e-12, atol=1e-13)
    # The recomputation in the backward calls no callback.
    assert len(calls["checkpoint"]) == len(calls["unrolled"]) == unrolled.iterations


@pytest.mark.parametrize("block", [False, True])
@pytest.mark.parametrize("precondition", [False, True])
def test_implicit_gradient_matches_dense_solve(block, precondition):
    A = poisson(5)
    b = randn(*((25, 3) if block else (25,)), seed=16)
    weights = randn(*b.shape, seed=17)
    values = A.values.clone().requires_grad_()
    b_leaf = b.clone().requires_grad_()
    pcg = PCG(jacobi(A) if precondition else None, rtol=1e-13, differentiation="implicit")
    solution = pcg(A.with_values(values), b_leaf)
    assert solution.converged and not solution.residuals.requires_grad
    grads = torch.autograd.grad((solution.x * weights).sum(), (values, b_leaf))

    values_d = A.values.clone().requires_grad_()
    b_d = b.clone().requires_grad_()
    x = torch.linalg.solve(A.with_values(values_d).to_dense(), b_d)
    expected = torch.autograd.grad((x * weights).sum(), (values_d, b_d))
    torch.testing.assert_close(solution.x, x.detach(), rtol=0, atol=1e-11)
    for got, want in zip(grads, expected):
        torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-10)


def test_implicit_warns_when_adjoint_does_not_converge():
    A = poisson(6)
    b = randn(36, seed=18, requires_grad=True)
    solution = PCG(maxiter=3, differentiation="implicit")(A, b)
    assert solution.status == "maxiter"
    with pytest.warns(RuntimeWarning, match="adjoint solve A λ = grad_x did not converge"):
        solution.x.sum().backward()


class Diagonal(Preconditioner):
    """A learned diagonal preconditioner."""

    def __init__(self, n):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.full((n,), 0.3, dtype=F64))

    def setup(self, A):
        return lambda r: self.weight.reshape(-1, *([1] * (r.dim() - 1))) * r


def test_learned_preconditioner_module():
    A = poisson(4)
    B = randn(16, 2, seed=19)
    model = Diagonal(16)
    pcg = PCG(model, maxiter=3, rtol=0)
    assert [p is model.weight for p in pcg.parameters()] == [True]
    pcg(A, B).residuals.sum().backward()
    # The same preconditioner as a CSRMatrix diag(w) gives the same gradient.
    w = model.weight.detach().clone().requires_grad_()
    PCG(ls.diag(w), maxiter=3, rtol=0)(A, B).residuals.sum().backward()
    torch.testing.assert_close(model.weight.grad, w.grad, rtol=1e-12, atol=1e-14)

    implicit = PCG(model, differentiation="implicit")
    with pytest.raises(ValueError, match="implicit differentiation gives no gradient to the "
                                         "preconditioner.*'unrolled' or 'checkpoint'"):
        implicit(A, B)
    with pytest.raises(ValueError, match="no gradient to the preconditioner"):
        PCG(ls.diag(w), differentiation="implicit")(A, B)
    with torch.no_grad():
        assert implicit(A, B).converged


def _saved(mode, maxiter):
    """(number, elements) of the tensors autograd saves for the backward of a solve."""
    A = poisson(12)
    values = A.values.clone().requires_grad_()
    b = randn(144, 2, seed=20, requires_grad=True)
    count = [0, 0]

    def pack(t):
        count[0] += 1
        count[1] += t.numel()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        solution = PCG(jacobi(A), maxiter=maxiter, rtol=0, differentiation=mode)(
            A.with_values(values), b)
    assert solution.iterations == maxiter
    with pytest.warns(RuntimeWarning) if mode == "implicit" else _no_warning():
        solution.x.sum().backward()
    assert values.grad is not None and b.grad is not None
    return count


class _no_warning:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_memory_of_the_modes():
    saved = {(mode, it): _saved(mode, it) for mode in ("unrolled", "checkpoint", "implicit")
             for it in (10, 100)}
    assert saved["implicit", 10] == saved["implicit", 100]
    assert saved["implicit", 100][1] <= 144 * 2  # x only
    assert saved["unrolled", 100][1] > 8 * saved["unrolled", 10][1]
    assert saved["checkpoint", 100][1] < saved["unrolled", 100][1] / 10
    assert saved["checkpoint", 10][1] < saved["unrolled", 10][1]


@pytest.mark.parametrize("segments", [None, 4])
def test_checkpoint_segments(segments, monkeypatch):
    """By default segment k runs k + 1 iterations: a solve of m iterations makes about
    sqrt(2 m) segments though it stops long before maxiter (segments cut from the
    default maxiter = 10 n would make it one, recomputed whole in the backward);
    ``checkpoint_segments`` cuts maxiter into that many equal segments."""
    calls = []
    real = cg_module.checkpoint
    monkeypatch.setattr(cg_module, "checkpoint",
                        lambda *args, **kwargs: calls.append(1) or real(*args, **kwargs))
    A = poisson(12)
    values = A.values.clone().requires_grad_()
    maxiter = None if segments is None else 40
    solution = PCG(jacobi(A), rtol=1e-8, maxiter=maxiter, differentiation="checkpoint",
                   checkpoint_segments=segments)(A.with_values(values), randn(144, seed=22))
    m = solution.iterations
    assert solution.status == "converged" and 12 < m < 40
    expected = (math.ceil((math.sqrt(8 * m + 1) - 1) / 2) if segments is None
                else math.ceil(m / 10))
    assert len(calls) == expected
    solution.x.sum().backward()
    assert values.grad is not None


# ---------------------------------------------------------------------------- loss


def paper_preconditioner(A, seed=21):
    """M = L L^T with L lower bidiagonal (the paper's section 4.3), values random."""
    n = A.shape[0]
    L = ls.diags([1.0, 1.0], [0, -1], shape=(n, n), dtype=F64)
    g = torch.Generator().manual_seed(seed)
    return L.with_values(0.3 + 0.1 * torch.rand(L.nnz, generator=g, dtype=F64))


@pytest.mark.parametrize("mode", ["unrolled", "checkpoint"])
def test_pcg_loss_against_dense_cg(mode):
    problem = poisson_2d(8, dtype=F64)
    A = problem.A
    L0 = paper_preconditioner(A)
    B = randn(64, 3, seed=22)
    B = B / B.norm(dim=0)
    gamma, N = 0.6, 4

    values = L0.values.clone().requires_grad_()
    L = L0.with_values(values)
    model = PCG(L @ L.T, maxiter=100, rtol=1e-3, differentiation=mode)
    loss = model.loss(problem, B)
    (grad,) = torch.autograd.grad(loss, values)
    assert model.maxiter == 100 and model.rtol == 1e-3  # not changed

    values_d = L0.values.clone().requires_grad_()
    Ld = L0.with_values(values_d).to_dense()
    weights = torch.tensor([gamma ** (N - i) for i in range(1, N + 1)], dtype=F64)
    weights = weights / weights.sum()
    per_column = [weights @ dense_pcg(A.to_dense(), Ld @ Ld.T, B[:, j], N) for j in range(3)]
    expected = torch.stack(per_column).mean()
    (grad_d,) = torch.autograd.grad(expected, values_d)
    torch.testing.assert_close(loss, expected, rtol=1e-12, atol=0)
    torch.testing.assert_close(grad, grad_d, rtol=1e-9, atol=1e-12)
    # One right-hand side, and other weights.
    torch.testing.assert_close(pcg_loss(model, A, B[:, 0], iterations=2, gamma=1.0),
                               dense_pcg(A.to_dense(), (Ld @ Ld.T).detach(), B[:, 0], 2).mean())


def test_pcg_loss_refuses_implicit_and_bad_settings():
    A = poisson(4)
    B = randn(16, 2, seed=23)
    with pytest.raises(ValueError, match="'implicit'.*residual history is detached"):
        PCG(differentiation="implicit").loss(A, B)
    with pytest.raises(ValueError, match="iterations: expected an integer >= 1"):
        pcg_loss(PCG(), A, B, iterations=0)
    with pytest.raises(ValueError, match=r"gamma: expected a number in \(0, 1\]"):
        pcg_loss(PCG(), A, B, gamma=0.0)
    with pytest.raises(TypeError, match="model: expected a PCG"):
        pcg_loss(torch.nn.Linear(2, 2), A, B)


def test_pcg_loss_completes_a_short_history():
    # 1-D Poisson n=2 converges in 2 iterations: the residual is then 0.
    A = poisson_1d(2, dtype=F64).A
    b = torch.tensor([1.0, 0.0], dtype=F64)
    loss = pcg_loss(PCG(), A, b, iterations=4, gamma=0.5)
    first = float(dense_pcg(A.to_dense(), torch.eye(2, dtype=F64), b, 1)[0])
    torch.testing.assert_close(loss, torch.tensor(first * 0.125 / 1.875, dtype=F64),
                               rtol=1e-10, atol=1e-15)
    # A breakdown holds the last residual, with a warning: here r_1 = (0, 1/2), then
    # r_1^T M r_1 = -1/4.
    M = ls.diag(torch.tensor([1.0, -1.0], dtype=F64))
    with pytest.warns(RuntimeWarning, match="stopped early.*breakdown after 1 iterations"):
        held = pcg_loss(PCG(M), A, b, iterations=3)
    torch.testing.assert_close(held, torch.tensor(0.5, dtype=F64))


# ---------------------------------------------------------------------------- bad input


def test_bad_input():
    A = poisson(3)
    b = torch.ones(9, dtype=F64)
    pcg = PCG()
    with pytest.raises(TypeError, match="A: expected a CSRMatrix, a scipy sparse matrix"):
        pcg("A", b)
    with pytest.raises(ValueError, match="A: expected a square matrix"):
        pcg(ls.CSRMatrix.from_dense(torch.ones(2, 3, dtype=F64)), torch.ones(2, dtype=F64))
    with pytest.raises(ValueError, match=r"b: expected shape \(9,\) or \(9, k\)"):
        pcg(A, torch.ones(8, dtype=F64))
    with pytest.raises(ValueError, match="b: expected shape"):
        pcg(A, torch.ones(9, 2, 2, dtype=F64))
    with pytest.raises(TypeError, match="b: expected dtype torch.float64"):
        pcg(A, b.float())
    with pytest.raises(ValueError, match="b: expected a tensor on cpu"):
        pcg(A, b.to("meta"))
    with pytest.raises(ValueError, match="x0: expected the shape of b"):
        pcg(A, b, torch.ones(9, 1, dtype=F64))
    with pytest.raises(ValueError, match="differentiation: expected one of"):
        PCG(differentiation="adjoint")
    with pytest.raises(ValueError, match="checkpoint_segments: expected an integer >= 1"):
        PCG(differentiation="checkpoint", checkpoint_segments=0)
    with pytest.raises(ValueError, match="checkpoint_segments: only used with"):
        PCG(checkpoint_segments=3)
    with pytest.raises(ValueError, match="maxiter: expected an integer >= 0"):
        PCG(maxiter=-1)
    with pytest.raises(ValueError, match="rtol: expected a finite number >= 0"):
        PCG(rtol=-1.0)
    with pytest.raises(TypeError, match="check_spd: expected a bool"):
        PCG(check_spd="yes")
    with pytest.raises(ValueError, match="M: expected the shape of A"):
        PCG(ls.eye(4, dtype=F64))(A, b)
    with pytest.raises(TypeError, match="M: expected dtype torch.float64"):
        PCG(ls.eye(9))(A, b)
    with pytest.raises(TypeError, match="M: expected a CSRMatrix, a scipy sparse matrix"):
        PCG(3.0)(A, b)
    with pytest.raises(ValueError, match=r"M: expected M r shaped like r \(9,\), got \(8,\)"):
        PCG(lambda r: r[:8])(A, b)


def test_spd_check_runs_once_per_matrix_and_again_after_a_change(monkeypatch):
    from learnsolve.solvers import cg
    calls = []
    original = cg.check_spd
    monkeypatch.setattr(cg, "check_spd", lambda A, name="A": calls.append(1) or original(A))
    A = poisson_2d(4, dtype=torch.float64).A
    b = torch.ones(16, dtype=torch.float64)
    pcg = PCG(maxiter=3)
    pcg(A, b)
    pcg(A, b)
    PCG(maxiter=3)(A, b)
    assert len(calls) == 1                       # the same matrix, unchanged
    with torch.no_grad():
        A.values[1] += 1.0                       # in place: now not symmetric
    with pytest.raises(ValueError, match="not symmetric"):
        pcg(A, b)
    B = A.with_values(poisson_2d(4, dtype=torch.float64).A.values)
    pcg(B, b)                                    # other values: checked again, and fine
    assert len(calls) == 3
