"""Autograd formulas of the native ops ``torch.ops.learnsolve.*``.

For the ops with floating-point inputs: the vector-Jacobian products of table 1
of the paper, registered with ``torch.library.register_autograd`` on import
(:mod:`._ops` imports this module), for the ops only a double backward calls
(``spmv_backward``, ``spgemm_masked``, ``spgemm_grad_b``). The ops a forward
calls have their autograd kernels in C++ (``cuda/autograd/``, hand-written
backward nodes: no Python on their calls): the products ``spmv``, ``spmm``
and ``sampled_matmul``, the triangular solve ``sptrsv``, the sum
``csr_add_values``, the SpGEMM ``spgemm_numeric`` and the moves of values
``gather_scaled`` and ``scatter_add_scaled``; their formulas are written below
and in :mod:`._autograd_sptrsv`. Every backward formula calls only torch ops
and learnsolve ops (through the typed wrappers of :mod:`.native`, or the
dispatcher in C++), so the backward is itself differentiable (double backward
works).

Notation: for a stored entry ``p`` of a pattern, ``r(p)`` is its row and
``c(p)`` its column; ``S(g)`` is the sparse matrix with the pattern and values
``g``. The gradient with respect to a matrix's values always has that matrix's
pattern (paper eq. 13).
"""
from __future__ import annotations

import torch

from . import native as ops

__all__ = ["transpose_arrays"]


def transpose_arrays(crow: torch.Tensor, col: torch.Tensor, ncols: int, t_crow=None, t_col=None,
                     t_perm=None):
    """Return ``(t_crow, t_col, t_perm)`` of the transposed pattern: the given
    ones where the caller has them cached, else computed now."""
    if t_crow is None or t_col is None or t_perm is None:
        return ops.transpose(crow, col, ncols)
    return t_crow, t_col, t_perm


# --------------------------------------------------------------------------- y = op(A) x
# y = A x:    d values[p] = sum_k V[r(p), k] X[c(p), k] = sampled_matmul(A; V, X)
#             d X = A^T V  (the same op with transpose=True: no copy of A^T)
# y = A^T x:  d values[p] = sum_k X[r(p), k] V[c(p), k] = sampled_matmul(A; X, V)
#             d X = A V
# (spmv_backward for both at once where y = A x). They are the autograd kernel of
# spmv and spmm in C++, cuda/autograd/product.cpp, not registered here: a call
# without a graph runs no Python on top of the device kernel, and neither does
# the backward.

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

# The autograd kernel of sampled_matmul in C++, cuda/autograd/sampled_matmul.cpp,
# not registered here.


# --------------------------------------------------------------------------- moves of values
# gather:  out = alpha source[index]   d source = scatter(alpha g), d alpha = <g, source[index]>
# scatter: out[index] += alpha source  d source = gather(alpha g),  d alpha = <g[index], source>

# Their autograd kernels in C++, cuda/autograd/moves.cpp, not registered here:
# an A.T or an A * B without a graph runs no Python on top of the device kernels.


# --------------------------------------------------------------------------- alpha A + beta B
# d values_a = alpha G[map_a],  d alpha = <G[map_a], values_a>  (and so for B)
# The autograd kernel of csr_add_values in C++, cuda/autograd/add.cpp, not
# registered here: no Python on a call, nor in its backward.

# --------------------------------------------------------------------------- C = A B
# d A = (G B^T) ⊙ mask(A) = spgemm_masked(A; G, B)
# d B = (A^T G) ⊙ mask(B) = spgemm_grad_b(A; G; B)
# Only entries inside the masks are computed; nothing is transposed. The autograd
# kernel of spgemm_numeric in C++, cuda/autograd/spgemm.cpp, not registered here.

# --------------------------------------------------------------------------- (A^T G) ⊙ mask(B)
# out[(k, j)] = sum_i A[i, k] G[i, j], bilinear in A and G; with incoming H on B's pattern:
# d A = (G H^T) ⊙ mask(A) = spgemm_masked(A; G, H)
# d G = (A H) ⊙ mask(C)   = spgemm_masked(C; A, H^T)
# (double backward of SpGEMM only: the transpose of B is computed per call)

def _grad_b_setup(ctx, inputs, output):
    *tensors, ncols = inputs
    ctx.ncols = ncols
    ctx.save_for_backward(*tensors)


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


# ----------------------------------------------------------------- ops without a gradient
# ic0 and ilu compute a factorisation's values, and sptrsv_backward is the fused
# backward of sptrsv, called only without a graph (a double backward builds the same
# formulas from differentiable ops). None has a formula. Called on inputs that require
# grad, their outputs get this node, whose backward refuses, instead of the autograd
# fallback's, which would pass a gradient through as if the op were the identity.

def _refuse(name: str, why: str):
    def backward(ctx, *grads):
        raise RuntimeError(f"learnsolve::{name} is not differentiable: {why}")
    return backward


for _name, _why in (
        ("ic0", "the values of an incomplete factorisation have no gradient here; learn them "
                "as parameters (IncompleteFactor) instead"),
        ("ilu", "the values of an incomplete factorisation have no gradient here; learn them "
                "as parameters (IncompleteFactor) instead"),
        ("sptrsv_backward", "it is sptrsv's backward without a graph; a double backward goes "
                            "through sptrsv's differentiable formulas")):
    torch.library.register_autograd(f"learnsolve::{_name}", _refuse(_name, _why))
del _name, _why
