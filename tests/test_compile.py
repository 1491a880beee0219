"""torch.compile with fullgraph=True: the typed wrappers of the native ops, and CSRMatrix's
operations through Python's operators (``A @ x``, ``x @ A``, ``A @ B``, ``A + B``, ``2 * A``, ...)
and triangular solves, and PCG for a fixed number of iterations, trace into one graph through
the fake kernels, forward and backward, agree with eager, and do not recompile for new values
of the same shapes."""
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from torch._dynamo.testing import CompileCounterWithBackend

import learnsolve as ls
from cases import m_matrix, randn
from learnsolve.core._ops import ops
from learnsolve.linalg import spsolve_triangular
from learnsolve.problems import batch_problems, poisson_1d, poisson_2d
from learnsolve.solvers import PCG, Jacobi


def _operands():
    """A well-conditioned 12x12 matrix (full diagonal), its cached analyses, x and b."""
    A = ls.CSRMatrix.from_scipy(m_matrix(12, 0.3, 4))
    levels = A.pattern.triangular_levels(True)
    transposed = A.pattern.transpose_arrays()
    return A, levels, transposed, randn(12), randn(12, seed=1)


def _spmv_then_solve(crow, col, levels, transposed):
    def f(values, x, b):
        y = torch.tanh(ops.spmv(crow, col, values, x))
        z = ops.sptrsv(crow, col, values, b + y, *levels, True, False, *transposed, False)
        return (z * y).sum(), z
    return f


def _run(f, values, x, b):
    values = values.detach().clone().requires_grad_()
    loss, z = f(values, x, b)
    loss.backward()
    return loss.detach(), z.detach(), values.grad


@pytest.mark.parametrize("backend", ["aot_eager", "inductor"])
def test_compiled_ops_match_eager(backend):
    torch._dynamo.reset()
    A, levels, transposed, x, b = _operands()
    f = _spmv_then_solve(A.crow_indices, A.col_indices, levels, transposed)
    compiled = torch.compile(f, backend=backend, fullgraph=True)
    for expected, actual in zip(_run(f, A.values, x, b), _run(compiled, A.values, x, b)):
        torch.testing.assert_close(actual, expected, rtol=1e-12, atol=1e-12)


def _matrices():
    """Two 12x12 matrices, A and B, with different patterns: not symmetric (so that A x and
    x A differ), a full diagonal in [2, 3] (so that their triangles are invertible)."""
    def matrix(seed):
        rng = np.random.default_rng(seed)
        S = sp.random_array((12, 12), density=0.25, rng=rng) + sp.diags_array(rng.uniform(2, 3, 12))
        return ls.CSRMatrix.from_scipy(S)
    return matrix(0), matrix(1)


def _pair(x):
    """Two columns made from x (differentiable in x): the dense matrix operand."""
    return torch.stack([x, x.flip(0)], 1)


# name -> f(A, B, x): A on the values that require grad, B fixed, x requiring grad.
OPERATIONS = {
    "A @ x": lambda A, B, x: A @ x,
    "A @ X": lambda A, B, x: A @ _pair(x),
    "x @ A": lambda A, B, x: x @ A,
    "X @ A": lambda A, B, x: _pair(x).T @ A,
    "A.T @ x": lambda A, B, x: A.T @ x,
    "A @ B": lambda A, B, x: (A @ B) @ x,
    "A + B": lambda A, B, x: (A + B) @ x,
    "A - B": lambda A, B, x: (A - B) @ x,
    "2 * A": lambda A, B, x: (2.0 * A) @ x,
    "t * A": lambda A, B, x: (x[0] * A) @ x,
    "A / t": lambda A, B, x: (A / x[1]) @ x,
    "-A": lambda A, B, x: (-A) @ x,
    "solve lower": lambda A, B, x: spsolve_triangular(A, x),
    "solve upper transposed": lambda A, B, x: spsolve_triangular(A, x, lower=False,
                                                                 transpose=True),
}


def _value_and_grads(f, values, x):
    """f(values, x), and the gradients of its sum of squares for values and x."""
    values = values.detach().clone().requires_grad_()
    x = x.detach().clone().requires_grad_()
    out = f(values, x)
    out.square().sum().backward()
    return out.detach(), values.grad, x.grad


