// x = T^{-1} b, or T^{-T} b with transpose=True, on the GPU, for T the lower
// (or upper) triangle of a square CSR matrix, along the level sets of
// sptrsv_analysis (which must be on the matrix's device): see triangular.cuh
// for the scheme (a warp per row, one launch per wide level, one single-block
// launch per run of narrow levels; no inter-block waiting, so no deadlock).
// A missing or zero diagonal raises torch.linalg.LinAlgError naming the row
// before anything is launched. The transposed solve reads the transpose
// pattern (t_crow, t_col, t_perm), which it requires. Deterministic.
#include <torch/library.h>

#include <optional>

#include "triangular.cuh"

namespace learnsolve {
namespace gpu {
namespace {

at::Tensor sptrsv_cuda(const at::Tensor& crow, const at::Tensor& col, const at::Tensor& values,
                       const at::Tensor& b, const at::Tensor& level_ptr,
                       const at::Tensor& level_rows, const at::Tensor& diag, bool lower,
                       bool unit_diagonal, const std::optional<at::Tensor>& t_crow,
                       const std::optional<at::Tensor>& t_col,
                       const std::optional<at::Tensor>& t_perm, bool transpose) {
  const TriangularAnalysis an =
      check_triangular("sptrsv", crow, col, values, level_ptr, level_rows, diag);
  const ProductPattern t = product_pattern("sptrsv", crow, col, t_crow, t_col, t_perm, transpose);
  const at::Device device = crow.device();
  c10::cuda::CUDAGuard guard(device);
  const auto crow_c = crow.contiguous();
  const auto col_c = col.contiguous();
  const int64_t n = crow.numel() - 1;
  const int64_t k = check_triangular_rhs(values, b, n);
  const auto values_c = values.contiguous();
  auto x = at::empty(b.sizes(), b.options());
  x.copy_(b);
  AT_DISPATCH_FLOATING_TYPES(values.scalar_type(), "sptrsv_cuda", [&] {
    const scalar_t* v = values_c.data_ptr<scalar_t>();
    if (!unit_diagonal) check_diagonal_cuda("sptrsv", an.diag, v, n);
    if (n == 0 || k == 0) return;
    const TriangularRows<scalar_t> rows{
        transpose ? t.crow.data_ptr<int64_t>() : crow_c.data_ptr<int64_t>(),
        transpose ? t.col.data_ptr<int64_t>() : col_c.data_ptr<int64_t>(),
        transpose ? t.perm.data_ptr<int64_t>() : nullptr,
        v,
        an.diag.data_ptr<int64_t>(),
        lower != transpose,
        unit_diagonal,
        k};
    solve_triangular_cuda(rows, an.level_ptr, host_level_ptr(an.level_ptr), an.level_rows,
                          /*backwards=*/transpose, x.data_ptr<scalar_t>());
  });
  return x;
}

}  // namespace
}  // namespace gpu

TORCH_LIBRARY_IMPL(learnsolve, CUDA, m) { m.impl("sptrsv", &gpu::sptrsv_cuda); }

}  // namespace learnsolve
