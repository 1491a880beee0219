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

#include "node.h"

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

// The backward of x = op(T)^{-1} b (node.h). Saved: crow, col, values, the
// solution x (only where values requires grad: d values reads it), the level
// analysis, and t_crow, t_col, t_perm (undefined where not given: computed in
// the backward). Flags: lower, unit_diagonal, transpose. Edges: values, b.
enum SolveSaved { kCrow, kCol, kValues, kX, kLevelPtr, kLevelRows, kDiag, kTCrow, kTCol, kTPerm };

struct SolveBackward {
  static constexpr const char* kName = "learnsolve::SptrsvBackward";
  static constexpr size_t kSaved = 10, kEdges = 2;

  static variable_list backward(const variable_list& grads, const std::vector<bool>& need,
                                const std::vector<Tensor>& saved,
                                const std::vector<bool>& flags,
                                const std::vector<c10::SymInt>&) {
    const Tensor& grad = grads[0];
    if (!grad.defined()) return {Tensor(), Tensor()};
    const Tensor& crow = saved[kCrow];
    const Tensor& col = saved[kCol];
    const Tensor& values = saved[kValues];
    const Tensor& x = saved[kX];
    const Tensor& level_ptr = saved[kLevelPtr];
    const Tensor& level_rows = saved[kLevelRows];
    const Tensor& diag = saved[kDiag];
    const bool lower = flags[0], unit_diagonal = flags[1], transpose = flags[2];
    const bool need_values = need[0], need_b = need[1];

    const BelowAutogradUnlessRecording dispatch;
    // A is square: as many columns as rows.
    const auto [t_crow, t_col, t_perm] = transpose_pattern(
        crow, col, crow.sym_size(0) - 1, saved[kTCrow], saved[kTCol], saved[kTPerm]);
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
    return {need_values ? grad_values : Tensor(), need_b ? grad_b : Tensor()};
  }
};

// The Autograd kernel: the device kernel, and, with a graph to record, a
// SolveBackward node on x.
Tensor sptrsv_autograd(c10::DispatchKeySet keys, const Tensor& crow, const Tensor& col,
                       const Tensor& values, const Tensor& b, const Tensor& level_ptr,
                       const Tensor& level_rows, const Tensor& diag, bool lower,
                       bool unit_diagonal, const OptionalTensor& t_crow,
                       const OptionalTensor& t_col, const OptionalTensor& t_perm,
                       bool transpose) {
  const Tensor x = device_kernel(sptrsv_op(), keys, crow, col, values, b, level_ptr, level_rows,
                                 diag, lower, unit_diagonal, t_crow, t_col, t_perm, transpose);
  if (nothing_to_record(values, b)) return x;
  refuse_tangents("sptrsv", values, b);
  const Tensor none;
  record<SolveBackward>(x,
                        {crow, col, values, values.requires_grad() ? x : none, level_ptr,
                         level_rows, diag, t_crow.value_or(none), t_col.value_or(none),
                         t_perm.value_or(none)},
                        {lower, unit_diagonal, transpose}, {}, values, b);
  return x;
}

TORCH_LIBRARY_IMPL(learnsolve, Autograd, m) { m.impl("sptrsv", TORCH_FN(sptrsv_autograd)); }

}  // namespace autograd
}  // namespace learnsolve
