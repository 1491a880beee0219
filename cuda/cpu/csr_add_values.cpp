// Values of alpha A + beta B on the union of their patterns, given for each
// entry of A and of B its position in the union (csr_merge's maps, each
// one-to-one): the union is zeroed, A's entries written, B's added. Each pass
// is parallel over entries without conflicts, since a map hits each position
// at most once.
#include <torch/library.h>

#include "common.h"

namespace learnsolve {
namespace {

at::Tensor csr_add_values_cpu(const at::Tensor& values_a, const at::Tensor& map_a,
                              const at::Tensor& values_b, const at::Tensor& map_b, int64_t nnz,
                              const at::Tensor& alpha, const at::Tensor& beta) {
  const char* op = "csr_add_values";
  check_floating(values_a, op, "values_a");
  check_same_dtype(values_a, values_b, op, "values_a", "values_b");
  check_index(map_a, op, "map_a");
  check_index(map_b, op, "map_b");
  TORCH_CHECK(map_a.numel() == values_a.numel() && map_b.numel() == values_b.numel(), op,
              ": expected map_a, map_b of the lengths of values_a, values_b");
  TORCH_CHECK(alpha.numel() == 1 && beta.numel() == 1, op, ": expected alpha and beta with one "
              "element each, got ", alpha.numel(), " and ", beta.numel());
  TORCH_CHECK(nnz >= 0, op, ": expected nnz >= 0, got ", nnz);
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
