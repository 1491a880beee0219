// Shared by the autograd kernels written in C++ (one file per op): they call
// the learnsolve ops through the dispatcher only, so that one kernel serves
// both devices and a backward recorded under create_graph=True is itself
// differentiable.
#pragma once

#include <ATen/core/LegacyTypeDispatch.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <c10/core/GradMode.h>
#include <torch/csrc/autograd/saved_variable.h>
#include <torch/csrc/autograd/variable.h>
#include <torch/library.h>

#include <optional>
#include <tuple>

namespace learnsolve {
namespace autograd {

using at::Tensor;
using OptionalTensor = std::optional<Tensor>;
using torch::autograd::SavedVariable;
using torch::autograd::variable_list;

// The typed handle of an op (look it up once, in a function-local static: the
// schemas are defined when the library loads).
template <typename Signature>
c10::TypedOperatorHandle<Signature> find_op(const char* name) {
  return c10::Dispatcher::singleton().findSchemaOrThrow(name, "").typed<Signature>();
}

// The ops that more than one backward calls.
using SampledSignature = Tensor(const Tensor&, const Tensor&, const Tensor&, const Tensor&,
                                const OptionalTensor&, const OptionalTensor&,
                                const OptionalTensor&);
using TransposeSignature = std::tuple<Tensor, Tensor, Tensor>(const Tensor&, const Tensor&,
                                                              c10::SymInt);

inline const c10::TypedOperatorHandle<SampledSignature>& sampled_matmul_op() {
  static const auto op = find_op<SampledSignature>("learnsolve::sampled_matmul");
  return op;
}

// spmv (kMatrix false) and spmm (true): y = op(A) x.
using ProductSignature = Tensor(const Tensor&, const Tensor&, const Tensor&, const Tensor&,
                                const OptionalTensor&, const OptionalTensor&,
                                const OptionalTensor&, bool);

template <bool kMatrix>
const c10::TypedOperatorHandle<ProductSignature>& product_op() {
  static const auto op = find_op<ProductSignature>(kMatrix ? "learnsolve::spmm"
                                                           : "learnsolve::spmv");
  return op;
}

// out = alpha source[index], and its adjoint out[index[p]] += alpha source[p].
using GatherSignature = Tensor(const Tensor&, const Tensor&, const OptionalTensor&);
using ScatterSignature = Tensor(const Tensor&, const Tensor&, int64_t, const OptionalTensor&);

inline const c10::TypedOperatorHandle<GatherSignature>& gather_scaled_op() {
  static const auto op = find_op<GatherSignature>("learnsolve::gather_scaled");
  return op;
}

inline const c10::TypedOperatorHandle<ScatterSignature>& scatter_add_scaled_op() {
  static const auto op = find_op<ScatterSignature>("learnsolve::scatter_add_scaled");
  return op;
}

// A's transpose pattern (t_crow, t_col, t_perm); ncols a SymInt, so that the
// backward traces with symbolic shapes (torch.compile, aot_dispatch_dynamic).
inline const c10::TypedOperatorHandle<TransposeSignature>& transpose_op() {
  static const auto op = find_op<TransposeSignature>("learnsolve::transpose");
  return op;
}

// A's transpose pattern (t_crow, t_col, t_perm) for a backward: the arrays the
// caller gave (all three: cached on the pattern), else computed now, for A of
// ncols columns.
inline std::tuple<Tensor, Tensor, Tensor> transpose_pattern(const Tensor& crow, const Tensor& col,
                                                          const c10::SymInt& ncols,
                                                          const Tensor& t_crow,
                                                          const Tensor& t_col,
                                                          const Tensor& t_perm) {
  if (t_crow.defined() && t_col.defined() && t_perm.defined()) return {t_crow, t_col, t_perm};
  return transpose_op().call(crow, col, ncols);
}

// A saved tensor that may be undefined (not given, or not saved) as the
// optional argument of an op.
inline OptionalTensor optional(const Tensor& t) {
  return t.defined() ? OptionalTensor(t) : std::nullopt;
}

// Whether a call with these differentiable inputs has nothing for autograd to
// do: no graph to record (grad mode off, or none requires grad) and no
// forward-mode tangent (refused by refuse_tangents: no jvp, rather than being
// dropped).
template <typename... Tensors>
bool nothing_to_record(const Tensors&... inputs) {
  const bool record = c10::GradMode::is_enabled() && (inputs.requires_grad() || ...);
  return !record && (!inputs._fw_grad(/*level=*/0).defined() && ...);
}

// A forward-mode tangent on a differentiable input: refused (no jvp is
// defined), rather than dropped.
template <typename... Tensors>
void refuse_tangents(const char* op, const Tensors&... inputs) {
  TORCH_CHECK((!inputs._fw_grad(/*level=*/0).defined() && ...), "learnsolve::", op,
              ": forward-mode AD is not supported (no jvp formula); use reverse mode");
}

// Run in a backward: without a graph to record (create_graph=False) the ops
// are called below the autograd keys, straight to the device kernels; with
// one, through them, so that the backward's ops record their own nodes.
class BelowAutogradUnlessRecording {
 public:
  BelowAutogradUnlessRecording() {
    if (!c10::GradMode::is_enabled()) below_.emplace();
  }

 private:
  std::optional<at::AutoDispatchBelowADInplaceOrView> below_;
};

}  // namespace autograd
}  // namespace learnsolve
