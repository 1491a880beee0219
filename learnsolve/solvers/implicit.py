"""Implicit (adjoint) differentiation of an iterative solve: PCG's (A symmetric, the
adjoint solved with A and M) and GMRES's (the adjoint solved with A^T and M^T)."""
from __future__ import annotations

import dataclasses
import warnings

import torch
from torch import nn
from torch.autograd.function import once_differentiable

from ..core.arith import sampled_matmul
from ..core.csr import CSRMatrix
from .base import Solution

__all__ = ["implicit_solve", "check_implicit", "is_trainable"]


def is_trainable(M) -> bool:
    """Whether a preconditioner has values that want a gradient."""
    if isinstance(M, nn.Module):
        return any(p.requires_grad for p in M.parameters())
    return isinstance(M, (CSRMatrix, torch.Tensor)) and M.requires_grad


def check_implicit(M, A) -> None:
    """ValueError where implicit differentiation would silently give no gradient to
    what wants one: a trainable preconditioner, or a matrix-free ``A`` (not a
    CSRMatrix) whose tensor requires grad."""
    if not torch.is_grad_enabled():
        return
    if is_trainable(M):
        raise ValueError("M: implicit differentiation gives no gradient to the "
                         "preconditioner, whose parameters require grad; use "
                         "differentiation='unrolled' or 'checkpoint' to train it")
    if not isinstance(A, CSRMatrix) and A.requires_grad:
        raise ValueError("A: implicit differentiation gives no gradient to a matrix-free "
                         "A, whose tensor requires grad; use differentiation='unrolled' or "
                         "'checkpoint', or give A as a CSRMatrix")


def implicit_solve(A, b: torch.Tensor, x0: torch.Tensor | None, run, adjoint) -> Solution:
    """``run.solve(b, x0)``, differentiated implicitly in ``A``'s values and ``b``.

    ``A`` is the system's matrix as the caller's graph has it (a CSRMatrix,
    whose values get the gradient, or a matrix-free operator, which gets
    none). ``run`` is the forward solve, run without a graph; ``adjoint``
    solves ``A^T λ = grad_x`` in the backward (``adjoint.solve(grad_x,
    None)``). Memory: ``x`` and the adjoint solve's vectors, whatever the
    number of iterations. The returned Solution's ``x`` is differentiable;
    its residual history is not.
    """
    out: dict = {}
    values = A.values if isinstance(A, CSRMatrix) else None
    matrix = A.detach() if isinstance(A, CSRMatrix) else None
    x = _ImplicitSolve.apply(values, b, None if x0 is None else x0.detach(), run, adjoint,
                             matrix, out)
    return dataclasses.replace(out["solution"], x=x)


class _ImplicitSolve(torch.autograd.Function):
    """``x = A^{-1} b`` solved without a graph; the backward is one adjoint solve.

    Adjoint derivation (lineax's, for a symmetric A). Differentiating
    ``A x = b`` gives ``dA x + A dx = db``, so ``dx = A^{-1} (db - dA x)``.
    For a loss L with ``g = dL/dx``: ``dL = g^T A^{-1} (db - dA x)
    = λ^T db - λ^T dA x`` with ``A^T λ = g``. Hence ``dL/db = λ`` and
    ``dL/da_ij = -λ_i x_j`` for each stored entry: ``-(λ x^T) ⊙ mask(A)``
    (summed over the columns of a block). For a symmetric A, ``A^T λ = g``
    is ``A λ = g``, solved by the same method (PCG: with the same
    preconditioner, SPD for A as it is for A^T); for GMRES, with ``A^T`` and
    ``M^T``. x0 does not change the solution, so it gets no gradient; nor
    does the preconditioner.
    """

    @staticmethod
    def forward(ctx, values, b, x0, run, adjoint, matrix, out: dict):
        solution = run.solve(b, x0)
        out["solution"] = solution
        ctx.adjoint, ctx.matrix = adjoint, matrix
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
            grad_values = -sampled_matmul(ctx.matrix, lam, x).values
        return (grad_values, lam if ctx.needs_input_grad[1] else None, None, None, None, None,
                None)
