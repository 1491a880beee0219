"""Sparse solves: triangular, direct (SuperLU), and many small systems at once.

All are differentiable in the matrix values and the right-hand sides, with
gradients that keep the matrix's pattern; a singular matrix raises
``torch.linalg.LinAlgError``.
"""
from .batched import BatchedLU, splu_batched
from .direct import SparseLU, splu, spsolve
from .triangular import spsolve_triangular

__all__ = ["BatchedLU", "SparseLU", "splu", "splu_batched", "spsolve", "spsolve_triangular"]
