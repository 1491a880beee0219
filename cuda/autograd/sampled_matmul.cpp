// Autograd kernel of the sampled product values = (X Y^T) ⊙ mask(A)
// (sampled_matmul): one kernel for both devices (the ops are called through
// the dispatcher). In C++ so that a call without a graph goes straight to the
// device kernel, and one with a graph records a node with no Python.
//
// The gradients (notation of learnsolve/core/_autograd.py), S(g) the sparse
// matrix of A's pattern with the incoming values g:
//   d X = S(g) Y        (spmv for vectors, spmm for matrices)
//   d Y = S(g)^T X      (the same op with transpose=True: no copy of S(g)^T)
// Only those asked for are computed; the backward's ops are differentiable
// (double backward).
#include "node.h"

namespace learnsolve {
namespace autograd {
namespace {

// Saved: crow, col, x (only where y requires grad: d y reads it), y (only
// where x requires grad), t_crow, t_col, t_perm (only where y requires grad
// and they were given). Sizes: the columns of A (rows of y), for A's
// transpose. Edges: x, y.
enum SampledSaved { kCrow, kCol, kX, kY, kTCrow, kTCol, kTPerm };

struct SampledBackward {
  static constexpr const char* kName = "learnsolve::SampledMatmulBackward";
  static constexpr size_t kSaved = 7, kEdges = 2;

  template <bool kMatrix>
  static variable_list gradients(const Tensor& grad, const std::vector<bool>& need,
                                 const std::vector<Tensor>& saved, const c10::SymInt& ncols) {
    const Tensor& crow = saved[kCrow];
    const Tensor& col = saved[kCol];
    Tensor grad_x, grad_y;
    if (need[0]) {
      grad_x = product_op<kMatrix>().call(crow, col, grad, saved[kY], std::nullopt,
                                          std::nullopt, std::nullopt, false);
    }
    if (need[1]) {
      const auto [t_crow, t_col, t_perm] = transpose_pattern(
          crow, col, ncols, saved[kTCrow], saved[kTCol], saved[kTPerm]);
      grad_y = product_op<kMatrix>().call(crow, col, grad, saved[kX], t_crow, t_col, t_perm,
                                          true);
    }
    return {grad_x, grad_y};
  }

  static variable_list backward(const variable_list& grads, const std::vector<bool>& need,
                                const std::vector<Tensor>& saved, const std::vector<bool>& flags,
                                const std::vector<c10::SymInt>& sizes) {
    const Tensor& grad = grads[0];
    if (!grad.defined()) return {Tensor(), Tensor()};
    const BelowAutogradUnlessRecording dispatch;
    const bool matrix = flags[0];
    return matrix ? gradients<true>(grad, need, saved, sizes[0])
                  : gradients<false>(grad, need, saved, sizes[0]);
  }
};

Tensor sampled_matmul_autograd(c10::DispatchKeySet keys, const Tensor& crow, const Tensor& col,
                               const Tensor& x, const Tensor& y, const OptionalTensor& t_crow,
                               const OptionalTensor& t_col, const OptionalTensor& t_perm) {
  const Tensor values =
      device_kernel(sampled_matmul_op(), keys, crow, col, x, y, t_crow, t_col, t_perm);
  if (nothing_to_record(x, y)) return values;
  refuse_tangents("sampled_matmul", x, y);
  const bool for_y = y.requires_grad();
  const bool given = t_crow.has_value() && t_col.has_value() && t_perm.has_value();
  const Tensor none;
  record<SampledBackward>(
      values,
      {crow, col, for_y ? x : none, x.requires_grad() ? y : none,
       for_y && given ? *t_crow : none, for_y && given ? *t_col : none,
       for_y && given ? *t_perm : none},
      {x.dim() == 2}, {y.sym_size(0)}, x, y);
  return values;
}

}  // namespace

TORCH_LIBRARY_IMPL(learnsolve, Autograd, m) {
  m.impl("sampled_matmul", TORCH_FN(sampled_matmul_autograd));
}

}  // namespace autograd
}  // namespace learnsolve
