"""Fake kernels and autograd formulas of the native ops ``torch.ops.learnsolve.*``.

The schemas and the CPU/CUDA kernels live in ``cuda/``; importing this module
loads them (``learnsolve._C``) and attaches what PyTorch needs on top: a fake
kernel per op (shapes for ``torch.compile`` and ``opcheck``) and, for the ops
with floating-point inputs, the vector-Jacobian products of table 1 of the
paper. Every backward formula calls only torch ops and learnsolve ops, so the
backward is itself differentiable (double backward works).

Notation: for a stored entry ``p`` of a pattern, ``r(p)`` is its row and
``c(p)`` its column; ``S(g)`` is the sparse matrix with the pattern and values
``g``. The gradient with respect to a matrix's values always has that matrix's
pattern (paper eq. 13).
"""
from __future__ import annotations

import torch

from .. import _C  # noqa: F401  (loads the kernels and registers the op schemas)

ops = torch.ops.learnsolve

__all__ = ["ops", "transpose_arrays", "triangle_mask"]


def transpose_arrays(crow: torch.Tensor, col: torch.Tensor, ncols: int, t_crow=None, t_col=None,
                     t_perm=None):
    """Return ``(t_crow, t_col, t_perm)`` of the transposed pattern: the given
    ones where the caller has them cached, else computed now."""
    if t_crow is None or t_col is None or t_perm is None:
        return ops.transpose(crow, col, ncols)
    return t_crow, t_col, t_perm


# --------------------------------------------------------------------------- fake kernels

@torch.library.register_fake("learnsolve::spmv")
def _spmv_fake(crow, col, values, x, t_crow=None, t_col=None, t_perm=None, transpose=False):
    rows = t_crow.shape[0] - 1 if transpose else crow.shape[0] - 1
    return x.new_empty(rows)


@torch.library.register_fake("learnsolve::spmm")
def _spmm_fake(crow, col, values, x, t_crow=None, t_col=None, t_perm=None, transpose=False):
    rows = t_crow.shape[0] - 1 if transpose else crow.shape[0] - 1
    return x.new_empty(rows, x.shape[1])


@torch.library.register_fake("learnsolve::spmv_backward")
def _spmv_backward_fake(crow, col, values, x, grad):
    return values.new_empty(col.shape[0]), x.new_empty(x.shape[0])


@torch.library.register_fake("learnsolve::sampled_matmul")
def _sampled_matmul_fake(crow, col, x, y, t_crow=None, t_col=None, t_perm=None):
    return x.new_empty(col.shape[0])


@torch.library.register_fake("learnsolve::transpose")
def _transpose_fake(crow, col, ncols):
    return crow.new_empty(ncols + 1), col.new_empty(col.shape[0]), col.new_empty(col.shape[0])


@torch.library.register_fake("learnsolve::csr_check")
def _csr_check_fake(crow, col, ncols):
    return crow.new_empty(3)


@torch.library.register_fake("learnsolve::gather_scaled")
def _gather_scaled_fake(source, index, alpha=None):
    return source.new_empty(index.shape[0])


@torch.library.register_fake("learnsolve::scatter_add_scaled")
def _scatter_add_scaled_fake(source, index, size, alpha=None):
    return source.new_empty(size)


@torch.library.register_fake("learnsolve::csr_merge")
def _csr_merge_fake(crow_a, col_a, crow_b, col_b, intersect):
    nnz = torch.library.get_ctx().new_dynamic_size()
    return (crow_a.new_empty(crow_a.shape[0]), col_a.new_empty(nnz),
            col_a.new_empty(col_a.shape[0]), col_b.new_empty(col_b.shape[0]))


@torch.library.register_fake("learnsolve::csr_add_values")
def _csr_add_values_fake(values_a, map_a, values_b, map_b, nnz, alpha, beta):
    return values_a.new_empty(nnz)


@torch.library.register_fake("learnsolve::spgemm_symbolic")
def _spgemm_symbolic_fake(crow_a, col_a, crow_b, col_b, ncols):
    nnz = torch.library.get_ctx().new_dynamic_size()
    return crow_a.new_empty(crow_a.shape[0]), col_a.new_empty(nnz)


