"""Typed wrappers of the native ops ``torch.ops.learnsolve.*``, one function per op.

Imported as ``ops`` (``from learnsolve.core._ops import ops``): ``ops.spmv(...)``
is the op ``torch.ops.learnsolve.spmv`` with its schema's parameters, names and
defaults, and nothing else (no checks: they are called in hot loops). Nothing
outside ``learnsolve.core`` calls ``torch.ops.learnsolve`` directly. The schemas
and the CPU/CUDA kernels live in ``cuda/registration.cpp``; importing this
module loads them. Their fake kernels are in :mod:`._fake`, their gradients in
:mod:`._autograd` (imported by :mod:`._ops`; which ops have their autograd in C++,
``cuda/autograd/``, it says).
"""
from __future__ import annotations

import torch

from .. import _C  # loads the kernels and registers the op schemas

del _C

_lib = torch.ops.learnsolve

__all__ = ["cg_step", "csr_add_values", "csr_check", "csr_merge", "gather_scaled", "ic0", "ilu",
           "iluk_symbolic", "sampled_matmul", "scatter_add_scaled", "spgemm_grad_b",
           "spgemm_masked", "spgemm_numeric", "spgemm_symbolic", "spmm", "spmv",
           "spmv_backward", "sptrsv", "sptrsv_analysis", "sptrsv_backward", "transpose"]

Pair = tuple[torch.Tensor, torch.Tensor]
Triple = tuple[torch.Tensor, torch.Tensor, torch.Tensor]
Quad = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]


# --------------------------------------------------------------------------- products

def spmv(crow: torch.Tensor, col: torch.Tensor, values: torch.Tensor, x: torch.Tensor,
         t_crow: torch.Tensor | None = None, t_col: torch.Tensor | None = None,
         t_perm: torch.Tensor | None = None, transpose: bool = False) -> torch.Tensor:
    """``A x`` (``A^T x`` with ``transpose=True``, through the transpose pattern)."""
    if t_crow is None and not transpose:    # the schema's defaults: 0.3 us less to parse
        return _lib.spmv(crow, col, values, x)
    return _lib.spmv(crow, col, values, x, t_crow, t_col, t_perm, transpose)


def spmm(crow: torch.Tensor, col: torch.Tensor, values: torch.Tensor, x: torch.Tensor,
         t_crow: torch.Tensor | None = None, t_col: torch.Tensor | None = None,
         t_perm: torch.Tensor | None = None, transpose: bool = False) -> torch.Tensor:
    """``A X`` for a dense ``X`` (``A^T X`` with ``transpose=True``)."""
    if t_crow is None and not transpose:
        return _lib.spmm(crow, col, values, x)
    return _lib.spmm(crow, col, values, x, t_crow, t_col, t_perm, transpose)


def spmv_backward(crow: torch.Tensor, col: torch.Tensor, values: torch.Tensor, x: torch.Tensor,
                  grad: torch.Tensor) -> Pair:
    """Both gradients of ``A x`` in one pass: ``((g x^T) ⊙ mask(A)`` as values, ``A^T g)``."""
    return _lib.spmv_backward(crow, col, values, x, grad)


def sampled_matmul(crow: torch.Tensor, col: torch.Tensor, x: torch.Tensor, y: torch.Tensor,
                   t_crow: torch.Tensor | None = None, t_col: torch.Tensor | None = None,
                   t_perm: torch.Tensor | None = None) -> torch.Tensor:
    """``(X Y^T) ⊙ mask(A)``, as the values of ``A``'s pattern."""
    return _lib.sampled_matmul(crow, col, x, y, t_crow, t_col, t_perm)


# --------------------------------------------------------------------------- patterns and values

def transpose(crow: torch.Tensor, col: torch.Tensor, ncols: int) -> Triple:
    """``(t_crow, t_col, t_perm)``: the pattern of ``A^T``, ``values(A^T) = values(A)[t_perm]``."""
    return _lib.transpose(crow, col, ncols)


def gather_scaled(source: torch.Tensor, index: torch.Tensor,
                  alpha: torch.Tensor | None = None) -> torch.Tensor:
    """``alpha * source[index]`` (``alpha`` a one-element tensor, None for 1)."""
    return _lib.gather_scaled(source, index, alpha)


def scatter_add_scaled(source: torch.Tensor, index: torch.Tensor, size: int,
                       alpha: torch.Tensor | None = None) -> torch.Tensor:
    """``out[index[p]] += alpha * source[p]`` into ``size`` zeros."""
    return _lib.scatter_add_scaled(source, index, size, alpha)


def csr_merge(crow_a: torch.Tensor, col_a: torch.Tensor, crow_b: torch.Tensor,
              col_b: torch.Tensor, intersect: bool) -> Quad:
    """``(crow, col, map_a, map_b)`` of the union (or intersection) of two patterns."""
    return _lib.csr_merge(crow_a, col_a, crow_b, col_b, intersect)


def csr_add_values(values_a: torch.Tensor, map_a: torch.Tensor, values_b: torch.Tensor,
                   map_b: torch.Tensor, nnz: int, alpha: torch.Tensor,
                   beta: torch.Tensor) -> torch.Tensor:
    """The values of ``alpha A + beta B`` on their union, from ``csr_merge``'s maps."""
    return _lib.csr_add_values(values_a, map_a, values_b, map_b, nnz, alpha, beta)


def csr_check(crow: torch.Tensor, col: torch.Tensor, ncols: int) -> torch.Tensor:
    """int64 ``[bad row pointer, column out of range, column not increasing]``, -1: none."""
    return _lib.csr_check(crow, col, ncols)


