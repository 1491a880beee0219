// (X Y^T) ⊙ mask(A): for each stored entry (r, c) of A the dot product of row r
// of X and row c of Y; never the dense product. A 1-D x and y stand for
// one-column matrices, so the result is the masked outer product x y^T.
#include <torch/library.h>

#include <optional>

#include "op_checks.h"

namespace learnsolve {
namespace {

at::Tensor sampled_matmul_cpu(const at::Tensor& crow, const at::Tensor& col, const at::Tensor& x,
                              const at::Tensor& y, const std::optional<at::Tensor>& /*t_crow*/,
                              const std::optional<at::Tensor>& /*t_col*/,
                              const std::optional<at::Tensor>& /*t_perm*/) {
  check_sampled_matmul(crow, col, x, y);
  const int64_t nrows = crow.numel() - 1;
  const int64_t k = x.dim() == 2 ? x.size(1) : 1;
  const auto crow_c = crow.contiguous();
  const auto col_c = col.contiguous();
  const auto x_c = x.contiguous();
  const auto y_c = y.contiguous();
  auto out = new_buffer({col.numel()}, x.options());
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "sampled_matmul_cpu", [&] {
  AT_DISPATCH_INDEX_TYPES(col.scalar_type(), "sampled_matmul_cpu", [&] {
    const int64_t* rp = crow_c.data_ptr<int64_t>();
    const index_t* ci = col_c.data_ptr<index_t>();
    const scalar_t* xp = x_c.data_ptr<scalar_t>();
    const scalar_t* yp = y_c.data_ptr<scalar_t>();
    scalar_t* op = out.data_ptr<scalar_t>();
    parallel_rows(rp, nrows, [&](int64_t, int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
        const scalar_t* xr = xp + r * k;
        for (int64_t p = rp[r]; p < rp[r + 1]; ++p) {
          const scalar_t* yr = yp + ci[p] * k;
          scalar_t acc = 0;
          for (int64_t j = 0; j < k; ++j) acc += xr[j] * yr[j];
          op[p] = acc;
        }
      }
    });
  });
  });
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(learnsolve, CPU, m) { m.impl("sampled_matmul", &sampled_matmul_cpu); }

}  // namespace learnsolve
