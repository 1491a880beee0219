"""Implicit (adjoint) differentiation of an iterative solve of a symmetric system."""
from __future__ import annotations

import dataclasses
import warnings

import torch
from torch.autograd.function import once_differentiable

from ..core.arith import sampled_matmul
from .base import Solution

__all__ = ["implicit_solve"]


def implicit_solve(values: torch.Tensor, b: torch.Tensor, x0: torch.Tensor | None, run,
                   adjoint) -> Solution:
    """``run.solve(b, x0)``, differentiated implicitly in ``values`` (A's) and ``b``.

    ``run`` and ``adjoint`` solve with the same symmetric matrix ``A``
    (``adjoint.A``, detached; ``values`` are its values as the caller's graph
    has them): ``run`` is the forward solve, run without a graph; ``adjoint``
    solves ``A λ = grad_x`` in the backward. Memory: ``x`` and the adjoint
    solve's vectors, whatever the number of iterations. The returned
    Solution's ``x`` is differentiable; its residual history is not.
    """
    out: dict = {}
    x = _ImplicitSolve.apply(values, b, None if x0 is None else x0.detach(), run, adjoint, out)
    return dataclasses.replace(out["solution"], x=x)


class _ImplicitSolve(torch.autograd.Function):
    """``x = A^{-1} b`` solved without a graph; the backward is one adjoint solve.

    Adjoint derivation (lineax's, for a symmetric A). Differentiating
    ``A x = b`` gives ``dA x + A dx = db``, so ``dx = A^{-1} (db - dA x)``.
    For a loss L with ``g = dL/dx``: ``dL = g^T A^{-1} (db - dA x)
    = λ^T db - λ^T dA x`` with ``A^T λ = g``. Hence ``dL/db = λ`` and
    ``dL/da_ij = -λ_i x_j`` for each stored entry: ``-(λ x^T) ⊙ mask(A)``
    (summed over the columns of a block). A is symmetric, so ``A^T λ = g`` is
    ``A λ = g``, solved by the same method (PCG: with the same preconditioner,
    SPD for A as it is for A^T). x0 does not change the solution, so it gets
    no gradient; nor does the preconditioner.
    """

    @staticmethod
    def forward(ctx, values, b, x0, run, adjoint, out: dict):
        solution = run.solve(b, x0)
        out["solution"] = solution
        ctx.adjoint = adjoint
        ctx.save_for_backward(solution.x)
        return solution.x

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_x):
        x, = ctx.saved_tensors
        adjoint = ctx.adjoint
        solution = adjoint.solve(grad_x.contiguous(), None)
        if not solution.converged:
            warnings.warn(f"implicit differentiation: the adjoint solve A λ = grad_x did "
                          f"not converge, the gradient is inexact: {solution.message}",
                          RuntimeWarning, stacklevel=2)
        lam = solution.x
        grad_values = None
        if ctx.needs_input_grad[0]:
            grad_values = -sampled_matmul(adjoint.A, lam, x).values
        return grad_values, lam if ctx.needs_input_grad[1] else None, None, None, None, None
