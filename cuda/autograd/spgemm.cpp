// Autograd kernel of the values of C = A B on its pattern (spgemm_numeric, the
// pattern from spgemm_symbolic): one kernel for both devices (the ops are
// called through the dispatcher). In C++ rather than with
// torch.library.register_autograd so that a call without a graph costs one
// check, and one with a graph no Python.
//
// The gradients (notation of learnsolve/core/_autograd.py), G on C's pattern:
//   d values_a = (G B^T) ⊙ mask(A) = spgemm_masked(A; G, B)
//   d values_b = (A^T G) ⊙ mask(B) = spgemm_grad_b(A; G; B)
// Only entries inside the masks are computed; nothing is transposed. Only the
// gradients the backward asks for are computed; the backward's ops are
// themselves differentiable (double backward).
#include "node.h"

namespace learnsolve {
namespace autograd {
namespace {

// spgemm_numeric's, and its backward's (spgemm_masked, spgemm_grad_b): eight
// tensors, then an int.
using SpgemmSignature = Tensor(const Tensor&, const Tensor&, const Tensor&, const Tensor&,
                               const Tensor&, const Tensor&, const Tensor&, const Tensor&,
                               int64_t);

const c10::TypedOperatorHandle<SpgemmSignature>& spgemm_numeric_op() {
  static const auto op = find_op<SpgemmSignature>("learnsolve::spgemm_numeric");
  return op;
}

const c10::TypedOperatorHandle<SpgemmSignature>& spgemm_masked_op() {
  static const auto op = find_op<SpgemmSignature>("learnsolve::spgemm_masked");
  return op;
}

const c10::TypedOperatorHandle<SpgemmSignature>& spgemm_grad_b_op() {
  static const auto op = find_op<SpgemmSignature>("learnsolve::spgemm_grad_b");
  return op;
}

// The backward of C = A B (node.h). Saved: the three patterns, values_a (only
// where values_b requires grad: d values_b reads it) and values_b (only where
// values_a requires grad). Sizes: the columns of B (and C). Edges: values_a,
// values_b.
enum SpgemmSaved { kCrowA, kColA, kValuesA, kCrowB, kColB, kValuesB, kCrowC, kColC };

struct SpgemmBackward {
  static constexpr const char* kName = "learnsolve::SpgemmNumericBackward";
  static constexpr size_t kSaved = 8, kEdges = 2;

  static variable_list backward(const variable_list& grads, const std::vector<bool>& need,
                                const std::vector<Tensor>& saved, const std::vector<bool>&,
                                const std::vector<c10::SymInt>& sizes) {
    const Tensor& grad = grads[0];
    if (!grad.defined()) return {Tensor(), Tensor()};
    const Tensor& crow_a = saved[kCrowA];
    const Tensor& col_a = saved[kColA];
    const Tensor& crow_b = saved[kCrowB];
    const Tensor& col_b = saved[kColB];
    const Tensor& crow_c = saved[kCrowC];
    const Tensor& col_c = saved[kColC];
    const int64_t ncols = sizes[0].guard_int(__FILE__, __LINE__);

    const BelowAutogradUnlessRecording dispatch;
    Tensor grad_values_a, grad_values_b;
    if (need[0]) {
      grad_values_a = spgemm_masked_op().call(crow_a, col_a, crow_c, col_c, grad, crow_b, col_b,
                                              saved[kValuesB], ncols);
    }
    if (need[1]) {
      grad_values_b = spgemm_grad_b_op().call(crow_a, col_a, saved[kValuesA], crow_c, col_c,
                                              grad, crow_b, col_b, ncols);
    }
    return {grad_values_a, grad_values_b};
  }
};

// The Autograd kernel: the device kernel, and, with a graph to record, an
// SpgemmBackward node on C's values.
Tensor spgemm_numeric_autograd(c10::DispatchKeySet keys, const Tensor& crow_a,
                               const Tensor& col_a, const Tensor& values_a, const Tensor& crow_b,
                               const Tensor& col_b, const Tensor& values_b, const Tensor& crow_c,
                               const Tensor& col_c, int64_t ncols) {
  const Tensor values_c = device_kernel(spgemm_numeric_op(), keys, crow_a, col_a, values_a,
                                        crow_b, col_b, values_b, crow_c, col_c, ncols);
  if (nothing_to_record(values_a, values_b)) return values_c;
  refuse_tangents("spgemm_numeric", values_a, values_b);
  const Tensor none;
  record<SpgemmBackward>(values_c,
                         {crow_a, col_a, values_b.requires_grad() ? values_a : none, crow_b,
                          col_b, values_a.requires_grad() ? values_b : none, crow_c, col_c},
                         {}, {c10::SymInt(ncols)}, values_a, values_b);
  return values_c;
}

}  // namespace

TORCH_LIBRARY_IMPL(learnsolve, Autograd, m) {
  m.impl("spgemm_numeric", TORCH_FN(spgemm_numeric_autograd));
}

}  // namespace autograd
}  // namespace learnsolve
