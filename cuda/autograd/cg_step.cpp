// The autograd kernel of cg_step, PCG's iteration where no graph is recorded
// (its lean path): it has no gradient. With a graph to record (grad mode on
// and an argument that requires grad), or a forward-mode tangent, it refuses,
// where the autograd fallback would leave its outputs silently cut off from
// the graph; else it runs the device kernel and bumps the versions of the
// tensors it wrote, as in-place torch ops do, so that autograd can tell a
// saved tensor was overwritten.
#include "common.h"

#include <initializer_list>

namespace learnsolve {
namespace autograd {
namespace {

using CgStepSignature = void(const Tensor&, const Tensor&, const Tensor&, const Tensor&,
                             const Tensor&, const Tensor&, const Tensor&, const OptionalTensor&,
                             const OptionalTensor&, const Tensor&, const Tensor&, const Tensor&,
                             const Tensor&);

void cg_step_autograd(const Tensor& crow, const Tensor& col, const Tensor& values,
                      const Tensor& x, const Tensor& r, const Tensor& p, const Tensor& rz,
                      const OptionalTensor& d, const OptionalTensor& q, const Tensor& x_out,
                      const Tensor& r_out, const Tensor& p_out, const Tensor& dots) {
  TORCH_CHECK(nothing_to_record(values, x, r, p, rz, d.value_or(Tensor()), q.value_or(Tensor()),
                                x_out, r_out, p_out, dots),
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
