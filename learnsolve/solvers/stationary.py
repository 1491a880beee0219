"""The loop of the stationary iterations (Jacobi, heavy ball): residual history,
stopping rule, status."""
from __future__ import annotations

from typing import Callable

import torch

from .base import (IterativeSolver, Solution, check_system, host_values, residual_norm,
                   status_of)

__all__ = ["iterate", "check_diagonal"]

Step = Callable[[torch.Tensor, torch.Tensor, object], tuple[torch.Tensor, object]]


def check_diagonal(A, name: str = "A") -> torch.Tensor:
    """The diagonal of ``A``, refusing a zero (or missing) entry: LinAlgError naming its row.

    Not checked under :func:`torch.compile`, where the check would read on the host
    (a graph break): a zero there makes ``D^{-1}`` infinite, and a solve with it
    non-finite (PCG's status ``"diverged"``).
    """
    d = A.diagonal()
    if torch.compiler.is_compiling():
        return d
    zero = torch.nonzero(d.detach() == 0)
    if zero.numel():
        raise torch.linalg.LinAlgError(
            f"{name}: expected a nonzero diagonal (Jacobi divides by it), got a zero or missing "
            f"diagonal entry in row {int(zero[0, 0])}")
    return d


def iterate(solver: IterativeSolver, A, b, x0, step: Step) -> Solution:
    """Run ``x, state = step(x, r, state)`` from ``x0`` (default 0) until the
    residual ``r = b - A x`` meets the solver's tolerance, ``maxiter`` is
    reached, or it diverges.

    ``A`` is taken as :func:`~learnsolve.solvers.base.check_system` takes it
    for a solver that needs only products: a matrix (converted once) or a
    matrix-free operator.

    Differentiable by unrolling: autograd records every iteration, so memory
    grows with the iterations run.
    """
    A, b, x0 = check_system(A, b, x0, matrix_free=True)
    x = torch.zeros_like(b) if x0 is None else x0
    r = b - A @ x if x0 is not None else b
    b_norm = residual_norm(b)
    threshold = host_values(solver.threshold(b_norm))
    norms = [residual_norm(r)]
    initial = host_values(norms[0])
    status = status_of(initial, threshold, initial)
    state = None
    iterations = 0
    while status is None and iterations < solver.maxiter:
        x, state = step(x, r, state)
        r = b - A @ x
        iterations += 1
        norms.append(residual_norm(r))
        if solver.callback is not None:
            solver.callback(x)
        status = status_of(host_values(norms[-1]), threshold, initial)
    status = status or "maxiter"
    messages = {"converged": f"converged in {iterations} iterations",
                "maxiter": f"not converged after maxiter = {solver.maxiter} iterations",
                "diverged": f"diverged at iteration {iterations} (residual not finite or 1e8 "
                            f"times the initial one)"}
    return Solution(x, torch.stack(norms), b_norm, iterations, status, messages[status])
