"""The fused PCG iteration ``learnsolve::cg_step``: against the same iteration in plain
torch, its argument checks, and PCG's lean path through it (taken where it applies, the
same solve as the per-iteration path)."""
import pytest
import torch
from torch.library import opcheck

import learnsolve as ls
from learnsolve.core import native
from learnsolve.core._ops import ops
from learnsolve.problems import batch_problems, diffusion_2d, poisson_2d
from learnsolve.solvers import PCG, Jacobi
from learnsolve.solvers._cg_lean import LeanIterations
from learnsolve.solvers.base import PreconditionerOperator

from cases import randn

F64 = torch.float64


def with_empty_row(n=7, empty=3):
    """An n x n matrix with nonzero entries in every row but ``empty``."""
    dense = torch.diag(torch.linspace(2.0, 3.0, n, dtype=F64)) - torch.diag(
        torch.full((n - 1,), 0.4, dtype=F64), 1)
    dense[empty] = 0.0
    return ls.CSRMatrix.from_dense(dense)


def problem(A, dtype, preconditioned, seed=0):
    """The inputs of one iteration on A: ``(x, r, p, rz, d)``."""
    n = A.shape[0]
    x, r, p = (randn(n, seed=seed + k, dtype=dtype) for k in range(3))
    d = randn(n, seed=seed + 3, dtype=dtype).abs() + 0.5 if preconditioned else None
    rz = (r @ (r if d is None else d * r)).reshape(())
    return x, r, p, rz, d


def reference(A, x, r, p, rz, d=None):
    """The iteration in plain torch, in float64: ``(x', r', p', dots)``."""
    x, r, p, rz = (t.double() for t in (x, r, p, rz))
    q = A.to_dense().double() @ p
    pAp = p @ q
    alpha = rz / pAp
    x, r = x + alpha * p, r - alpha * q
    z = r if d is None else d.double() * r
    rr, rz_next = r @ r, r @ z
    dots = [pAp, rr] if d is None else [pAp, rr, rz_next]
    return x, r, z + rz_next / rz * p, torch.stack(dots)


def run(A, x, r, p, rz, d=None, q=None, out=None, dots=None):
    """``ops.cg_step`` into fresh buffers (``out`` None) or ``out``: ``(*out, dots)``."""
    out = tuple(torch.empty_like(x) for _ in range(3)) if out is None else out
    dots = x.new_empty(2 if d is None else 3) if dots is None else dots
    ops.cg_step(A.crow_indices, A.pattern.kernel_col(), A.values, x, r, p, rz, d, q, *out, dots)
    return (*out, dots)


def assert_matches(result, expected, dtype):
    tol = dict(rtol=1e-12, atol=1e-12) if dtype == F64 else dict(rtol=2e-5, atol=2e-5)
    for got, want in zip(result, expected):
        assert got.dtype == dtype
        torch.testing.assert_close(got.double(), want, **tol)


# ------------------------------------------------------------------ the op

@pytest.mark.parametrize("preconditioned", [False, True])
@pytest.mark.parametrize("given_q", [False, True])
@pytest.mark.parametrize("in_place", [False, True])
def test_one_iteration(dtype, preconditioned, given_q, in_place):
    A = poisson_2d(9, dtype=dtype).A
    x, r, p, rz, d = problem(A, dtype, preconditioned)
    expected = reference(A, x, r, p, rz, d)
    q = A @ p if given_q else None
    inputs = (x.clone(), r.clone(), p.clone())
    result = run(A, *inputs, rz, d, q, out=inputs if in_place else None)
    assert_matches(result, expected, dtype)
    if in_place:
        assert all(a is b for a, b in zip(result, inputs))
    else:
        assert all(a.equal(b) for a, b in zip(inputs, (x, r, p)))   # inputs untouched


@pytest.mark.parametrize("A", [with_empty_row(), ls.CSRMatrix.from_dense(
    torch.tensor([[2.5]], dtype=F64))], ids=["empty_row", "n1"])
def test_small_and_empty_rows(A, dtype):
    A = A.to(dtype=dtype)
    for preconditioned in (False, True):
        x, r, p, rz, d = problem(A, dtype, preconditioned, seed=4)
        assert_matches(run(A, x, r, p, rz, d), reference(A, x, r, p, rz, d), dtype)


def test_long_vectors_across_blocks_and_lanes(dtype):
    """Rows past the blocks of the sums and their lanes (n not a multiple of either)."""
    A = poisson_2d(47, dtype=dtype).A           # n = 2209
    x, r, p, rz, d = problem(A, dtype, True, seed=5)
    assert_matches(run(A, x, r, p, rz, d), reference(A, x, r, p, rz, d), dtype)


