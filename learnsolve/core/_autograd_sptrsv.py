"""Autograd formula of the triangular solve ``torch.ops.learnsolve.sptrsv``
(notation: :mod:`._autograd`), registered on import (:mod:`._ops` imports it)."""
from __future__ import annotations

import torch

from . import native as ops
from ._autograd import transpose_arrays

__all__ = ["triangle_mask"]


# --------------------------------------------------------------------------- x = op(T)^{-1} b
# T the lower (upper) triangle of A, op the identity or the transpose. With
# w = op(T)^{-T} g (the opposite solve, same level analysis):
#   op = I:  d b = w,  d T = -(w x^T) ⊙ mask(T)
#   op = T:  d b = w,  d T = -(x w^T) ⊙ mask(T)
# Entries of A outside the triangle (and a unit diagonal) get zero. The fused
# sptrsv_backward does both in one call; when a graph of the backward is
# needed (double backward) the same formulas are built from differentiable ops.

def triangle_mask(crow: torch.Tensor, col: torch.Tensor, lower: bool,
                  unit_diagonal: bool) -> torch.Tensor:
    """Which stored entries belong to the triangle a solve reads (bool, nnz)."""
    row = torch.repeat_interleave(torch.arange(crow.shape[0] - 1, device=crow.device),
                                  crow.diff(), output_size=col.shape[0])
    if unit_diagonal:
        return col < row if lower else col > row
    return col <= row if lower else col >= row


def _sptrsv_setup(ctx, inputs, output):
    (crow, col, values, b, level_ptr, level_rows, diag, lower, unit_diagonal, t_crow, t_col,
     t_perm, transpose) = inputs
    ctx.flags = (lower, unit_diagonal, transpose)
    ctx.save_for_backward(crow, col, values, output, level_ptr, level_rows, diag, t_crow, t_col,
                          t_perm)


def _sptrsv_backward(ctx, grad):
    crow, col, values, x, level_ptr, level_rows, diag, t_crow, t_col, t_perm = ctx.saved_tensors
    lower, unit_diagonal, transpose = ctx.flags
    t_crow, t_col, t_perm = transpose_arrays(crow, col, crow.shape[0] - 1, t_crow, t_col, t_perm)
    need_values, need_b = ctx.needs_input_grad[2], ctx.needs_input_grad[3]
    if not torch.is_grad_enabled():
        grad_values, grad_b = ops.sptrsv_backward(crow, col, values, x, grad, level_ptr,
                                                  level_rows, diag, lower, unit_diagonal, t_crow,
                                                  t_col, t_perm, transpose)
        return (None, None, grad_values if need_values else None, grad_b if need_b else None,
                *(None,) * 9)
    w = ops.sptrsv(crow, col, values, grad, level_ptr, level_rows, diag, lower, unit_diagonal,
                   t_crow, t_col, t_perm, not transpose)
    grad_values = None
    if need_values:
        rows, cols = (x, w) if transpose else (w, x)
        outer = ops.sampled_matmul(crow, col, rows, cols)
        grad_values = torch.where(triangle_mask(crow, col, lower, unit_diagonal), -outer,
                                  torch.zeros_like(outer))
    return None, None, grad_values, w if need_b else None, *(None,) * 9


torch.library.register_autograd("learnsolve::sptrsv", _sptrsv_backward,
                                setup_context=_sptrsv_setup)