@torch.library.register_fake("learnsolve::spgemm_numeric")
def _spgemm_numeric_fake(crow_a, col_a, values_a, crow_b, col_b, values_b, crow_c, col_c, ncols):
    return values_a.new_empty(col_c.shape[0])


@torch.library.register_fake("learnsolve::spgemm_grad_b")
def _spgemm_grad_b_fake(crow_a, col_a, values_a, crow_c, col_c, grad_c, crow_b, col_b, ncols):
    return values_a.new_empty(col_b.shape[0])


@torch.library.register_fake("learnsolve::spgemm_masked")
def _spgemm_masked_fake(crow_m, col_m, crow_v, col_v, values_v, crow_w, col_w, values_w, inner):
    return values_v.new_empty(col_m.shape[0])


# --------------------------------------------------------------------------- y = op(A) x
# y = A x:    d values[p] = sum_k V[r(p), k] X[c(p), k] = sampled_matmul(A; V, X)
#             d X = A^T V  (the same op with transpose=True: no copy of A^T)
# y = A^T x:  d values[p] = sum_k X[r(p), k] V[c(p), k] = sampled_matmul(A; X, V)
#             d X = A V

def _product_setup(ctx, inputs, output):
    crow, col, values, x, t_crow, t_col, t_perm, transpose = inputs
    ctx.transpose = transpose
    ctx.save_for_backward(crow, col, values, x, t_crow, t_col, t_perm)


def _product_backward(ctx, grad):
    crow, col, values, x, t_crow, t_col, t_perm = ctx.saved_tensors
    need_values, need_x = ctx.needs_input_grad[2], ctx.needs_input_grad[3]
    if need_values and need_x and grad.dim() == 1 and not ctx.transpose:
        grad_values, grad_x = ops.spmv_backward(crow, col, values, x, grad)
        return None, None, grad_values, grad_x, None, None, None, None
    product = ops.spmv if grad.dim() == 1 else ops.spmm
    grad_values = grad_x = None
    if need_values:
        rows, cols = (x, grad) if ctx.transpose else (grad, x)
        grad_values = ops.sampled_matmul(crow, col, rows, cols)
    if need_x:
        if not ctx.transpose:
            t_crow, t_col, t_perm = transpose_arrays(crow, col, x.shape[0], t_crow, t_col,
                                                     t_perm)
        grad_x = product(crow, col, values, grad, t_crow, t_col, t_perm, not ctx.transpose)
    return None, None, grad_values, grad_x, None, None, None, None


torch.library.register_autograd("learnsolve::spmv", _product_backward,
                                setup_context=_product_setup)
torch.library.register_autograd("learnsolve::spmm", _product_backward,
                                setup_context=_product_setup)


# --------------------------------------------------------------------------- spmv_backward
# (grad_values, grad_x) = (sampled_matmul(A; g, x), A^T g); with incoming (h_v, h_x):
# d g = S(h_v) x + A h_x,  d x = S(h_v)^T g,  d values = sampled_matmul(A; g, h_x)

def _spmv_backward_setup(ctx, inputs, output):
    crow, col, values, x, grad = inputs
    ctx.save_for_backward(crow, col, values, x, grad)


def _spmv_backward_backward(ctx, h_values, h_x):
    crow, col, values, x, grad = ctx.saved_tensors
    d_values = d_x = d_grad = None
    if h_x is not None:
        if ctx.needs_input_grad[2]:
            d_values = ops.sampled_matmul(crow, col, grad, h_x)
        if ctx.needs_input_grad[4]:
            d_grad = ops.spmv(crow, col, values, h_x)
    if h_values is not None:
        if ctx.needs_input_grad[3]:
            transposed = transpose_arrays(crow, col, x.shape[0])
            d_x = ops.spmv(crow, col, h_values, grad, *transposed, True)
        if ctx.needs_input_grad[4]:
            from_values = ops.spmv(crow, col, h_values, x)
            d_grad = from_values if d_grad is None else d_grad + from_values
    return None, None, d_values, d_x, d_grad


