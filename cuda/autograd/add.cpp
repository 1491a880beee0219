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

#include "node.h"

namespace learnsolve {
namespace autograd {
namespace {

using AddSignature = Tensor(const Tensor&, const Tensor&, const Tensor&, const Tensor&,
                            int64_t, const Tensor&, const Tensor&);

const c10::TypedOperatorHandle<AddSignature>& csr_add_values_op() {
  static const auto op = find_op<AddSignature>("learnsolve::csr_add_values");
  return op;
}

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

// The backward of alpha A + beta B (node.h). Saved, per operand: its values
// (only where its scale requires grad: d scale reads them), its map and its
// scale (only where its values or its scale require grad). Edges: values_a,
// values_b, alpha, beta.
enum AddSaved { kValuesA, kMapA, kAlpha, kValuesB, kMapB, kBeta };

struct AddBackward {
  static constexpr const char* kName = "learnsolve::CsrAddValuesBackward";
  static constexpr size_t kSaved = 6, kEdges = 4;

  static variable_list backward(const variable_list& grads, const std::vector<bool>& need,
                                const std::vector<Tensor>& saved, const std::vector<bool>&,
                                const std::vector<c10::SymInt>&) {
    const Tensor& grad = grads[0];
    if (!grad.defined()) return {Tensor(), Tensor(), Tensor(), Tensor()};
    const BelowAutogradUnlessRecording dispatch;
    auto [grad_values_a, grad_alpha] = operand_grads(grad, saved[kValuesA], saved[kMapA],
                                                     saved[kAlpha], need[0], need[2]);
    auto [grad_values_b, grad_beta] = operand_grads(grad, saved[kValuesB], saved[kMapB],
                                                    saved[kBeta], need[1], need[3]);
    return {std::move(grad_values_a), std::move(grad_values_b), std::move(grad_alpha),
            std::move(grad_beta)};
  }
};

// The Autograd kernel: the device kernel, and, with a graph to record, an
// AddBackward node on the output.
Tensor csr_add_values_autograd(c10::DispatchKeySet keys, const Tensor& values_a,
                               const Tensor& map_a, const Tensor& values_b, const Tensor& map_b,
                               int64_t nnz, const Tensor& alpha, const Tensor& beta) {
  const Tensor out = device_kernel(csr_add_values_op(), keys, values_a, map_a, values_b, map_b,
                                   nnz, alpha, beta);
  if (nothing_to_record(values_a, values_b, alpha, beta)) return out;
  refuse_tangents("csr_add_values", values_a, values_b, alpha, beta);
  const bool for_a = values_a.requires_grad() || alpha.requires_grad();
  const bool for_b = values_b.requires_grad() || beta.requires_grad();
  const Tensor none;
  record<AddBackward>(out,
                      {alpha.requires_grad() ? values_a : none, for_a ? map_a : none,
                       for_a ? alpha : none, beta.requires_grad() ? values_b : none,
                       for_b ? map_b : none, for_b ? beta : none},
                      {}, {}, values_a, values_b, alpha, beta);
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(learnsolve, Autograd, m) {
  m.impl("csr_add_values", TORCH_FN(csr_add_values_autograd));
}

}  // namespace autograd
}  // namespace learnsolve
