// out = zeros(size); out[index[p]] += alpha * source[p]: the adjoint of
// gather_scaled. One pass in order on one thread: an index may repeat, and a
// serial pass is exact and deterministic where threads would need atomics.
#include <torch/library.h>

#include "op_checks.h"

namespace learnsolve {
namespace {

at::Tensor scatter_add_scaled_cpu(const at::Tensor& source, const at::Tensor& index,
                                  int64_t size, const std::optional<at::Tensor>& alpha) {
  check_scatter_add_scaled(source, index, size);
  const auto source_c = source.contiguous();
  const auto index_c = index.contiguous();
  auto out = new_buffer({size}, source.options());
  AT_DISPATCH_FLOATING_TYPES(source.scalar_type(), "scatter_add_scaled_cpu", [&] {
    const scalar_t a = scale_value<scalar_t>(alpha, "scatter_add_scaled");
    const scalar_t* s = source_c.data_ptr<scalar_t>();
    const int64_t* idx = index_c.data_ptr<int64_t>();
    scalar_t* o = out.data_ptr<scalar_t>();
    std::fill(o, o + size, scalar_t(0));
    for (int64_t p = 0, n = index.numel(); p < n; ++p) o[idx[p]] += a * s[p];
  });
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(learnsolve, CPU, m) { m.impl("scatter_add_scaled", &scatter_add_scaled_cpu); }

}  // namespace learnsolve
