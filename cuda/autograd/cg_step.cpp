// The autograd kernel of cg_step, PCG's iteration where no graph is recorded
// (its lean path): it has no gradient. With a graph to record (grad mode on
// and an argument that requires grad), or a forward-mode tangent, it refuses, where the autograd fallback
// would leave its outputs silently cut off from the graph; else it runs the
// device kernel and bumps the versions of the tensors it wrote, as in-place
// torch ops do, so that autograd can tell a saved tensor was overwritten.
#include "common.h"

#include <initializer_list>

namespace learnsolve {
namespace autograd {
namespace {

using CgStepSignature = void(const Tensor&, const Tensor&, const Tensor&, const Tensor&,
                             const Tensor&, const Tensor&, const Tensor&, const OptionalTensor&,
                             const OptionalTensor&, const Tensor&, const Tensor&, const Tensor&,
                             const Tensor&);

// Whether a gradient would be asked of the outputs: a graph to record (grad
// mode on and a tensor that requires grad) or a forward-mode tangent.
bool differentiated(std::initializer_list<const Tensor*> tensors) {
  const bool recording = c10::GradMode::is_enabled();
  for (const Tensor* t : tensors) {
    if (t->defined() && ((recording && t->requires_grad()) || t->_fw_grad(/*level=*/0).defined())) {
      return true;
    }
  }
  return false;
}

void cg_step_autograd(const Tensor& crow, const Tensor& col, const Tensor& values,
                      const Tensor& x, const Tensor& r, const Tensor& p, const Tensor& rz,
                      const OptionalTensor& d, const OptionalTensor& q, const Tensor& x_out,
                      const Tensor& r_out, const Tensor& p_out, const Tensor& dots) {
  const Tensor none;
  TORCH_CHECK(!differentiated({&values, &x, &r, &p, &rz, d ? &*d : &none, q ? &*q : &none,
                               &x_out, &r_out, &p_out, &dots}),
              "learnsolve::cg_step is not differentiable: it is PCG's iteration where no graph "
              "is recorded; call it under torch.no_grad() or on tensors that do not require "
              "grad and carry no forward-mode tangent");
  static const auto op = find_op<CgStepSignature>("learnsolve::cg_step");
  {
    at::AutoDispatchBelowADInplaceOrView below;
    op.call(crow, col, values, x, r, p, rz, d, q, x_out, r_out, p_out, dots);
  }
  for (const Tensor* written : {&x_out, &r_out, &p_out, &dots}) {
    torch::autograd::impl::bump_version(*written);
  }
}

}  // namespace

TORCH_LIBRARY_IMPL(learnsolve, Autograd, m) {
  m.impl("cg_step", TORCH_FN(cg_step_autograd));
}

}  // namespace autograd
}  // namespace learnsolve