def _check_compiled(f, backend, calls):
    """Compile f with fullgraph=True and compare it with eager at each ``(values, x)`` of
    ``calls``: the eager call comes first, and computes what is cached on the patterns (A^T's
    pattern, that of A @ B, the triangular levels) as a first use outside the compiled
    function would; one compilation for all the calls."""
    counter = CompileCounterWithBackend(backend)
    compiled = torch.compile(f, backend=counter, fullgraph=True)
    for values, x in calls:
        expected = _value_and_grads(f, values, x)
        for actual, wanted in zip(_value_and_grads(compiled, values, x), expected):
            torch.testing.assert_close(actual, wanted, rtol=1e-12, atol=1e-12)
    assert counter.frame_count == 1


def _calls(A):
    """Two calls with new values and a new x of the same shapes."""
    return [(A.values * (1 + 0.1 * randn(A.nnz, seed=seed)), randn(12, seed=seed + 2))
            for seed in (0, 1)]


@pytest.mark.parametrize("name", OPERATIONS)
def test_compiled_csr_operation_matches_eager(name):
    """Each operation on ``A.with_values(values)``, the learned-values case, in one graph."""
    torch._dynamo.reset()
    A, B = _matrices()
    operation = OPERATIONS[name]
    _check_compiled(lambda values, x: operation(A.with_values(values), B, x), "aot_eager",
                    _calls(A))


def test_compiled_csr_operations_inductor():
    """All the operations in one function, compiled by inductor."""
    torch._dynamo.reset()
    A, B = _matrices()

    def f(values, x):
        A_ = A.with_values(values)
        return torch.cat([operation(A_, B, x).flatten() for operation in OPERATIONS.values()])

    _check_compiled(f, "inductor", _calls(A))


def test_compiled_csr_matrix_argument():
    """A CSRMatrix as an argument: a new matrix on the same pattern does not recompile, and
    the gradient reaches the values it was made from outside the compiled function."""
    torch._dynamo.reset()
    A, _ = _matrices()
    counter = CompileCounterWithBackend("aot_eager")
    compiled = torch.compile(lambda A, x: x @ A @ x, backend=counter, fullgraph=True)
    for values, x in _calls(A):
        expected = _value_and_grads(lambda v, x: x @ A.with_values(v) @ x, values, x)
        actual = _value_and_grads(lambda v, x: compiled(A.with_values(v), x), values, x)
        for got, wanted in zip(actual, expected):
            torch.testing.assert_close(got, wanted, rtol=1e-12, atol=1e-12)
    assert counter.frame_count == 1


@pytest.mark.parametrize("first", ["learnsolve", "torch._dynamo"])
def test_operators_trace_whichever_is_imported_first(first):
    """Importing learnsolve does not import dynamo (about a second), and ``A @ x`` traces
    whether dynamo is imported before learnsolve or after it (a fresh interpreter each)."""
    code = f"""
        import sys
        import {first}
        assert ("torch._dynamo" in sys.modules) == ({first!r} == "torch._dynamo")
        import torch, learnsolve as ls
        A = ls.CSRMatrix.from_dense(torch.tensor([[2.0, 1.0], [0.0, 3.0]]))
        f = torch.compile(lambda v, x: A.with_values(v) @ x, backend="eager", fullgraph=True)
        assert f(A.values, torch.ones(2)).tolist() == [3.0, 3.0]
    """
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr


# ------------------------------------------------------- PCG, a fixed number of iterations
def _mode(p, q, k=8):
    """The (p, q) sine mode of the k x k grid: an eigenvector of poisson_2d(k)."""
    angle = torch.pi * torch.arange(1, k + 1, dtype=torch.float64) / (k + 1)
    return (torch.sin(p * angle)[:, None] * torch.sin(q * angle)).flatten()


def _pcg_calls():
    """poisson_2d(8) and two calls with new values and b (n, 2), for a 20-iteration PCG at
    rtol=1e-5. In the first, column 0 (mostly one mode) converges at iteration 15 and is
    frozen while column 1 (random) runs all 20 (status "maxiter"); in the second (2 A),
    both columns are mostly a few modes and converge by iteration 15, where the solve
    that reads on the host stops. (A column that reaches the tolerance by CG's finite
    termination, its residual at rounding level, would not do: the gradient of that
    residual's norm is rounding's direction.)"""
    A = poisson_2d(8, dtype=torch.float64).A
    smooth = _mode(1, 1) + 0.01 * randn(64, seed=3)
    modes = _mode(1, 1) + _mode(2, 3) + 0.1 * _mode(5, 4) + 1e-3 * randn(64, seed=4)
    return A, [(A.values, torch.stack([smooth, randn(64)], 1)),
               (2 * A.values, torch.stack([smooth.flip(0), modes], 1))]