def test_independent_of_the_thread_count():
    """The sums are taken per fixed block of rows and added in order: bitwise the same
    result on one thread and on several (a problem large enough to run in parallel)."""
    A = poisson_2d(120, dtype=F64).A
    x, r, p, rz, d = problem(A, F64, True, seed=6)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        single = run(A, x, r, p, rz, d)
        torch.set_num_threads(max(2, threads))
        several = run(A, x, r, p, rz, d)
    finally:
        torch.set_num_threads(threads)
    assert all(a.equal(b) for a, b in zip(single, several))


def test_breakdown_gives_non_finite_values():
    """p^T A p = 0 (p = 0): alpha is inf, the updates NaN, and p^T A p is recorded as 0,
    what PCG's checks stop on; nothing fails."""
    A = poisson_2d(4, dtype=F64).A
    x, r, p, rz, d = problem(A, F64, False)
    x_out, r_out, p_out, dots = run(A, x, r, torch.zeros_like(p), rz)
    assert dots[0] == 0 and not bool(x_out.isfinite().any())


def test_opcheck():
    A = poisson_2d(4, dtype=F64).A
    x, r, p, rz, d = problem(A, F64, True)
    outputs = [torch.empty_like(x) for _ in range(3)]
    for args in ((d, None, *outputs, x.new_empty(3)), (None, A @ p, *outputs, x.new_empty(2))):
        opcheck(torch.ops.learnsolve.cg_step,
                (A.crow_indices, A.col_indices, A.values, x, r, p, rz, *args))


def test_no_gradient():
    """With a graph to record it refuses; without, it bumps the versions of what it wrote."""
    A = poisson_2d(3, dtype=F64).A
    x, r, p, rz, d = problem(A, F64, False)
    with pytest.raises(RuntimeError, match="learnsolve::cg_step is not differentiable"):
        run(A, x.clone().requires_grad_(), r, p, rz)
    outputs = tuple(torch.empty_like(x) for _ in range(3))
    versions = [t._version for t in outputs]
    with torch.no_grad():
        run(A, x.clone().requires_grad_(), r, p, rz, out=outputs)
    assert [t._version for t in outputs] == [v + 1 for v in versions]
    with torch.no_grad(), torch.autograd.forward_ad.dual_level():    # a tangent too
        dual = torch.autograd.forward_ad.make_dual(x, torch.ones_like(x))
        with pytest.raises(RuntimeError, match="forward-mode tangent"):
            run(A, dual, r, p, rz)


def bad_arguments():
    """(what to change, the message): each call otherwise valid."""
    n = 16
    return [
        (dict(x=torch.zeros(n)), "expected values and x to have the same dtype"),
        (dict(r=torch.zeros(n + 1, dtype=F64)), r"expected r of shape \(16,\)"),
        (dict(p=torch.zeros(n, 1, dtype=F64)), r"expected p of shape \(16,\)"),
        (dict(d=torch.ones(n - 1, dtype=F64)), r"expected d of shape \(16,\)"),
        (dict(q=torch.zeros(n, dtype=torch.float32)), "expected values and q to have the same"),
        (dict(x_out=torch.zeros(2 * n, dtype=F64)[::2]), "expected x_out to be contiguous"),
        (dict(rz=torch.ones(2, dtype=F64)), "expected rz with one element"),
        (dict(dots=torch.zeros(3, dtype=F64)), r"expected dots of shape \(2,\)"),
        (dict(dots=torch.zeros(2, dtype=torch.float32)), "expected values and dots to have"),
        (dict(crow=torch.arange(n + 1, dtype=torch.int32)), "expected crow to have dtype int64"),
        (dict(col=torch.zeros(n, dtype=F64)), "expected col to have dtype int64 or int32"),
        (dict(values=torch.ones(3, dtype=F64)), "expected values and col of equal length"),
    ]


@pytest.mark.parametrize("change, message", bad_arguments())
def test_bad_arguments_are_named(change, message):
    A = poisson_2d(4, dtype=F64).A
    x, r, p, rz, d = problem(A, F64, False)
    args = dict(crow=A.crow_indices, col=A.col_indices, values=A.values, x=x, r=r, p=p, rz=rz,
                d=None, q=None, x_out=torch.empty_like(x), r_out=torch.empty_like(x),
                p_out=torch.empty_like(x), dots=x.new_empty(2))
    if "d" in change:
        args["dots"] = x.new_empty(3)
    args.update(change)
    with pytest.raises((RuntimeError, ValueError), match=f"cg_step: {message}"):
        ops.cg_step(**args)


def test_outputs_may_only_be_their_own_inputs():
    A = poisson_2d(4, dtype=F64).A
    x, r, p, rz, d = problem(A, F64, True)
    buffer = torch.zeros(17, dtype=F64)
    fresh = [torch.empty_like(x) for _ in range(3)]
    for x_in, out, message in (
            (x, (x, r, x), "x_out not to overlap p_out"),
            (x, (p, *fresh[1:]), "x_out not to overlap p"),
            (x, (d, *fresh[1:]), "x_out not to overlap d"),
            (x, (fresh[0], x, fresh[2]), "r_out not to overlap x"),
            (buffer[:16], (buffer[1:], *fresh[1:]), "x_out to be x itself or not to overlap it")):
        with pytest.raises(RuntimeError, match=f"cg_step: expected {message}"):
            run(A, x_in, r, p, rz, d, out=out)


