"""torch.compile with fullgraph=True: the typed wrappers of the native ops, and CSRMatrix's
operations through Python's operators (``A @ x``, ``x @ A``, ``A @ B``, ``A + B``, ``2 * A``, ...)
and triangular solves, trace into one graph through the fake kernels, forward and backward,
agree with eager, and do not recompile for new values of the same shapes."""
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from torch._dynamo.testing import CompileCounterWithBackend
from torch.fx.experimental.symbolic_shapes import GuardOnDataDependentSymNode

import learnsolve as ls
from cases import m_matrix, randn
from learnsolve.core._ops import ops
from learnsolve.linalg import spsolve_triangular
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


@pytest.mark.xfail(strict=True, raises=(torch._dynamo.exc.Unsupported,
                                       GuardOnDataDependentSymNode),
                   reason="PCG reads on the host, before and at every iteration: the tolerances "
                          "(Tensor.tolist in _Run.solve), p^T A p and r^T M r for breakdown "
                          "(_Run.broke), ||r|| for convergence (_Run.updated), then float() "
                          "for its message (_Run.describe); Jacobi's check_diagonal branches on "
                          "the size of a torch.nonzero")
@pytest.mark.parametrize("preconditioner", [None, "jacobi"])
def test_compiled_pcg_fixed_iterations(preconditioner):
    """A 20-iteration PCG (rtol=0), forward and backward, in one graph, after an eager call
    (the structure it caches). check_spd=False: the check is a host read of its own."""
    torch._dynamo.reset()
    A = ls.problems.poisson_2d(8, dtype=torch.float64).A
    M = None if preconditioner is None else Jacobi(1.0, learnable=False)
    solver = PCG(M, maxiter=20, rtol=0.0, check_spd=False)

    def loss(values, b):
        return solver(A.with_values(values), b).x.square().sum()

    b = randn(A.shape[0])
    expected = _value_and_grads(loss, A.values, b)
    actual = _value_and_grads(torch.compile(loss, backend="aot_eager", fullgraph=True),
                              A.values, b)
    for got, wanted in zip(actual, expected):
        torch.testing.assert_close(got, wanted, rtol=1e-12, atol=1e-12)
