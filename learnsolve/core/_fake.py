"""Fake kernels of the native ops ``torch.ops.learnsolve.*``: the shapes of their
outputs from the shapes of their inputs, for ``torch.compile`` and ``opcheck``.

Importing this module registers them (:mod:`._ops` does); the ops and their
typed wrappers are in :mod:`.native`, their gradients in :mod:`._autograd`.
"""
from __future__ import annotations

import torch

from . import native  # the op schemas must exist before their fakes

del native

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


@torch.library.register_fake("learnsolve::cg_step")
def _cg_step_fake(crow, col, values, x, r, p, rz, d, q, x_out, r_out, p_out, dots):
    return None     # writes its outputs in place
