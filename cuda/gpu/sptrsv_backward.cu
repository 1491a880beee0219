// Both gradients of x = op(T)^{-1} b on the GPU (op: identity, or the
// transpose with transpose=True): w = op(T)^{-T} g, the gradient for b, by the
// opposite solve along the same levels (triangular.cuh), then the gradient
// for the values on the triangle's entries, -(w x^T) (or -(x w^T) for the
// transposed solve), one warp per row of A and a lane per entry; entries
// outside the triangle (and the diagonal of a unit triangle) get zero.
// A missing or zero diagonal raises torch.linalg.LinAlgError before any
// launch. Deterministic. Accumulation in the values' type.
#include <torch/library.h>

#include <optional>
#include <tuple>

#include "triangular.cuh"

namespace learnsolve {
namespace gpu {
namespace {

// d T[r, c] = -sum_j left[r, j] right[c, j] on the triangle's entries.
template <typename scalar_t>
__global__ void sptrsv_grad_values_kernel(const int64_t* __restrict__ rp,
                                          const int64_t* __restrict__ ci,
                                          const scalar_t* __restrict__ left,
                                          const scalar_t* __restrict__ right,
                                          scalar_t* __restrict__ gv, int64_t n, int64_t k,
                                          bool lower, bool unit) {
  for (int64_t r = global_warp(); r < n; r += warp_count()) {
    const scalar_t* lr = left + r * k;
    for (int64_t p = rp[r] + lane_id(); p < rp[r + 1]; p += kWarp) {
      const int64_t c = ci[p];
      const bool inside = (lower ? c < r : c > r) || (c == r && !unit);
      scalar_t acc = 0;
      if (inside) {
        const scalar_t* rr = right + c * k;
        for (int64_t j = 0; j < k; ++j) acc += lr[j] * rr[j];
      }
      gv[p] = -acc;
    }
  }
}

std::tuple<at::Tensor, at::Tensor> sptrsv_backward_cuda(
    const at::Tensor& crow, const at::Tensor& col, const at::Tensor& values, const at::Tensor& x,
    const at::Tensor& grad, const at::Tensor& level_ptr, const at::Tensor& level_rows,
    const at::Tensor& diag, bool lower, bool unit_diagonal, const at::Tensor& t_crow,
    const at::Tensor& t_col, const at::Tensor& t_perm, bool transpose) {
  const TriangularAnalysis an =
      check_triangular("sptrsv_backward", crow, col, values, level_ptr, level_rows, diag);
  const ProductPattern t =
      product_pattern("sptrsv_backward", crow, col, t_crow, t_col, t_perm, true);
  const at::Device device = crow.device();
  c10::cuda::CUDAGuard guard(device);
  const int64_t n = crow.numel() - 1;
  const int64_t k = check_triangular_grad(values, x, grad, n);
  const auto values_c = values.contiguous();
  const auto x_c = x.contiguous();
  const auto crow_c = crow.contiguous();
  const auto col_c = col.contiguous();
  auto w = at::empty(grad.sizes(), grad.options());
  w.copy_(grad);
  auto grad_values = at::empty({col.numel()}, values.options());
  AT_DISPATCH_FLOATING_TYPES(values.scalar_type(), "sptrsv_backward_cuda", [&] {
    const scalar_t* v = values_c.data_ptr<scalar_t>();
    if (!unit_diagonal) check_diagonal_cuda("sptrsv_backward", an.diag, v, n);
    if (n == 0) return;
    scalar_t* wp = w.data_ptr<scalar_t>();
    if (k > 0) {
      // The opposite solve: op(T)^T w = g.
      const bool solve_transpose = !transpose;
      const TriangularRows<scalar_t> rows{
          solve_transpose ? t.crow.data_ptr<int64_t>() : crow_c.data_ptr<int64_t>(),
          solve_transpose ? t.col.data_ptr<int64_t>() : col_c.data_ptr<int64_t>(),
          solve_transpose ? t.perm.data_ptr<int64_t>() : nullptr,
          v,
          an.diag.data_ptr<int64_t>(),
          lower != solve_transpose,
          unit_diagonal,
          k};
      solve_triangular_cuda(rows, an.level_ptr, host_level_ptr(an.level_ptr), an.level_rows,
                            /*backwards=*/solve_transpose, wp);
    }
    if (col.numel() == 0) return;
    // d T[r, c] = -sum_j w[r, j] x[c, j]  (forward T x = b)
    //           = -sum_j x[r, j] w[c, j]  (forward T^T x = b)
    const scalar_t* left = transpose ? x_c.data_ptr<scalar_t>() : wp;
    const scalar_t* right = transpose ? wp : x_c.data_ptr<scalar_t>();
    sptrsv_grad_values_kernel<scalar_t><<<warp_blocks(n), kThreads, 0, stream()>>>(
        crow_c.data_ptr<int64_t>(), col_c.data_ptr<int64_t>(), left, right,
        grad_values.data_ptr<scalar_t>(), n, k, lower, unit_diagonal);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return {grad_values, w};
}

}  // namespace
}  // namespace gpu

TORCH_LIBRARY_IMPL(learnsolve, CUDA, m) { m.impl("sptrsv_backward", &gpu::sptrsv_backward_cuda); }

}  // namespace learnsolve
