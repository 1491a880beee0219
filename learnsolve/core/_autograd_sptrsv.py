"""The gradient of the triangular solve ``torch.ops.learnsolve.sptrsv``
(notation: :mod:`._autograd`), and :func:`triangle_mask`.

The formulas below are the autograd kernel of ``sptrsv`` in C++
(``cuda/autograd/sptrsv.cpp``), not registered here: a solve without a graph
runs no Python on top of the device kernel, and neither does its backward.
"""
from __future__ import annotations

import torch

__all__ = ["triangle_mask"]


# --------------------------------------------------------------------------- x = op(T)^{-1} b
# T the lower (upper) triangle of A, op the identity or the transpose. With
# w = op(T)^{-T} g (the opposite solve, same level analysis):
#   op = I:  d b = w,  d T = -(w x^T) ⊙ mask(T)
#   op = T:  d b = w,  d T = -(x w^T) ⊙ mask(T)
# Entries of A outside the triangle (and a unit diagonal) get zero. Without a
# graph of the backward the fused sptrsv_backward does both in one call (the
# solve alone where only d b is wanted); when one is needed (double backward)
# the same formulas are built from differentiable ops: sptrsv, sampled_matmul,
# and torch.where on the triangle's mask (the mask of triangle_mask, in C++).

def triangle_mask(crow: torch.Tensor, col: torch.Tensor, lower: bool,
                  unit_diagonal: bool) -> torch.Tensor:
    """Which stored entries belong to the triangle a solve reads (bool, nnz)."""
    row = torch.repeat_interleave(torch.arange(crow.shape[0] - 1, device=crow.device),
                                  crow.diff(), output_size=col.shape[0])
    if unit_diagonal:
        return col < row if lower else col > row
    return col <= row if lower else col >= row
