// y = A x, or y = A^T x (transpose=True, through the cached transpose of A),
// for CSR A and a dense vector x: one dot product per row.
#include <torch/library.h>

#include "common.h"

namespace learnsolve {
namespace {

at::Tensor spmv_cpu(const at::Tensor& crow, const at::Tensor& col, const at::Tensor& values,
                    const at::Tensor& x, const std::optional<at::Tensor>& t_crow,
                    const std::optional<at::Tensor>& t_col,
                    const std::optional<at::Tensor>& t_perm, bool transpose) {
  const ProductPattern a = product_pattern("spmv", crow, col, t_crow, t_col, t_perm, transpose);
  check_product_operands("spmv", col, values, x, 1);
  const int64_t nrows = a.crow.numel() - 1;
  const auto values_c = values.contiguous();
  const auto x_c = x.contiguous();
  auto y = new_buffer({nrows}, x.options());
  AT_DISPATCH_FLOATING_TYPES(values.scalar_type(), "spmv_cpu", [&] {
  AT_DISPATCH_INDEX_TYPES(a.col.scalar_type(), "spmv_cpu", [&] {
    const int64_t* rp = a.crow.data_ptr<int64_t>();
    const index_t* ci = a.col.data_ptr<index_t>();
    const int64_t* perm = transpose ? a.perm.data_ptr<int64_t>() : nullptr;
    const scalar_t* v = values_c.data_ptr<scalar_t>();
    const scalar_t* xp = x_c.data_ptr<scalar_t>();
    scalar_t* yp = y.data_ptr<scalar_t>();
    parallel_rows(rp, nrows, [&](int64_t, int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
        scalar_t acc = 0;
        if (perm == nullptr) {
          for (int64_t p = rp[r]; p < rp[r + 1]; ++p) acc += v[p] * xp[ci[p]];
        } else {
          for (int64_t p = rp[r]; p < rp[r + 1]; ++p) acc += v[perm[p]] * xp[ci[p]];
        }
        yp[r] = acc;
      }
    });
  });
  });
  return y;
}

}  // namespace

TORCH_LIBRARY_IMPL(learnsolve, CPU, m) { m.impl("spmv", &spmv_cpu); }

}  // namespace learnsolve
