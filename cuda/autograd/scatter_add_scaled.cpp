// Autograd kernel of the scatter out[index[p]] += alpha source[p] into zeros
// (scatter_add_scaled), the adjoint of gather_scaled: one kernel for both
// devices (the ops are called through the dispatcher). In C++ so that a call
// without a graph goes straight to the device kernel, and one with a graph
// records a node with no Python.
//
// The gradients (notation of learnsolve/core/_autograd.py):
//   d source = gather_scaled(G, index, alpha)
//   d alpha  = <G[index], source>, as alpha's type
// Only those asked for are computed; the backward's ops are differentiable
// (double backward).
#include <ATen/ops/mul.h>

#include "node.h"

namespace learnsolve {
namespace autograd {
namespace {

// Saved: index, source (only where alpha requires grad: d alpha reads it),
// alpha (undefined where not given; read by both gradients: the scale of
// d source, the type of d alpha). Edges:
// source, alpha.
enum ScatterSaved { kIndex, kSource, kAlpha };

struct ScatterBackward {
  static constexpr const char* kName = "learnsolve::ScatterAddScaledBackward";
  static constexpr size_t kSaved = 3, kEdges = 2;

  static variable_list backward(const variable_list& grads, const std::vector<bool>& need,
                                const std::vector<Tensor>& saved, const std::vector<bool>&,
                                const std::vector<c10::SymInt>&) {
    const Tensor& grad = grads[0];
    if (!grad.defined()) return {Tensor(), Tensor()};
    const Tensor& index = saved[kIndex];
    const Tensor& alpha = saved[kAlpha];
    const BelowAutogradUnlessRecording dispatch;
    Tensor grad_source, grad_alpha;
    if (need[0]) grad_source = gather_scaled_op().call(grad, index, optional(alpha));
    if (need[1]) {
      grad_alpha = at::mul(gather_scaled_op().call(grad, index, std::nullopt), saved[kSource])
                       .sum()
                       .to(alpha);
    }
    return {grad_source, grad_alpha};
  }
};

Tensor scatter_add_scaled_autograd(c10::DispatchKeySet keys, const Tensor& source,
                                   const Tensor& index, int64_t size,
                                   const OptionalTensor& alpha) {
  Tensor out;
  {
    at::AutoDispatchBelowADInplaceOrView below;
    out = scatter_add_scaled_op().redispatch(keys & c10::after_ADInplaceOrView_keyset, source,
                                             index, size, alpha);
  }
  const Tensor scale = alpha.value_or(Tensor());
  if (nothing_to_record(source, scale)) return out;
  refuse_tangents("scatter_add_scaled", source, scale);
  const Tensor none;
  record<ScatterBackward>(out,
                          {index, scale.defined() && scale.requires_grad() ? source : none,
                           scale},
                          {}, {}, source, scale);
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(learnsolve, Autograd, m) {
  m.impl("scatter_add_scaled", TORCH_FN(scatter_add_scaled_autograd));
}

}  // namespace autograd
}  // namespace learnsolve
