// out[p] = alpha * source[index[p]]: the values of one pattern read through a
// map from another (a transpose permutation, a union's or intersection's
// positions), scaled, in one parallel pass into a fresh buffer.
#include <torch/library.h>

#include "op_checks.h"

namespace learnsolve {
namespace {

at::Tensor gather_scaled_cpu(const at::Tensor& source, const at::Tensor& index,
                             const std::optional<at::Tensor>& alpha) {
  check_gather_scaled(source, index);
  const auto source_c = source.contiguous();
  const auto index_c = index.contiguous();
  const int64_t n = index.numel();
  auto out = new_buffer({n}, source.options());
  AT_DISPATCH_FLOATING_TYPES(source.scalar_type(), "gather_scaled_cpu", [&] {
    const scalar_t a = scale_value<scalar_t>(alpha, "gather_scaled");
    const scalar_t* s = source_c.data_ptr<scalar_t>();
    const int64_t* idx = index_c.data_ptr<int64_t>();
    scalar_t* o = out.data_ptr<scalar_t>();
    at::parallel_for(0, n, kSerialWork, [&](int64_t p0, int64_t p1) {
      for (int64_t p = p0; p < p1; ++p) o[p] = a * s[idx[p]];
    });
  });
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(learnsolve, CPU, m) { m.impl("gather_scaled", &gather_scaled_cpu); }

}  // namespace learnsolve
