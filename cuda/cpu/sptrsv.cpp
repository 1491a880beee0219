// x = T^{-1} b, or T^{-T} b with transpose=True, for T the lower (or upper)
// triangle of a square CSR matrix, with the level analysis of
// sptrsv_analysis: rows of one level are solved in parallel.
#include <torch/library.h>

#include <optional>

#include "triangular.h"

namespace learnsolve {
namespace {

at::Tensor sptrsv_cpu(const at::Tensor& crow, const at::Tensor& col, const at::Tensor& values,
                      const at::Tensor& b, const at::Tensor& level_ptr,
                      const at::Tensor& level_rows, const at::Tensor& diag, bool lower,
                      bool unit_diagonal, const std::optional<at::Tensor>& t_crow,
                      const std::optional<at::Tensor>& t_col,
                      const std::optional<at::Tensor>& t_perm, bool transpose) {
  const TriangularAnalysis an =
      check_triangular("sptrsv", crow, col, values, level_ptr, level_rows, diag);
  const ProductPattern t = product_pattern("sptrsv", crow, col, t_crow, t_col, t_perm, transpose);
  const auto crow_c = crow.contiguous();
  const auto col_c = col.contiguous();
  const int64_t n = crow.numel() - 1;
  const int64_t k = check_triangular_rhs(values, b, n);
  const auto values_c = values.contiguous();
  auto x = new_buffer(b.sizes(), b.options());
  x.copy_(b);
  AT_DISPATCH_FLOATING_TYPES(values.scalar_type(), "sptrsv_cpu", [&] {
    const scalar_t* v = values_c.data_ptr<scalar_t>();
    const int64_t* dp = an.diag.data_ptr<int64_t>();
    if (!unit_diagonal) check_diagonal("sptrsv", dp, v, n);
    const TriangularSystem<scalar_t> system{
        n, crow_c.data_ptr<int64_t>(), col_c.data_ptr<int64_t>(),
        transpose ? t.crow.data_ptr<int64_t>() : nullptr,
        transpose ? t.col.data_ptr<int64_t>() : nullptr,
        transpose ? t.perm.data_ptr<int64_t>() : nullptr, v, dp, lower, unit_diagonal,
        an.level_ptr.data_ptr<int64_t>(), an.level_rows.data_ptr<int64_t>(),
        an.level_ptr.numel() - 1};
    solve_triangular(system, transpose, k, x.data_ptr<scalar_t>());
  });
  return x;
}

}  // namespace

TORCH_LIBRARY_IMPL(learnsolve, CPU, m) { m.impl("sptrsv", &sptrsv_cpu); }

}  // namespace learnsolve
