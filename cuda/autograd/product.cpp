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

#include "common.h"

namespace learnsolve {
namespace autograd {

using ProductSignature = Tensor(const Tensor&, const Tensor&, const Tensor&, const Tensor&,
                                const OptionalTensor&, const OptionalTensor&,
                                const OptionalTensor&, bool);
using FusedSignature = std::tuple<Tensor, Tensor>(const Tensor&, const Tensor&, const Tensor&,
                                                  const Tensor&, const Tensor&);

template <bool kMatrix>
const c10::TypedOperatorHandle<ProductSignature>& product_op() {
  static const auto op = find_op<ProductSignature>(kMatrix ? "learnsolve::spmm"
                                                           : "learnsolve::spmv");
  return op;
}

const c10::TypedOperatorHandle<FusedSignature>& spmv_backward_op() {
  static const auto op = find_op<FusedSignature>("learnsolve::spmv_backward");
  return op;
}

// Saved tensors: crow, col, values (only where x requires grad: d x reads A),
// x (only where values requires grad: d values reads x), t_crow, t_col, t_perm
// (only where x requires grad). An undefined tensor stands for one not saved.
enum ProductSaved { kCrow, kCol, kValues, kX, kTCrow, kTCol, kTPerm };

template <bool kMatrix>
struct ProductFunction : public torch::autograd::Function<ProductFunction<kMatrix>> {
  static Tensor forward(AutogradContext* ctx, const Tensor& crow, const Tensor& col,
                        const Tensor& values, const Tensor& x, const OptionalTensor& t_crow,
                        const OptionalTensor& t_col, const OptionalTensor& t_perm,
                        bool transpose) {
    Tensor y;
    {
      at::AutoDispatchBelowADInplaceOrView below;
      y = product_op<kMatrix>().call(crow, col, values, x, t_crow, t_col, t_perm, transpose);
    }
    const bool for_x = x.requires_grad(), for_values = values.requires_grad();
    const Tensor none;
    ctx->save_for_backward({crow, col, for_x ? values : none, for_values ? x : none,
                            for_x ? t_crow.value_or(none) : none,
                            for_x ? t_col.value_or(none) : none,
                            for_x ? t_perm.value_or(none) : none});
    ctx->saved_data["transpose"] = transpose;
    ctx->saved_data["ncols"] = x.sym_size(0);  // of A (rows of x), for A's transpose
    return y;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const variable_list saved = ctx->get_saved_variables();
    const Tensor& crow = saved[kCrow];
    const Tensor& col = saved[kCol];
    const Tensor& values = saved[kValues];
    const Tensor& x = saved[kX];
    OptionalTensor t_crow = optional(saved[kTCrow]), t_col = optional(saved[kTCol]),
                   t_perm = optional(saved[kTPerm]);
    const bool transpose = ctx->saved_data["transpose"].toBool();
    const Tensor& grad = grads[0];
    const bool need_values = ctx->needs_input_grad(kValuesEdge);
    const bool need_x = ctx->needs_input_grad(kOperandEdge);

    const BelowAutogradUnlessRecording dispatch;

    Tensor grad_values, grad_x;
    if (!kMatrix && need_values && need_x && !transpose) {
      std::tie(grad_values, grad_x) = spmv_backward_op().call(crow, col, values, x, grad);
    } else {
      if (need_values) {
        grad_values = transpose
            ? sampled_matmul_op().call(crow, col, x, grad, std::nullopt, std::nullopt,
                                       std::nullopt)
            : sampled_matmul_op().call(crow, col, grad, x, std::nullopt, std::nullopt,
                                       std::nullopt);
      }
      if (need_x) {
        if (!transpose) {
          std::tie(t_crow, t_col, t_perm) =
              transpose_pattern(crow, col, ctx->saved_data["ncols"].toSymInt(), saved[kTCrow],
                                saved[kTCol], saved[kTPerm]);
        }
        grad_x = product_op<kMatrix>().call(crow, col, values, grad, t_crow, t_col, t_perm,
                                            !transpose);
      }
    }
    return {Tensor(), Tensor(), grad_values, grad_x, Tensor(), Tensor(), Tensor(), Tensor()};
  }
};

// The Autograd kernel: without a graph to record (grad mode off, or neither
// values nor x requiring grad) straight to the device kernel, else through the
// Function, which records the node.
template <bool kMatrix>
Tensor product_autograd(c10::DispatchKeySet keys, const Tensor& crow, const Tensor& col,
                        const Tensor& values, const Tensor& x, const OptionalTensor& t_crow,
                        const OptionalTensor& t_col, const OptionalTensor& t_perm,
                        bool transpose) {
  if (nothing_to_record(values, x)) {
    at::AutoDispatchBelowADInplaceOrView below;
    return product_op<kMatrix>().redispatch(keys & c10::after_ADInplaceOrView_keyset, crow, col,
                                            values, x, t_crow, t_col, t_perm, transpose);
  }
  return ProductFunction<kMatrix>::apply(crow, col, values, x, t_crow, t_col, t_perm, transpose);
}

TORCH_LIBRARY_IMPL(learnsolve, Autograd, m) {
  m.impl("spmv", TORCH_FN(product_autograd<false>));
  m.impl("spmm", TORCH_FN(product_autograd<true>));
}

}  // namespace autograd
}  // namespace learnsolve