def _pcg_run(f, values, b, M):
    """f(values, b) (a Solution), and the gradients of ||x||^2 + the last residuals for
    values, b and M's weights; then the outcome, read on the host."""
    values = values.detach().clone().requires_grad_()
    b = b.detach().clone().requires_grad_()
    if M is not None:
        M.zero_grad()
    solution = f(values, b)
    loss = solution.x.square().sum() + solution.residuals[-1].sum()
    loss.backward()
    grads = [values.grad, b.grad] + ([] if M is None else [M.omega.grad.clone()])
    return [loss.detach(), solution.x.detach(), *grads], (solution.iterations, solution.status,
                                                          solution.message)


@pytest.mark.parametrize("backend, preconditioner, differentiation", [
    ("aot_eager", None, "unrolled"),
    ("aot_eager", "jacobi", "unrolled"),
    ("aot_eager", "jacobi", "checkpoint"),
    ("inductor", "jacobi", "unrolled"),
])
def test_compiled_pcg_fixed_iterations(backend, preconditioner, differentiation):
    """A 20-iteration PCG, forward and backward, in one graph: the values, the gradients (for
    A's values, b and Jacobi's weights) and the outcome of the eager solve, where that
    stops early too (a column, then the whole solve), with no recompilation for new values.
    Each eager call comes first (it caches A's transpose on the pattern)."""
    torch._dynamo.reset()
    A, calls = _pcg_calls()
    M = None if preconditioner is None else Jacobi(torch.ones(64, dtype=torch.float64))
    solver = PCG(M, maxiter=20, rtol=1e-5, differentiation=differentiation)

    def solve(values, b):
        return solver(A.with_values(values), b)

    counter = CompileCounterWithBackend(backend)
    compiled = torch.compile(solve, backend=counter, fullgraph=True)
    outcomes = []
    for values, b in calls:
        expected, outcome = _pcg_run(solve, values, b, M)
        actual, compiled_outcome = _pcg_run(compiled, values, b, M)
        for got, wanted in zip(actual, expected):
            torch.testing.assert_close(got, wanted, rtol=1e-10, atol=1e-12)
        assert compiled_outcome == outcome
        outcomes.append(outcome[:2])
    assert outcomes == [(20, "maxiter"), (15, "converged")]
    assert counter.frame_count == 1


def _traced(f, *args):
    """f(*args) traced by dynamo with fullgraph=True and run eagerly."""
    torch._dynamo.reset()
    return torch.compile(f, backend="eager", fullgraph=True)(*args)


def test_compiled_pcg_blocks():
    """A batch of problems (a system per block and column) traces, with the outcome and
    the iterate of the eager solve."""
    batch = batch_problems([poisson_2d(3, dtype=torch.float64),
                            poisson_1d(5, dtype=torch.float64)])
    solver = PCG(maxiter=6, rtol=1e-8)
    b = randn(14, 2)
    expected = solver(batch.A, b, blocks=batch.info["offsets"])
    solution = _traced(lambda A, b: solver(A, b, blocks=batch.info["offsets"]), batch.A, b)
    torch.testing.assert_close(solution.x, expected.x, rtol=1e-12, atol=1e-12)
    assert (solution.iterations, solution.status) == (expected.iterations, expected.status)


def test_compiled_jacobi_zero_diagonal():
    """Jacobi's diagonal in a graph, for a pattern with nothing cached: not checked for
    zeros there (a read on the host), a zero shows as the status "diverged"."""
    dense = poisson_2d(3, dtype=torch.float64).A.to_dense()
    dense[4, 4] = 0.0
    A = ls.CSRMatrix.from_dense(dense)         # without the entry (4, 4)
    solver = PCG(Jacobi(1.0, learnable=False), maxiter=3)
    solution = _traced(lambda v, b: solver(A.with_values(v), b), A.values, randn(9))
    assert solution.status == "diverged"


@pytest.mark.parametrize("settings, name", [
    (dict(callback=print), "callback"),
    (dict(differentiation="implicit"), "differentiation"),
])
def test_compiled_pcg_refuses(settings, name):
    """What the fixed-iteration path cannot run is refused under torch.compile, naming the
    setting (dynamo reports the ValueError as unsupported)."""
    A = poisson_2d(3, dtype=torch.float64).A
    solver = PCG(maxiter=3, **settings)
    with pytest.raises(torch._dynamo.exc.Unsupported, match=f"{name}: expected"):
        _traced(lambda b: solver(A, b), randn(9))
