// Autograd kernel of the triangular solve x = op(T)^{-1} b (sptrsv), T the
// lower (upper) triangle of A, op the identity or the transpose: one kernel for
// both devices (the ops are called through the dispatcher). In C++ rather than
// with torch.library.register_autograd so that a call without a graph costs one
// check, and one with a graph no Python.
//
// The gradients (notation of learnsolve/core/_autograd.py), with
// w = op(T)^{-T} g, the opposite solve with the same level analysis:
//   op = I:  d b = w,  d T = -(w x^T) ⊙ mask(T)
//   op = T:  d b = w,  d T = -(x w^T) ⊙ mask(T)
// Entries of A outside the triangle (and a unit diagonal) get zero. Without a
// graph to record, sptrsv_backward computes both in one call (or the solve
// alone where only d b is wanted); with one (create_graph=True, double
// backward) they are built from differentiable ops: sptrsv, sampled_matmul and
// torch's where on the triangle's mask.
#include <ATen/ops/arange.h>
#include <ATen/ops/repeat_interleave.h>
#include <ATen/ops/where.h>
#include <ATen/ops/zeros_like.h>

#include <tuple>

#include "common.h"

namespace learnsolve {
namespace autograd {

using SolveSignature = Tensor(const Tensor&, const Tensor&, const Tensor&, const Tensor&,
                              const Tensor&, const Tensor&, const Tensor&, bool, bool,
                              const OptionalTensor&, const OptionalTensor&,
                              const OptionalTensor&, bool);
using SolveBackwardSignature = std::tuple<Tensor, Tensor>(
    const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&,
    const Tensor&, const Tensor&, bool, bool, const Tensor&, const Tensor&, const Tensor&, bool);

const c10::TypedOperatorHandle<SolveSignature>& sptrsv_op() {
  static const auto op = find_op<SolveSignature>("learnsolve::sptrsv");
  return op;
}

const c10::TypedOperatorHandle<SolveBackwardSignature>& sptrsv_backward_op() {
  static const auto op = find_op<SolveBackwardSignature>("learnsolve::sptrsv_backward");
  return op;
}

// Which stored entries belong to the triangle a solve reads (bool, nnz): the
// Python triangle_mask of learnsolve/core/_autograd_sptrsv.py.
Tensor triangle_mask(const Tensor& crow, const Tensor& col, bool lower, bool unit_diagonal) {
  const Tensor rows = at::arange(crow.sym_size(0) - 1, crow.options());
  const Tensor row = at::repeat_interleave_symint(rows, crow.diff(), std::nullopt,
                                                  col.sym_size(0));
  if (unit_diagonal) return lower ? col.lt(row) : col.gt(row);
  return lower ? col.le(row) : col.ge(row);
}

// Saved tensors: crow, col, values, the solution x (only where values requires
// grad: d values reads it), the level analysis, and t_crow, t_col, t_perm
// (undefined where not given: computed in the backward).
enum SolveSaved { kCrow, kCol, kValues, kX, kLevelPtr, kLevelRows, kDiag, kTCrow, kTCol, kTPerm };

struct SolveFunction : public torch::autograd::Function<SolveFunction> {
  static Tensor forward(AutogradContext* ctx, const Tensor& crow, const Tensor& col,
                        const Tensor& values, const Tensor& b, const Tensor& level_ptr,
                        const Tensor& level_rows, const Tensor& diag, bool lower,
                        bool unit_diagonal, const OptionalTensor& t_crow,
                        const OptionalTensor& t_col, const OptionalTensor& t_perm,
                        bool transpose) {
    Tensor x;
    {
      at::AutoDispatchBelowADInplaceOrView below;
      x = sptrsv_op().call(crow, col, values, b, level_ptr, level_rows, diag, lower,
                           unit_diagonal, t_crow, t_col, t_perm, transpose);
    }
    const Tensor none;
    ctx->save_for_backward({crow, col, values, values.requires_grad() ? x : none, level_ptr,
                            level_rows, diag, t_crow.value_or(none), t_col.value_or(none),
                            t_perm.value_or(none)});
    ctx->saved_data["flags"] = (lower ? 1 : 0) | (unit_diagonal ? 2 : 0) | (transpose ? 4 : 0);
    return x;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const variable_list saved = ctx->get_saved_variables();
    const Tensor& crow = saved[kCrow];
    const Tensor& col = saved[kCol];
    const Tensor& values = saved[kValues];
    const Tensor& x = saved[kX];
    const Tensor& level_ptr = saved[kLevelPtr];
    const Tensor& level_rows = saved[kLevelRows];
    const Tensor& diag = saved[kDiag];
    Tensor t_crow = saved[kTCrow], t_col = saved[kTCol], t_perm = saved[kTPerm];
    const int64_t flags = ctx->saved_data["flags"].toInt();
    const bool lower = (flags & 1) != 0, unit_diagonal = (flags & 2) != 0,
               transpose = (flags & 4) != 0;
    const Tensor& grad = grads[0];
    const bool need_values = ctx->needs_input_grad(kValuesEdge);
    const bool need_b = ctx->needs_input_grad(kOperandEdge);

    const BelowAutogradUnlessRecording dispatch;
    // A is square: as many columns as rows.
    std::tie(t_crow, t_col, t_perm) =
        transpose_pattern(crow, col, crow.sym_size(0) - 1, t_crow, t_col, t_perm);
    Tensor grad_values, grad_b;
    if (need_values && !c10::GradMode::is_enabled()) {
      std::tie(grad_values, grad_b) =
          sptrsv_backward_op().call(crow, col, values, x, grad, level_ptr, level_rows, diag,
                                    lower, unit_diagonal, t_crow, t_col, t_perm, transpose);
    } else {
      const Tensor w = sptrsv_op().call(crow, col, values, grad, level_ptr, level_rows, diag,
                                        lower, unit_diagonal, t_crow, t_col, t_perm, !transpose);
      if (need_values) {
        const Tensor outer = transpose ? sampled_matmul_op().call(crow, col, x, w, std::nullopt,
                                                                  std::nullopt, std::nullopt)
                                       : sampled_matmul_op().call(crow, col, w, x, std::nullopt,
                                                                  std::nullopt, std::nullopt);
        grad_values = at::where(triangle_mask(crow, col, lower, unit_diagonal), outer.neg(),
                                at::zeros_like(outer));
      }
      grad_b = w;
    }
    // One per argument of forward: crow, col, values, b, the analysis (3), the
    // flags (2), the transpose arrays (3), transpose.
    variable_list result(13);
    if (need_values) result[2] = grad_values;
    if (need_b) result[3] = grad_b;
    return result;
  }
};

// The Autograd kernel: without a graph to record, straight to the device
// kernel, else through the Function, which records the node.
Tensor sptrsv_autograd(c10::DispatchKeySet keys, const Tensor& crow, const Tensor& col,
                       const Tensor& values, const Tensor& b, const Tensor& level_ptr,
                       const Tensor& level_rows, const Tensor& diag, bool lower,
                       bool unit_diagonal, const OptionalTensor& t_crow,
                       const OptionalTensor& t_col, const OptionalTensor& t_perm,
                       bool transpose) {
  if (nothing_to_record(values, b)) {
    at::AutoDispatchBelowADInplaceOrView below;
    return sptrsv_op().redispatch(keys & c10::after_ADInplaceOrView_keyset, crow, col, values, b,
                                  level_ptr, level_rows, diag, lower, unit_diagonal, t_crow,
                                  t_col, t_perm, transpose);
  }
  return SolveFunction::apply(crow, col, values, b, level_ptr, level_rows, diag, lower,
                              unit_diagonal, t_crow, t_col, t_perm, transpose);
}

TORCH_LIBRARY_IMPL(learnsolve, Autograd, m) { m.impl("sptrsv", TORCH_FN(sptrsv_autograd)); }

}  // namespace autograd
}  // namespace learnsolve
