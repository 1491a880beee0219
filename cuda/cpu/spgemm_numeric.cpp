// Numeric phase of C = A B on the pattern the symbolic phase gave: row i of A
// scales and adds rows of B into a dense accumulator (one per chunk of rows,
// zero between rows), which is then read at the columns of row i of C.
#include <torch/library.h>

#include "op_checks.h"

namespace learnsolve {
namespace {

at::Tensor spgemm_numeric_cpu(const at::Tensor& crow_a, const at::Tensor& col_a,
                              const at::Tensor& values_a, const at::Tensor& crow_b,
                              const at::Tensor& col_b, const at::Tensor& values_b,
                              const at::Tensor& crow_c, const at::Tensor& col_c, int64_t ncols) {
  check_spgemm_numeric(crow_a, col_a, values_a, crow_b, col_b, values_b, crow_c, col_c, ncols);
  const int64_t nrows = crow_a.numel() - 1;
  const auto ra_c = crow_a.contiguous(), ca_c = col_a.contiguous(), va_c = values_a.contiguous();
  const auto rb_c = crow_b.contiguous(), cb_c = col_b.contiguous(), vb_c = values_b.contiguous();
  const auto rc_c = crow_c.contiguous(), cc_c = col_c.contiguous();
  auto values_c = new_buffer({col_c.numel()}, values_a.options());
  AT_DISPATCH_FLOATING_TYPES(values_a.scalar_type(), "spgemm_numeric_cpu", [&] {
    const int64_t* ra = ra_c.data_ptr<int64_t>();
    const int64_t* ca = ca_c.data_ptr<int64_t>();
    const scalar_t* va = va_c.data_ptr<scalar_t>();
    const int64_t* rb = rb_c.data_ptr<int64_t>();
    const int64_t* cb = cb_c.data_ptr<int64_t>();
    const scalar_t* vb = vb_c.data_ptr<scalar_t>();
    const int64_t* rc = rc_c.data_ptr<int64_t>();
    const int64_t* cc = cc_c.data_ptr<int64_t>();
    scalar_t* vc = values_c.data_ptr<scalar_t>();
    parallel_rows(ra, nrows, [&](int64_t, int64_t r0, int64_t r1) {
      at::Tensor acc_buffer;
      scalar_t* acc = scratch_array<scalar_t>(acc_buffer, ncols, scalar_t(0));
      for (int64_t r = r0; r < r1; ++r) {
        for (int64_t p = ra[r]; p < ra[r + 1]; ++p) {
          const scalar_t a = va[p];
          const int64_t k = ca[p];
          for (int64_t q = rb[k]; q < rb[k + 1]; ++q) acc[cb[q]] += a * vb[q];
        }
        for (int64_t s = rc[r]; s < rc[r + 1]; ++s) {
          vc[s] = acc[cc[s]];
          acc[cc[s]] = scalar_t(0);
        }
      }
    });
  });
  return values_c;
}

}  // namespace

TORCH_LIBRARY_IMPL(learnsolve, CPU, m) { m.impl("spgemm_numeric", &spgemm_numeric_cpu); }

}  // namespace learnsolve
