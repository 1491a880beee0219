// Autograd kernels of the moves of values, each the other's adjoint: the
// gather out = alpha source[index] (gather_scaled: a transpose's values, a
// product of two matrices' values entry by entry) and the scatter
// out[index[p]] += alpha source[p] into zeros (scatter_add_scaled). One kernel
// for both devices (the ops are called through the dispatcher), in C++ so that
// a call without a graph goes straight to the device kernel, and one with a
// graph records a node with no Python.
//
// The gradients (notation of learnsolve/core/_autograd.py):
//   gather:   d source = scatter_add_scaled(G, index, size of source, alpha)
//             d alpha  = <G, source[index]>, as alpha's type
//   scatter:  d source = gather_scaled(G, index, alpha)
//             d alpha  = <G[index], source>, as alpha's type
// Only those asked for are computed; the backward's ops are differentiable
// (double backward).
#include <ATen/ops/mul.h>

#include "node.h"

namespace learnsolve {
namespace autograd {
namespace {

// Saved: index, source (only where alpha requires grad: d alpha reads it),
// alpha (undefined where not given; read by both gradients: the scale of
// d source, the type of d alpha). Sizes (gather): the length of source.
// Edges: source, alpha.
enum MoveSaved { kIndex, kSource, kAlpha };

template <bool kGather>
struct MoveBackward {
  static constexpr const char* kName =
      kGather ? "learnsolve::GatherScaledBackward" : "learnsolve::ScatterAddScaledBackward";
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
      grad_source = kGather ? scatter_add_scaled_op().call(
                                  grad, index, sizes[0].guard_int(__FILE__, __LINE__),
                                  optional(alpha))
                            : gather_scaled_op().call(grad, index, optional(alpha));
    }
    if (need[1]) {
      const Tensor products =
          kGather ? at::mul(grad, gather_scaled_op().call(saved[kSource], index, std::nullopt))
                  : at::mul(gather_scaled_op().call(grad, index, std::nullopt), saved[kSource]);
      grad_alpha = products.sum().to(alpha);
    }
    return {grad_source, grad_alpha};
  }
};

// A move's node on its output, where there is a graph to record.
template <bool kGather>
Tensor recorded(const Tensor& out, const Tensor& source, const Tensor& index,
                const OptionalTensor& alpha, std::vector<c10::SymInt> sizes) {
  const Tensor scale = alpha.value_or(Tensor());
  if (nothing_to_record(source, scale)) return out;
  refuse_tangents(kGather ? "gather_scaled" : "scatter_add_scaled", source, scale);
  const Tensor none;
  record<MoveBackward<kGather>>(
      out, {index, scale.defined() && scale.requires_grad() ? source : none, scale}, {},
      std::move(sizes), source, scale);
  return out;
}

Tensor gather_scaled_autograd(c10::DispatchKeySet keys, const Tensor& source, const Tensor& index,
                              const OptionalTensor& alpha) {
  return recorded<true>(device_kernel(gather_scaled_op(), keys, source, index, alpha), source,
                        index, alpha, {source.sym_size(0)});
}

Tensor scatter_add_scaled_autograd(c10::DispatchKeySet keys, const Tensor& source,
                                   const Tensor& index, int64_t size,
                                   const OptionalTensor& alpha) {
  return recorded<false>(device_kernel(scatter_add_scaled_op(), keys, source, index, size, alpha),
                         source, index, alpha, {});
}

}  // namespace

TORCH_LIBRARY_IMPL(learnsolve, Autograd, m) {
  m.impl("gather_scaled", TORCH_FN(gather_scaled_autograd));
  m.impl("scatter_add_scaled", TORCH_FN(scatter_add_scaled_autograd));
}

}  // namespace autograd
}  // namespace learnsolve
