"""PCG's fixed-iteration path (``fixed_iterations=True``, what torch.compile runs), eagerly:
every outcome of the paths that read on the host (converged, some columns frozen, a
breakdown of A or M, a divergence, maxiter, nothing to do) gives the same iterate, history
up to the stop, iterations, status, message and gradients, with no read on the host until
the outcome is asked for. The compiled runs are in test_compile.py."""
import dataclasses
import re

import pytest
import torch

import learnsolve as ls
from cases import randn
from learnsolve.problems import batch_problems, poisson_1d, poisson_2d
from learnsolve.solvers import PCG, Jacobi, pcg_loss
from learnsolve.solvers.base import DeferredSolution

F64 = torch.float64


def _poisson(k=6):
    return poisson_2d(k, dtype=F64).A


def _both(A, b, x0=None, *, blocks=None, **settings):
    """The solve without and with fixed iterations."""
    return (PCG(**settings)(A, b, x0, blocks=blocks),
            PCG(**settings, fixed_iterations=True)(A, b, x0, blocks=blocks))


def _check_same(plain, fixed, maxiter):
    """``fixed`` reports what ``plain`` does: iterate, history to the stop (held after it),
    outcome."""
    assert isinstance(fixed, DeferredSolution) and not isinstance(plain, DeferredSolution)
    assert fixed.residuals.shape[0] == maxiter + 1
    m = plain.iterations
    torch.testing.assert_close(fixed.x, plain.x, rtol=1e-12, atol=1e-12, equal_nan=True)
    torch.testing.assert_close(fixed.residuals[:m + 1], plain.residuals, rtol=1e-12, atol=1e-12,
                               equal_nan=True)
    held = plain.residuals[-1].expand_as(fixed.residuals[m:])
    torch.testing.assert_close(fixed.residuals[m:], held, rtol=1e-12, atol=1e-12,
                               equal_nan=True)
    torch.testing.assert_close(fixed.b_norm, plain.b_norm)
    assert (fixed.iterations, fixed.status) == (plain.iterations, plain.status)
    # The message's text is the same; its numbers (a relative residual) agree as the
    # residuals do, to rounding: at rounding level two orders of the same sums part.
    (text, numbers), (plain_text, plain_numbers) = map(_message_parts, (fixed, plain))
    assert text == plain_text
    torch.testing.assert_close(numbers, plain_numbers, rtol=1e-2, atol=1e-12)


NUMBER = re.compile(r"\d\.\d+e[+-]\d+")


def _message_parts(solution) -> tuple[str, torch.Tensor]:
    """A solution's message with its numbers in scientific notation taken out, and them."""
    message = solution.message
    return NUMBER.sub("#", message), torch.tensor([float(v) for v in NUMBER.findall(message)],
                                                  dtype=F64)


# rtol = 0: few iterations, so that the residual stays well above rounding (past it, the
# iterates of two orders of the same sums part).
@pytest.mark.parametrize("rtol, maxiter, status", [(1e-8, 40, "converged"), (0.0, 8, "maxiter")])
@pytest.mark.parametrize("M", [None, "jacobi"])
def test_fixed_matches_stopping_solve(rtol, maxiter, status, M):
    A = _poisson()
    M = None if M is None else Jacobi(torch.linspace(0.8, 1.2, 36, dtype=F64))
    plain, fixed = _both(A, randn(36), M=M, maxiter=maxiter, rtol=rtol)
    assert plain.status == status
    _check_same(plain, fixed, maxiter)


def test_columns_converge_apart():
    """Columns that converge at different iterations are frozen one by one; x0 given."""
    A = _poisson()
    smooth = A @ torch.ones(36, dtype=F64)          # few eigenvectors: converges early
    b = torch.stack([randn(36), smooth, 1e-3 * randn(36, seed=2)], 1)
    plain, fixed = _both(A, b, 0.1 * randn(36, 3, seed=3), maxiter=50, rtol=1e-9)
    assert plain.status == "converged"
    _check_same(plain, fixed, 50)


def test_blocks():
    """A batch of problems of other sizes, each block of each column a system of its own."""
    batch = batch_problems([poisson_2d(4, dtype=F64), poisson_1d(7, dtype=F64)])
    b = randn(23, 2)
    offsets = batch.info["offsets"]
    plain, fixed = _both(batch.A, b, blocks=offsets, maxiter=30, rtol=1e-10)
    assert plain.status == "converged" and fixed.residuals.shape == (31, 4)
    _check_same(plain, fixed, 30)


def _indefinite():
    """Poisson shifted to have a negative eigenvalue: p^T A p <= 0 comes after a few
    iterations."""
    return _poisson() - 0.5 * ls.CSRMatrix.from_dense(torch.eye(36, dtype=F64))


