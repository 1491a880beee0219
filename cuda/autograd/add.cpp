// Autograd kernel of the values of alpha A + beta B on the union of the two
// patterns (csr_add_values, from csr_merge's maps): one kernel for both
// devices (the ops are called through the dispatcher). In C++ rather than with
// torch.library.register_autograd so that a call without a graph costs one
// check, and one with a graph no Python.
//
// The gradients (notation of learnsolve/core/_autograd.py), G on the union:
//   d values_a = alpha G[map_a] = gather_scaled(G, map_a, alpha)
//   d alpha    = <G[map_a], values_a>, as alpha's type
// and so for B, with map_b and beta. Only the gradients the backward asks for
// are computed; the backward's ops are themselves differentiable (double
// backward).
#include <ATen/ops/mul.h>

#include <utility>

#include "common.h"

namespace learnsolve {
namespace autograd {
namespace {

using AddSignature = Tensor(const Tensor&, const Tensor&, const Tensor&, const Tensor&,
                            int64_t, const Tensor&, const Tensor&);
using GatherSignature = Tensor(const Tensor&, const Tensor&, const OptionalTensor&);

const c10::TypedOperatorHandle<AddSignature>& csr_add_values_op() {
  static const auto op = find_op<AddSignature>("learnsolve::csr_add_values");
  return op;
}

const c10::TypedOperatorHandle<GatherSignature>& gather_scaled_op() {
  static const auto op = find_op<GatherSignature>("learnsolve::gather_scaled");
  return op;
}

// Indices of the differentiable inputs among the tensor inputs (values_a,
// map_a, values_b, map_b, alpha, beta: nnz is not one).
constexpr size_t kValuesAEdge = 0, kValuesBEdge = 2, kAlphaEdge = 4, kBetaEdge = 5;

// Saved tensors, per operand: its values (only where its scale requires grad:
// d scale reads them), its map and its scale (only where its values or its
// scale require grad). An undefined tensor stands for one not saved.
enum AddSaved { kValuesA, kMapA, kAlpha, kValuesB, kMapB, kBeta };

// One operand's gradients: (d values, d scale), each undefined where not asked for.
std::pair<Tensor, Tensor> operand_grads(const Tensor& grad, const Tensor& values,
                                        const Tensor& map, const Tensor& scale,
                                        bool need_values, bool need_scale) {
  Tensor grad_values, grad_scale;
  if (need_values) grad_values = gather_scaled_op().call(grad, map, scale);
  if (need_scale) {
    // The sum of the products, as the scale's dtype and device: the kernel
    // takes a scale of any dtype, on either device.
    grad_scale = at::mul(gather_scaled_op().call(grad, map, std::nullopt), values).sum().to(scale);
  }
  return {grad_values, grad_scale};
}

struct AddFunction : public torch::autograd::Function<AddFunction> {
  static Tensor forward(AutogradContext* ctx, const Tensor& values_a, const Tensor& map_a,
                        const Tensor& values_b, const Tensor& map_b, int64_t nnz,
                        const Tensor& alpha, const Tensor& beta) {
    Tensor out;
    {
      at::AutoDispatchBelowADInplaceOrView below;
      out = csr_add_values_op().call(values_a, map_a, values_b, map_b, nnz, alpha, beta);
    }
    const bool for_a = values_a.requires_grad() || alpha.requires_grad();
    const bool for_b = values_b.requires_grad() || beta.requires_grad();
    const Tensor none;
    ctx->save_for_backward({alpha.requires_grad() ? values_a : none, for_a ? map_a : none,
                            for_a ? alpha : none, beta.requires_grad() ? values_b : none,
                            for_b ? map_b : none, for_b ? beta : none});
    return out;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const variable_list saved = ctx->get_saved_variables();
    const Tensor& grad = grads[0];

    const BelowAutogradUnlessRecording dispatch;
    auto [grad_values_a, grad_alpha] =
        operand_grads(grad, saved[kValuesA], saved[kMapA], saved[kAlpha],
                      ctx->needs_input_grad(kValuesAEdge), ctx->needs_input_grad(kAlphaEdge));
    auto [grad_values_b, grad_beta] =
        operand_grads(grad, saved[kValuesB], saved[kMapB], saved[kBeta],
                      ctx->needs_input_grad(kValuesBEdge), ctx->needs_input_grad(kBetaEdge));
    // One per argument of forward: values_a, map_a, values_b, map_b, nnz, alpha, beta.
    return {grad_values_a, Tensor(), grad_values_b, Tensor(), Tensor(), grad_alpha, grad_beta};
  }
};

// The Autograd kernel: without a graph to record, straight to the device
// kernel, else through the Function, which records the node.
Tensor csr_add_values_autograd(c10::DispatchKeySet keys, const Tensor& values_a,
                               const Tensor& map_a, const Tensor& values_b, const Tensor& map_b,
                               int64_t nnz, const Tensor& alpha, const Tensor& beta) {
  if (nothing_to_record(values_a, values_b, alpha, beta)) {
    at::AutoDispatchBelowADInplaceOrView below;
    return csr_add_values_op().redispatch(keys & c10::after_ADInplaceOrView_keyset, values_a,
                                          map_a, values_b, map_b, nnz, alpha, beta);
  }
  return AddFunction::apply(values_a, map_a, values_b, map_b, nnz, alpha, beta);
}

}  // namespace

TORCH_LIBRARY_IMPL(learnsolve, Autograd, m) {
  m.impl("csr_add_values", TORCH_FN(csr_add_values_autograd));
}

}  // namespace autograd
}  // namespace learnsolve
