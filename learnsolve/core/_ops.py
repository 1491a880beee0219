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

__all__ = ["ops", "transpose_arrays"]


def transpose_arrays(crow: torch.Tensor, col: torch.Tensor, ncols: int, t_crow=None, t_col=None,
                     t_perm=None):
    """Return ``(t_crow, t_col, t_perm)`` of the transposed pattern: the given
    ones where the caller has them cached, else computed now."""
    if t_crow is None or t_col is None or t_perm is None:
        return ops.transpose(crow, col, ncols)
    return t_crow, t_col, t_perm


def _scatter_back(values_t: torch.Tensor, perm: torch.Tensor) -> torch.Tensor:
    """Values of A from values of A^T, where values(A^T) = values(A)[perm]."""
    return values_t.new_zeros(values_t.shape).index_put((perm,), values_t)


# --------------------------------------------------------------------------- fake kernels

@torch.library.register_fake("learnsolve::spmv")
def _spmv_fake(crow, col, values, x, t_crow=None, t_col=None, t_perm=None):
    return x.new_empty(crow.shape[0] - 1)


@torch.library.register_fake("learnsolve::spmm")
def _spmm_fake(crow, col, values, x, t_crow=None, t_col=None, t_perm=None):
    return x.new_empty(crow.shape[0] - 1, x.shape[1])


@torch.library.register_fake("learnsolve::sampled_matmul")
def _sampled_matmul_fake(crow, col, x, y, t_crow=None, t_col=None, t_perm=None):
    return x.new_empty(col.shape[0])


@torch.library.register_fake("learnsolve::transpose")
def _transpose_fake(crow, col, ncols):
    return crow.new_empty(ncols + 1), col.new_empty(col.shape[0]), col.new_empty(col.shape[0])


@torch.library.register_fake("learnsolve::csr_merge")
def _csr_merge_fake(crow_a, col_a, crow_b, col_b, intersect):
    nnz = torch.library.get_ctx().new_dynamic_size()
    return (crow_a.new_empty(crow_a.shape[0]), col_a.new_empty(nnz),
            col_a.new_empty(col_a.shape[0]), col_b.new_empty(col_b.shape[0]))


@torch.library.register_fake("learnsolve::spgemm_symbolic")
def _spgemm_symbolic_fake(crow_a, col_a, crow_b, col_b, ncols):
    nnz = torch.library.get_ctx().new_dynamic_size()
    return crow_a.new_empty(crow_a.shape[0]), col_a.new_empty(nnz)


@torch.library.register_fake("learnsolve::spgemm_numeric")
def _spgemm_numeric_fake(crow_a, col_a, values_a, crow_b, col_b, values_b, crow_c, col_c, ncols):
    return values_a.new_empty(col_c.shape[0])


@torch.library.register_fake("learnsolve::spgemm_masked")
def _spgemm_masked_fake(crow_m, col_m, crow_v, col_v, values_v, crow_w, col_w, values_w, inner):
    return values_v.new_empty(col_m.shape[0])


# --------------------------------------------------------------------------- y = A x, Y = A X
# d values[p] = sum_k V[r(p), k] X[c(p), k]   ->  sampled_matmul(A, V, X)
# d X        = A^T V                          ->  the same product on the transpose

def _spmx_setup(ctx, inputs, output):
    crow, col, values, x, t_crow, t_col, t_perm = inputs
    ctx.ncols = x.shape[0]
    ctx.save_for_backward(crow, col, values, x, t_crow, t_col, t_perm)


def _spmx_backward(ctx, grad):
    crow, col, values, x, t_crow, t_col, t_perm = ctx.saved_tensors
    grad_values = grad_x = None
    if ctx.needs_input_grad[2]:
        grad_values = ops.sampled_matmul(crow, col, grad, x)
    if ctx.needs_input_grad[3]:
        t_crow, t_col, t_perm = transpose_arrays(crow, col, ctx.ncols, t_crow, t_col, t_perm)
        product = ops.spmv if grad.dim() == 1 else ops.spmm
        grad_x = product(t_crow, t_col, values[t_perm], grad)
    return None, None, grad_values, grad_x, None, None, None