@pytest.mark.parametrize("case", ["A", "M", "M at start", "A in block"])
def test_breakdown(case):
    if case == "A":     # column 1 breaks down first
        A, M, blocks = _indefinite(), None, None
        b = torch.stack([randn(36), _poisson() @ torch.ones(36, dtype=F64)], 1)
    elif case == "A in block":
        A = ls.CSRMatrix.from_dense(torch.block_diag(_poisson().to_dense(),
                                                     _indefinite().to_dense()))
        b, M, blocks = randn(72, 2), None, [0, 36, 72]
    else:
        omega = torch.ones(36, dtype=F64)
        omega[5:] = -1.0 if case == "M at start" else omega[5:]
        omega[30] = -2.0
        A, b, M, blocks = _poisson(), randn(36), Jacobi(omega, learnable=False), None
    plain, fixed = _both(A, b, blocks=blocks, M=M, maxiter=40, rtol=1e-10, check_spd=False)
    assert plain.status == "breakdown"
    assert ("p^T A p" in plain.message) == case.startswith("A")
    assert plain.iterations > 0 or case == "M at start"
    _check_same(plain, fixed, 40)


def test_diverged():
    """A non-finite entry of A: the first update is not finite, and stays as it was."""
    A = _poisson()
    values = A.values.clone()
    values[3] = float("nan")
    plain, fixed = _both(A.with_values(values), randn(36), maxiter=10, check_spd=False)
    assert plain.status == "diverged" and plain.iterations == 1
    _check_same(plain, fixed, 10)


@pytest.mark.parametrize("case", ["b = 0", "maxiter = 0", "b not finite"])
def test_nothing_to_iterate(case):
    b = randn(36)
    b = {"b = 0": torch.zeros_like(b), "b not finite": b / 0}.get(case, b)
    maxiter = 0 if case == "maxiter = 0" else 5
    plain, fixed = _both(_poisson(), b, maxiter=maxiter)
    assert plain.iterations == 0
    _check_same(plain, fixed, maxiter)


def _gradients(solver, A, b, omega=None):
    """The gradients of a function of x and of the history for A's values, b (and the
    Jacobi weights omega), with the outcome."""
    values = A.values.detach().clone().requires_grad_()
    b = b.detach().clone().requires_grad_()
    solution = solver(A.with_values(values), b)
    m = solution.iterations
    (solution.x.square().sum() + solution.residuals[:m + 1].sum()).backward()
    grads = [values.grad, b.grad] + ([] if omega is None else [omega.grad.clone()])
    return grads, solution.status


@pytest.mark.parametrize("differentiation", ["unrolled", "checkpoint"])
@pytest.mark.parametrize("rtol, maxiter", [(1e-6, 30), (0.0, 8)])
def test_gradients(differentiation, rtol, maxiter):
    """The gradients through the frozen iterations are those of the solve that stops, for
    A's values, b and learned Jacobi weights."""
    A, b = _poisson(), randn(36, 2)
    results = []
    for fixed in (False, True):
        M = Jacobi(torch.linspace(0.8, 1.2, 36, dtype=F64))
        solver = PCG(M, maxiter=maxiter, rtol=rtol, differentiation=differentiation,
                     fixed_iterations=fixed)
        results.append(_gradients(solver, A, b, M.omega))
    (plain, status), (fixed, _) = results
    assert status == ("converged" if rtol else "maxiter")
    for got, wanted in zip(fixed, plain):
        torch.testing.assert_close(got, wanted, rtol=1e-10, atol=1e-12)


def test_pcg_loss():
    """The loss of eq. 42 with fixed iterations, and its gradient, are the same."""
    A, B = _poisson(), randn(36, 3)
    losses = []
    for fixed in (False, True):
        M = Jacobi(torch.linspace(0.8, 1.2, 36, dtype=F64))
        loss = pcg_loss(PCG(M, fixed_iterations=fixed), A, B, iterations=6)
        loss.backward()
        losses.append((loss.detach(), M.omega.grad))
    for got, wanted in zip(*losses):
        torch.testing.assert_close(got, wanted, rtol=1e-12, atol=1e-14)


def test_no_graph():
    """Where nothing requires grad the fixed path runs too (the same iterate)."""
    A, b = _poisson(), randn(36)
    with torch.no_grad():
        plain, fixed = _both(A, b, maxiter=40, rtol=1e-8)
    _check_same(plain, fixed, 40)


def test_outcome_read_once_when_asked():
    """The outcome stays a tensor until read; dataclasses.replace makes a Solution with it
    known."""
    A, b = _poisson(), randn(36)
    solution = PCG(maxiter=40, rtol=1e-8, fixed_iterations=True)(A, b)
    assert solution._outcome is None and solution.summary.dtype == torch.int64
    assert solution.converged and solution._outcome is not None
    replaced = dataclasses.replace(solution, x=solution.x * 2)
    assert (replaced.iterations, replaced.status, replaced.summary) == \
        (solution.iterations, "converged", None)
    assert repr(replaced) == repr(solution)


@pytest.mark.parametrize("settings, error, name", [
    (dict(differentiation="implicit"), ValueError, "differentiation"),
    (dict(callback=print), ValueError, "callback"),
    (dict(fixed_iterations=1), TypeError, "fixed_iterations"),
])
def test_refused(settings, error, name):
    settings = {"fixed_iterations": True, **settings}
    with pytest.raises(error, match=f"^{name}: "):
        PCG(**settings)


def test_repr():
    assert "fixed_iterations=True" in repr(PCG(maxiter=3, fixed_iterations=True))
    assert "fixed_iterations" not in repr(PCG(maxiter=3))