torch.library.register_autograd("learnsolve::spmv_backward", _spmv_backward_backward,
                                setup_context=_spmv_backward_setup)


# --------------------------------------------------------------------------- (X Y^T) ⊙ mask(A)
# out[p] = sum_k X[r(p), k] Y[c(p), k]
# d X = S(g) Y,  d Y = S(g)^T X  (transpose=True: no copy of S(g)^T)

def _sampled_setup(ctx, inputs, output):
    crow, col, x, y, t_crow, t_col, t_perm = inputs
    ctx.save_for_backward(crow, col, x, y, t_crow, t_col, t_perm)


def _sampled_backward(ctx, grad):
    crow, col, x, y, t_crow, t_col, t_perm = ctx.saved_tensors
    product = ops.spmv if x.dim() == 1 else ops.spmm
    grad_x = grad_y = None
    if ctx.needs_input_grad[2]:
        grad_x = product(crow, col, grad, y)
    if ctx.needs_input_grad[3]:
        t_crow, t_col, t_perm = transpose_arrays(crow, col, y.shape[0], t_crow, t_col, t_perm)
        grad_y = product(crow, col, grad, x, t_crow, t_col, t_perm, True)
    return None, None, grad_x, grad_y, None, None, None


torch.library.register_autograd("learnsolve::sampled_matmul", _sampled_backward,
                                setup_context=_sampled_setup)


# --------------------------------------------------------------------------- moves of values
# gather:  out = alpha source[index]   d source = scatter(alpha g), d alpha = <g, source[index]>
# scatter: out[index] += alpha source  d source = gather(alpha g),  d alpha = <g[index], source>