# --------------------------------------------------------------------------- C = A B

def spgemm_symbolic(crow_a: torch.Tensor, col_a: torch.Tensor, crow_b: torch.Tensor,
                    col_b: torch.Tensor, ncols: int) -> Pair:
    """``(crow_c, col_c)``: the pattern of ``C = A B``."""
    return _lib.spgemm_symbolic(crow_a, col_a, crow_b, col_b, ncols)


def spgemm_numeric(crow_a: torch.Tensor, col_a: torch.Tensor, values_a: torch.Tensor,
                   crow_b: torch.Tensor, col_b: torch.Tensor, values_b: torch.Tensor,
                   crow_c: torch.Tensor, col_c: torch.Tensor, ncols: int) -> torch.Tensor:
    """The values of ``C = A B`` on its pattern from ``spgemm_symbolic``."""
    return _lib.spgemm_numeric(crow_a, col_a, values_a, crow_b, col_b, values_b, crow_c, col_c,
                               ncols)


def spgemm_grad_b(crow_a: torch.Tensor, col_a: torch.Tensor, values_a: torch.Tensor,
                  crow_c: torch.Tensor, col_c: torch.Tensor, grad_c: torch.Tensor,
                  crow_b: torch.Tensor, col_b: torch.Tensor, ncols: int) -> torch.Tensor:
    """``(A^T G) ⊙ mask(B)`` for ``G`` on the pattern of ``C = A B``: SpGEMM's grad for B."""
    return _lib.spgemm_grad_b(crow_a, col_a, values_a, crow_c, col_c, grad_c, crow_b, col_b,
                              ncols)


def spgemm_masked(crow_m: torch.Tensor, col_m: torch.Tensor, crow_v: torch.Tensor,
                  col_v: torch.Tensor, values_v: torch.Tensor, crow_w: torch.Tensor,
                  col_w: torch.Tensor, values_w: torch.Tensor, inner: int) -> torch.Tensor:
    """``(V W^T) ⊙ mask(M)`` for sparse ``V``, ``W`` with ``inner`` columns."""
    return _lib.spgemm_masked(crow_m, col_m, crow_v, col_v, values_v, crow_w, col_w, values_w,
                              inner)


# --------------------------------------------------------------------------- triangular solves

def sptrsv_analysis(crow: torch.Tensor, col: torch.Tensor, lower: bool) -> Triple:
    """``(level_ptr, level_rows, diag)``: the level analysis of a triangle of a square pattern."""
    return _lib.sptrsv_analysis(crow, col, lower)


def sptrsv(crow: torch.Tensor, col: torch.Tensor, values: torch.Tensor, b: torch.Tensor,
           level_ptr: torch.Tensor, level_rows: torch.Tensor, diag: torch.Tensor, lower: bool,
           unit_diagonal: bool, t_crow: torch.Tensor | None = None,
           t_col: torch.Tensor | None = None, t_perm: torch.Tensor | None = None,
           transpose: bool = False) -> torch.Tensor:
    """``T^{-1} b`` (``T^{-T} b`` with ``transpose=True``), ``T`` the lower/upper triangle."""
    return _lib.sptrsv(crow, col, values, b, level_ptr, level_rows, diag, lower, unit_diagonal,
                       t_crow, t_col, t_perm, transpose)


def sptrsv_backward(crow: torch.Tensor, col: torch.Tensor, values: torch.Tensor,
                    x: torch.Tensor, grad: torch.Tensor, level_ptr: torch.Tensor,
                    level_rows: torch.Tensor, diag: torch.Tensor, lower: bool,
                    unit_diagonal: bool, t_crow: torch.Tensor, t_col: torch.Tensor,
                    t_perm: torch.Tensor, transpose: bool) -> Pair:
    """Both gradients of ``x = sptrsv(...)`` for the incoming ``grad``: ``(values, b)``."""
    return _lib.sptrsv_backward(crow, col, values, x, grad, level_ptr, level_rows, diag, lower,
                                unit_diagonal, t_crow, t_col, t_perm, transpose)


# --------------------------------------------------------------------------- incomplete factors

def ic0(crow: torch.Tensor, col: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """The values of the incomplete Cholesky factor ``L`` on the given lower-triangle pattern."""
    return _lib.ic0(crow, col, values)


def ilu(crow: torch.Tensor, col: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """The values of the incomplete LU factors (unit ``L`` below the diagonal, ``U``) together."""
    return _lib.ilu(crow, col, values)


def iluk_symbolic(crow: torch.Tensor, col: torch.Tensor, level: int) -> Pair:
    """``(crow, col)``: the level-of-fill pattern of ILU(``level``)."""
    return _lib.iluk_symbolic(crow, col, level)


# --------------------------------------------------------------------------- iterations

def cg_step(crow: torch.Tensor, col: torch.Tensor, values: torch.Tensor, x: torch.Tensor,
            r: torch.Tensor, p: torch.Tensor, rz: torch.Tensor, d: torch.Tensor | None,
            q: torch.Tensor | None, x_out: torch.Tensor, r_out: torch.Tensor,
            p_out: torch.Tensor, dots: torch.Tensor) -> None:
    """One PCG iteration on one system (``M r = d ∘ r``, or none where ``d`` is None):
    ``x_out``, ``r_out``, ``p_out`` (each may be its own input) and ``dots = (p^T A p,
    r^T r[, r^T z])`` of the new residual ``r``. ``q``: ``A p`` where it is known."""
    # The overload itself: one call of the lean loop, spared the overload resolution.
    _lib.cg_step.default(crow, col, values, x, r, p, rz, d, q, x_out, r_out, p_out, dots)
