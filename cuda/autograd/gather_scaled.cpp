// Autograd kernel of the gather out = alpha source[index] (gather_scaled), a
// move of values (a transpose's values, a product of two matrices' values
// entry by entry): one kernel for both devices (the ops are called through
// the dispatcher). In C++ so that a call without a graph goes straight to the
// device kernel, and one with a graph records a node with no Python.
//
// The gradients (notation of learnsolve/core/_autograd.py):
//   d source = scatter_add_scaled(G, index, size of source, alpha)
//   d alpha  = <G, source[index]>, as alpha's type
// Only those asked for are computed; the backward's ops are differentiable
// (double backward).
#include <ATen/ops/mul.h>

#include "node.h"

namespace learnsolve {
namespace autograd {
namespace {

// Saved: index, source (only where alpha requires grad: d alpha reads it),
// alpha (undefined where not given; read by both gradients: the scale of
// d source, the type of d alpha). Sizes:
// the length of source. Edges: source, alpha.
enum GatherSaved { kIndex, kSource, kAlpha };

struct GatherBackward {
  static constexpr const char* kName = "learnsolve::GatherScaledBackward";
  static constexpr size_t kSaved = 3, kEdges = 2;

  static variable_list backward(const variable_list& grads, const std::vector<bool>& need,
                                const std::vector<Tensor>& saved, const std::vector<bool>&,
                                const std::vector<c10::SymInt>& sizes) {
    const Tensor& grad = grads[0];
    if (!grad.defined()) return {Tensor(), Tensor()};
    const Tensor& index = saved[kIndex];
    const Tensor& alpha = saved[kAlpha];
    const BelowAutogradUnlessRecording dispatch;
    Tensor grad_source, grad_alpha;
    if (need[0]) {
      grad_source = scatter_add_scaled_op().call(grad, index, sizes[0].guard_int(__FILE__, __LINE__),
                                                 optional(alpha));
    }
    if (need[1]) {
      grad_alpha = at::mul(grad, gather_scaled_op().call(saved[kSource], index, std::nullopt))
                       .sum()
                       .to(alpha);
    }
    return {grad_source, grad_alpha};
  }
};

Tensor gather_scaled_autograd(c10::DispatchKeySet keys, const Tensor& source, const Tensor& index,
                              const OptionalTensor& alpha) {
  Tensor out;
  {
    at::AutoDispatchBelowADInplaceOrView below;
    out = gather_scaled_op().redispatch(keys & c10::after_ADInplaceOrView_keyset, source, index,
                                        alpha);
  }
  const Tensor scale = alpha.value_or(Tensor());
  if (nothing_to_record(source, scale)) return out;
  refuse_tangents("gather_scaled", source, scale);
  const Tensor none;
  record<GatherBackward>(out,
                         {index, scale.defined() && scale.requires_grad() ? source : none,
                          scale},
                         {}, {source.sym_size(0)}, source, scale);
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(learnsolve, Autograd, m) {
  m.impl("gather_scaled", TORCH_FN(gather_scaled_autograd));
}

}  // namespace autograd
}  // namespace learnsolve