def _scale_grad(product: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """The gradient of a scale factor: the sum of its products, as alpha's type."""
    return product.sum().to(alpha)


def _needs(ctx, i: int) -> bool:
    """Whether input i needs a gradient (False for a trailing default not passed)."""
    return i < len(ctx.needs_input_grad) and ctx.needs_input_grad[i]


def _gather_setup(ctx, inputs, output):
    source, index, alpha = inputs
    ctx.size = source.shape[0]
    ctx.save_for_backward(source, index, alpha)


def _gather_backward(ctx, grad):
    source, index, alpha = ctx.saved_tensors
    grad_source = (ops.scatter_add_scaled(grad, index, ctx.size, alpha)
                   if ctx.needs_input_grad[0] else None)
    grad_alpha = (_scale_grad(grad * ops.gather_scaled(source, index), alpha)
                  if _needs(ctx, 2) else None)
    return grad_source, None, grad_alpha


torch.library.register_autograd("learnsolve::gather_scaled", _gather_backward,
                                setup_context=_gather_setup)


def _scatter_setup(ctx, inputs, output):
    source, index, size, alpha = inputs
    ctx.save_for_backward(source, index, alpha)


def _scatter_backward(ctx, grad):
    source, index, alpha = ctx.saved_tensors
    grad_source = ops.gather_scaled(grad, index, alpha) if ctx.needs_input_grad[0] else None
    grad_alpha = (_scale_grad(ops.gather_scaled(grad, index) * source, alpha)
                  if _needs(ctx, 3) else None)
    return grad_source, None, None, grad_alpha


torch.library.register_autograd("learnsolve::scatter_add_scaled", _scatter_backward,
                                setup_context=_scatter_setup)


# --------------------------------------------------------------------------- alpha A + beta B
# d values_a = alpha G[map_a],  d alpha = <G[map_a], values_a>  (and so for B)

def _add_setup(ctx, inputs, output):
    values_a, map_a, values_b, map_b, nnz, alpha, beta = inputs
    ctx.save_for_backward(values_a, map_a, values_b, map_b, alpha, beta)


def _add_backward(ctx, grad):
    values_a, map_a, values_b, map_b, alpha, beta = ctx.saved_tensors
    grads = []
    for values, index, scale, need_values, need_scale in (
            (values_a, map_a, alpha, ctx.needs_input_grad[0], ctx.needs_input_grad[5]),
            (values_b, map_b, beta, ctx.needs_input_grad[2], ctx.needs_input_grad[6])):
        grads.append(ops.gather_scaled(grad, index, scale) if need_values else None)
        grads.append(_scale_grad(ops.gather_scaled(grad, index) * values, scale)
                     if need_scale else None)
    grad_a, grad_alpha, grad_b, grad_beta = grads
    return grad_a, None, grad_b, None, None, grad_alpha, grad_beta


torch.library.register_autograd("learnsolve::csr_add_values", _add_backward,
                                setup_context=_add_setup)


# --------------------------------------------------------------------------- C = A B
# d A = (G B^T) ⊙ mask(A) = spgemm_masked(A; G, B)
# d B = (A^T G) ⊙ mask(B) = spgemm_grad_b(A; G; B)
# Only entries inside the masks are computed; nothing is transposed.

def _spgemm_setup(ctx, inputs, output):
    crow_a, col_a, values_a, crow_b, col_b, values_b, crow_c, col_c, ncols = inputs
    ctx.ncols = ncols
    ctx.save_for_backward(crow_a, col_a, values_a, crow_b, col_b, values_b, crow_c, col_c)


def _spgemm_backward(ctx, grad):
    crow_a, col_a, values_a, crow_b, col_b, values_b, crow_c, col_c = ctx.saved_tensors
    grad_a = grad_b = None
    if ctx.needs_input_grad[2]:
        grad_a = ops.spgemm_masked(crow_a, col_a, crow_c, col_c, grad, crow_b, col_b, values_b,
                                   ctx.ncols)
    if ctx.needs_input_grad[5]:
        grad_b = ops.spgemm_grad_b(crow_a, col_a, values_a, crow_c, col_c, grad, crow_b, col_b,
                                   ctx.ncols)
    return None, None, grad_a, None, None, grad_b, None, None, None


torch.library.register_autograd("learnsolve::spgemm_numeric", _spgemm_backward,
                                setup_context=_spgemm_setup)


# --------------------------------------------------------------------------- (A^T G) ⊙ mask(B)
# out[(k, j)] = sum_i A[i, k] G[i, j], bilinear in A and G; with incoming H on B's pattern:
# d A = (G H^T) ⊙ mask(A) = spgemm_masked(A; G, H)
# d G = (A H) ⊙ mask(C)   = spgemm_masked(C; A, H^T)
# (double backward of SpGEMM only: the transpose of B is computed per call)

def _grad_b_setup(ctx, inputs, output):
    crow_a, col_a, values_a, crow_c, col_c, grad_c, crow_b, col_b, ncols = inputs
    ctx.ncols = ncols
    ctx.save_for_backward(crow_a, col_a, values_a, crow_c, col_c, grad_c, crow_b, col_b)


def _grad_b_backward(ctx, h):
    crow_a, col_a, values_a, crow_c, col_c, grad_c, crow_b, col_b = ctx.saved_tensors
    grad_values_a = grad_grad_c = None
    if ctx.needs_input_grad[2]:
        grad_values_a = ops.spgemm_masked(crow_a, col_a, crow_c, col_c, grad_c, crow_b, col_b, h,
                                          ctx.ncols)
    if ctx.needs_input_grad[5]:
        bt_crow, bt_col, bt_perm = ops.transpose(crow_b, col_b, ctx.ncols)
        grad_grad_c = ops.spgemm_masked(crow_c, col_c, crow_a, col_a, values_a, bt_crow, bt_col,
                                        ops.gather_scaled(h, bt_perm), crow_b.shape[0] - 1)
    return None, None, grad_values_a, None, None, grad_grad_c, None, None, None


torch.library.register_autograd("learnsolve::spgemm_grad_b", _grad_b_backward,
                                setup_context=_grad_b_setup)


# --------------------------------------------------------------------------- (V W^T) ⊙ mask(M)
# out[p] = sum_i V[r(p), i] W[c(p), i]
# d V = (S(g) W) ⊙ mask(V)   = spgemm_masked(V; S(g), W^T)
# d W = (S(g)^T V) ⊙ mask(W) = spgemm_masked(W; S(g)^T, V^T)
# (double backward of SpGEMM only: the transposes here are computed per call)

def _masked_setup(ctx, inputs, output):
    crow_m, col_m, crow_v, col_v, values_v, crow_w, col_w, values_w, inner = inputs
    ctx.inner = inner
    ctx.save_for_backward(crow_m, col_m, crow_v, col_v, values_v, crow_w, col_w, values_w)


def _masked_backward(ctx, grad):
    crow_m, col_m, crow_v, col_v, values_v, crow_w, col_w, values_w = ctx.saved_tensors
    inner = ctx.inner
    nrows_m = crow_m.shape[0] - 1
    ncols_m = crow_w.shape[0] - 1
    grad_v = grad_w = None
    if ctx.needs_input_grad[4]:
        wt_crow, wt_col, wt_perm = ops.transpose(crow_w, col_w, inner)
        grad_v = ops.spgemm_masked(crow_v, col_v, crow_m, col_m, grad, wt_crow, wt_col,
                                   ops.gather_scaled(values_w, wt_perm), ncols_m)
    if ctx.needs_input_grad[7]:
        mt_crow, mt_col, mt_perm = ops.transpose(crow_m, col_m, ncols_m)
        vt_crow, vt_col, vt_perm = ops.transpose(crow_v, col_v, inner)
        grad_w = ops.spgemm_masked(crow_w, col_w, mt_crow, mt_col,
                                   ops.gather_scaled(grad, mt_perm), vt_crow, vt_col,
                                   ops.gather_scaled(values_v, vt_perm), nrows_m)
    return None, None, None, None, grad_v, None, None, grad_w, None


torch.library.register_autograd("learnsolve::spgemm_masked", _masked_backward,
                                setup_context=_masked_setup)


# --------------------------------------------------------------------------- x = op(T)^{-1} b
# T the lower (upper) triangle of A, op the identity or the transpose. With
# w = op(T)^{-T} g (the opposite solve, same level analysis):
#   op = I:  d b = w,  d T = -(w x^T) ⊙ mask(T)
#   op = T:  d b = w,  d T = -(x w^T) ⊙ mask(T)
# Entries of A outside the triangle (and a unit diagonal) get zero. The fused
# sptrsv_backward does both in one call; when a graph of the backward is
# needed (double backward) the same formulas are built from differentiable ops.

@torch.library.register_fake("learnsolve::sptrsv_analysis")
def _sptrsv_analysis_fake(crow, col, lower):
    level_ptr_size = torch.library.get_ctx().new_dynamic_size(min=1)  # levels + 1
    n = crow.shape[0] - 1
    return crow.new_empty(level_ptr_size), crow.new_empty(n), crow.new_empty(n)


@torch.library.register_fake("learnsolve::sptrsv")
def _sptrsv_fake(crow, col, values, b, level_ptr, level_rows, diag, lower, unit_diagonal,
                 t_crow=None, t_col=None, t_perm=None, transpose=False):
    return torch.empty_like(b)


@torch.library.register_fake("learnsolve::sptrsv_backward")
def _sptrsv_backward_fake(crow, col, values, x, grad, level_ptr, level_rows, diag, lower,
                          unit_diagonal, t_crow, t_col, t_perm, transpose):
    return values.new_empty(col.shape[0]), torch.empty_like(grad)


@torch.library.register_fake("learnsolve::ic0")
def _ic0_fake(crow, col, values):
    return values.new_empty(col.shape[0])


@torch.library.register_fake("learnsolve::ilu")
def _ilu_fake(crow, col, values):
    return values.new_empty(col.shape[0])


@torch.library.register_fake("learnsolve::iluk_symbolic")
def _iluk_symbolic_fake(crow, col, level):
    nnz = torch.library.get_ctx().new_dynamic_size()
    return crow.new_empty(crow.shape[0]), col.new_empty(nnz)


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
