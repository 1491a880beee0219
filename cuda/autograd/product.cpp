// Autograd kernels of the products y = op(A) x (spmv) and Y = op(A) X (spmm),
// op the identity or the transpose: one kernel for both devices, since it
// calls the learnsolve ops only through the dispatcher, which picks the CPU
// or CUDA kernel. In C++ rather than with torch.library.register_autograd so
// that a call without a graph costs one check, and one with a graph no Python.
//
// The gradients (paper, table 1; notation of learnsolve/core/_autograd.py):
//   y = A x:    d values[p] = sum_k G[r(p), k] X[c(p), k] = sampled_matmul(A; G, X)
//               d X = A^T G  (the same op with transpose=True: no copy of A^T)
//   y = A^T x:  d values[p] = sum_k X[r(p), k] G[c(p), k] = sampled_matmul(A; X, G)
//               d X = A G
// and for spmv with both wanted and no transpose, spmv_backward computes the two
// in one pass over A. Only the gradients the backward asks for are computed.
//
// The backward's ops are themselves differentiable (double backward): with a
// graph to record (create_graph=True) they are called through the dispatcher's
// autograd keys; without one, below them, straight to the device kernels.
#include <tuple>

#include "node.h"

namespace learnsolve {
namespace autograd {

using FusedSignature = std::tuple<Tensor, Tensor>(const Tensor&, const Tensor&, const Tensor&,
                                                  const Tensor&, const Tensor&);

const c10::TypedOperatorHandle<FusedSignature>& spmv_backward_op() {
  static const auto op = find_op<FusedSignature>("learnsolve::spmv_backward");
  return op;
}

// The backward of y = op(A) x (node.h). Saved: crow, col, values (only where
// x requires grad: d x reads A), x (only where values requires grad: d values
// reads x), t_crow, t_col, t_perm (only where x requires grad and they were
// given). Flags: transpose. Sizes: the columns of A (rows of x), for A's
// transpose. Edges: values, x.
enum ProductSaved { kCrow, kCol, kValues, kX, kTCrow, kTCol, kTPerm };

template <bool kMatrix>
struct ProductBackward {
  static constexpr const char* kName =
      kMatrix ? "learnsolve::SpmmBackward" : "learnsolve::SpmvBackward";
  static constexpr size_t kSaved = 7, kEdges = 2;

  static variable_list backward(const variable_list& grads, const std::vector<bool>& need,
                                const std::vector<Tensor>& saved,
                                const std::vector<bool>& flags,
                                const std::vector<c10::SymInt>& sizes) {
    const Tensor& grad = grads[0];
    const bool need_values = need[0], need_x = need[1], transpose = flags[0];
    if (!grad.defined()) return {Tensor(), Tensor()};
    const Tensor& crow = saved[kCrow];
    const Tensor& col = saved[kCol];
    const Tensor& values = saved[kValues];
    const Tensor& x = saved[kX];

    const BelowAutogradUnlessRecording dispatch;
    if (!kMatrix && need_values && need_x && !transpose) {
      auto [grad_values, grad_x] = spmv_backward_op().call(crow, col, values, x, grad);
      return {grad_values, grad_x};
    }
    Tensor grad_values, grad_x;
    if (need_values) {
      grad_values = transpose ? sampled_matmul_op().call(crow, col, x, grad, std::nullopt,
                                                         std::nullopt, std::nullopt)
                              : sampled_matmul_op().call(crow, col, grad, x, std::nullopt,
                                                         std::nullopt, std::nullopt);
    }
    if (need_x) {
      OptionalTensor t_crow = optional(saved[kTCrow]), t_col = optional(saved[kTCol]),
                     t_perm = optional(saved[kTPerm]);
      if (!transpose) {
        std::tie(t_crow, t_col, t_perm) = transpose_pattern(
            crow, col, sizes[0], saved[kTCrow], saved[kTCol], saved[kTPerm]);
      }
      grad_x = product_op<kMatrix>().call(crow, col, values, grad, t_crow, t_col, t_perm,
                                          !transpose);
    }
    return {grad_values, grad_x};
  }
};

// The Autograd kernel: the device kernel, and, with a graph to record, a
// ProductBackward node on y.
template <bool kMatrix>
Tensor product_autograd(c10::DispatchKeySet keys, const Tensor& crow, const Tensor& col,
                        const Tensor& values, const Tensor& x, const OptionalTensor& t_crow,
                        const OptionalTensor& t_col, const OptionalTensor& t_perm,
                        bool transpose) {
  const Tensor y = device_kernel(product_op<kMatrix>(), keys, crow, col, values, x, t_crow,
                                 t_col, t_perm, transpose);
  if (nothing_to_record(values, x)) return y;
  refuse_tangents(kMatrix ? "spmm" : "spmv", values, x);
  const bool for_x = x.requires_grad(), for_values = values.requires_grad();
  const bool given = t_crow.has_value() && t_col.has_value() && t_perm.has_value();
  const Tensor none;
  record<ProductBackward<kMatrix>>(
      y,
      {crow, col, for_x ? values : none, for_values ? x : none,
       for_x && given ? *t_crow : none, for_x && given ? *t_col : none,
       for_x && given ? *t_perm : none},
      {transpose}, {x.sym_size(0)}, values, x);
  return y;
}

TORCH_LIBRARY_IMPL(learnsolve, Autograd, m) {
  m.impl("spmv", TORCH_FN(product_autograd<false>));
  m.impl("spmm", TORCH_FN(product_autograd<true>));
}

}  // namespace autograd
}  // namespace learnsolve