# ------------------------------------------------------------------ PCG through it

@pytest.fixture
def fused_calls(monkeypatch):
    """The calls of the native step (``ops.cg_step``) during the test."""
    calls, original = [], native.cg_step

    def counted(*args):
        calls.append(1)
        return original(*args)
    monkeypatch.setattr(native, "cg_step", counted)
    return calls


def assert_same_solve(lean, graph, dtype):
    """The lean solve and the per-iteration (graph-recording) one, to rounding."""
    assert (lean.status, lean.iterations, lean.message) == (graph.status, graph.iterations,
                                                             graph.message)
    tol = 1e-10 if dtype == F64 else 1e-4
    for mine, theirs in ((lean.residuals, graph.residuals), (lean.x, graph.x)):
        scale = float(theirs.detach().abs().max())
        torch.testing.assert_close(mine, theirs.detach(), rtol=tol, atol=tol * scale)


@pytest.mark.parametrize("M", [None, "jacobi"])
def test_pcg_through_the_fused_step(M, dtype, fused_calls):
    A = poisson_2d(12, dtype=dtype).A
    b = randn(144, seed=7, dtype=dtype)
    solver = PCG(None if M is None else Jacobi(0.8, learnable=False).to(dtype),
                 rtol=1e-4 if dtype == torch.float32 else 1e-9)
    lean = solver(A, b)
    assert lean.converged and len(fused_calls) >= lean.iterations
    calls = len(fused_calls)
    assert_same_solve(lean, solver(A, b.clone().requires_grad_()), dtype)
    assert len(fused_calls) == calls                     # not on the graph's path


def test_same_iterates_as_the_torch_ops_of_the_lean_step(monkeypatch):
    """The fused step and the torch ops it replaces, both lean, to rounding (the
    inner products summed in another order)."""
    A = poisson_2d(16, dtype=F64).A
    b = randn(256, seed=8)
    M = Jacobi(0.9, learnable=False).double()
    fused = PCG(M, rtol=1e-10)(A, b)
    monkeypatch.setattr(LeanIterations, "fusable", lambda self, x: None)
    plain = PCG(M, rtol=1e-10)(A, b)
    assert (fused.iterations, fused.status) == (plain.iterations, plain.status)
    torch.testing.assert_close(fused.residuals, plain.residuals, rtol=1e-10, atol=1e-14)
    torch.testing.assert_close(fused.x, plain.x, rtol=1e-10, atol=1e-12)


def test_trainable_jacobi_without_a_graph(fused_calls):
    """A Jacobi whose weights require grad, solved under no_grad: the lean path, fused,
    and the same solve as with fixed weights."""
    A = poisson_2d(10, dtype=F64).A
    b = randn(100, seed=9)
    with torch.no_grad():
        trained = PCG(Jacobi(0.7).double(), rtol=1e-9)(A, b)
    assert fused_calls and trained.converged
    fixed = PCG(Jacobi(0.7, learnable=False).double(), rtol=1e-9)(A, b)
    assert trained.x.equal(fixed.x) and trained.iterations == fixed.iterations


def test_where_the_fused_step_does_not_apply(fused_calls):
    A = poisson_2d(8, dtype=F64).A
    b = randn(64, seed=10)
    scale = 1.0 / A.diagonal()
    problems = [diffusion_2d(m, m, "lognormal", seed=m, dtype=F64) for m in (4, 5)]
    batch = batch_problems(problems)
    solves = [
        lambda: PCG(rtol=1e-8)(A, torch.stack([b, 2 * b], dim=1)),        # several systems
        lambda: PCG(Jacobi(1.0, learnable=False).double(), rtol=1e-8)(    # blocks
            batch.A, randn(batch.A.shape[0], seed=11), blocks=batch.info["offsets"]),
        lambda: PCG(lambda r: scale * r, rtol=1e-8)(A, b),               # a callable M
        lambda: PCG(ls.diag(scale), rtol=1e-8)(A, b),                    # a matrix M
        lambda: PCG(rtol=1e-8)(lambda v: A @ v, b),                      # a matrix-free A
    ]
    for solve in solves:
        assert solve().converged
    assert fused_calls == []
    # The callable and the Jacobi with the same diagonal: the same solve, to rounding.
    callable_M = PCG(lambda r: scale * r, rtol=1e-8)(A, b)
    diagonal_M = PCG(PreconditionerOperator.like(A, lambda r: scale * r, symmetric=True,
                                                 diagonal=scale), rtol=1e-8)(A, b)
    assert len(fused_calls) >= diagonal_M.iterations
    assert callable_M.iterations == diagonal_M.iterations
    torch.testing.assert_close(callable_M.x, diagonal_M.x, rtol=1e-10, atol=1e-12)