torch.library.register_autograd("learnsolve::spmv", _spmx_backward, setup_context=_spmx_setup)
torch.library.register_autograd("learnsolve::spmm", _spmx_backward, setup_context=_spmx_setup)


# --------------------------------------------------------------------------- (X Y^T) ⊙ mask(A)
# out[p] = sum_k X[r(p), k] Y[c(p), k]
# d X = S(g) Y,  d Y = S(g)^T X

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
        grad_y = product(t_crow, t_col, grad[t_perm], x)
    return None, None, grad_x, grad_y, None, None, None


torch.library.register_autograd("learnsolve::sampled_matmul", _sampled_backward,
                                setup_context=_sampled_setup)


# --------------------------------------------------------------------------- C = A B
# d A = (G B^T) ⊙ mask(A)                      = spgemm_masked(A; G, B)
# d B = (A^T G) ⊙ mask(B) = ((G^T A) ⊙ mask(B^T))^T
#                                              = spgemm_masked(B^T; G^T, A^T), scattered back
# Only entries inside the masks are computed; the transposes are counting
# sorts, O(nnz), beside the O(flops) products.

def _spgemm_setup(ctx, inputs, output):
    crow_a, col_a, values_a, crow_b, col_b, values_b, crow_c, col_c, ncols = inputs
    ctx.ncols = ncols
    ctx.save_for_backward(crow_a, col_a, values_a, crow_b, col_b, values_b, crow_c, col_c)


def _spgemm_backward(ctx, grad):
    crow_a, col_a, values_a, crow_b, col_b, values_b, crow_c, col_c = ctx.saved_tensors
    ncols = ctx.ncols
    inner = crow_b.shape[0] - 1
    grad_a = grad_b = None
    if ctx.needs_input_grad[2]:
        grad_a = ops.spgemm_masked(crow_a, col_a, crow_c, col_c, grad, crow_b, col_b, values_b,
                                   ncols)
    if ctx.needs_input_grad[5]:
        bt_crow, bt_col, bt_perm = ops.transpose(crow_b, col_b, ncols)
        ct_crow, ct_col, ct_perm = ops.transpose(crow_c, col_c, ncols)
        at_crow, at_col, at_perm = ops.transpose(crow_a, col_a, inner)
        grad_bt = ops.spgemm_masked(bt_crow, bt_col, ct_crow, ct_col, grad[ct_perm], at_crow,
                                    at_col, values_a[at_perm], crow_a.shape[0] - 1)
        grad_b = _scatter_back(grad_bt, bt_perm)
    return None, None, grad_a, None, None, grad_b, None, None, None


torch.library.register_autograd("learnsolve::spgemm_numeric", _spgemm_backward,
                                setup_context=_spgemm_setup)


# --------------------------------------------------------------------------- (V W^T) ⊙ mask(M)
# out[p] = sum_i V[r(p), i] W[c(p), i]
# d V = (S(g) W) ⊙ mask(V)   = spgemm_masked(V; S(g), W^T)
# d W = (S(g)^T V) ⊙ mask(W) = spgemm_masked(W; S(g)^T, V^T)

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
                                   values_w[wt_perm], ncols_m)
    if ctx.needs_input_grad[7]:
        mt_crow, mt_col, mt_perm = ops.transpose(crow_m, col_m, ncols_m)
        vt_crow, vt_col, vt_perm = ops.transpose(crow_v, col_v, inner)
        grad_w = ops.spgemm_masked(crow_w, col_w, mt_crow, mt_col, grad[mt_perm], vt_crow, vt_col,
                                   values_v[vt_perm], nrows_m)
    return None, None, None, None, grad_v, None, None, grad_w, None


torch.library.register_autograd("learnsolve::spgemm_masked", _masked_backward,
                                setup_context=_masked_setup)
