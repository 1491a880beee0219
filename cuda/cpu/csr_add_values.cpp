// Values of alpha A + beta B on the union of their patterns, given for each
// entry of A and of B its position in the union (csr_merge's maps, each
// one-to-one): the union is zeroed, A's entries written, B's added. Each pass
// is parallel over entries without conflicts, since a map hits each position
// at most once.
#include <torch/library.h>

#include "op_checks.h"

namespace learnsolve {
namespace {

at::Tensor csr_add_values_cpu(const at::Tensor& values_a, const at::Tensor& map_a,
                              const at::Tensor& values_b, const at::Tensor& map_b, int64_t nnz,
                              const at::Tensor& alpha, const at::Tensor& beta) {
  check_csr_add_values(values_a, map_a, values_b, map_b, nnz, alpha, beta);
  const auto va_c = values_a.contiguous(), ma_c = map_a.contiguous();
  const auto vb_c = values_b.contiguous(), mb_c = map_b.contiguous();
  auto out = new_buffer({nnz}, values_a.options());
  AT_DISPATCH_FLOATING_TYPES(values_a.scalar_type(), "csr_add_values_cpu", [&] {
    const scalar_t a = alpha.to(at::kCPU).to(values_a.scalar_type()).item<scalar_t>();
    const scalar_t b = beta.to(at::kCPU).to(values_a.scalar_type()).item<scalar_t>();
    scalar_t* o = out.data_ptr<scalar_t>();
    const scalar_t* va = va_c.data_ptr<scalar_t>();
    const scalar_t* vb = vb_c.data_ptr<scalar_t>();
    const int64_t* ma = ma_c.data_ptr<int64_t>();
    const int64_t* mb = mb_c.data_ptr<int64_t>();
    constexpr int64_t grain = 1 << 15;
    at::parallel_for(0, nnz, grain, [&](int64_t p0, int64_t p1) {
      std::fill(o + p0, o + p1, scalar_t(0));
    });
    at::parallel_for(0, values_a.numel(), grain, [&](int64_t p0, int64_t p1) {
      for (int64_t p = p0; p < p1; ++p) o[ma[p]] = a * va[p];
    });
    at::parallel_for(0, values_b.numel(), grain, [&](int64_t p0, int64_t p1) {
      for (int64_t p = p0; p < p1; ++p) o[mb[p]] += b * vb[p];
    });
  });
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(learnsolve, CPU, m) { m.impl("csr_add_values", &csr_add_values_cpu); }

}  // namespace learnsolve
