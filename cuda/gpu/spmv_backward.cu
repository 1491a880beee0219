// Both gradients of y = A x on the GPU in one pass over A: d values[p] =
// g[r(p)] x[c(p)], written in place, and d x = A^T g, scattered with
// atomicAdd into a zeroed vector (one group of lanes per row, as spmv).
// NON-DETERMINISTIC: the order of the atomic additions into d x varies from
// run to run, so d x may differ in the last bits between runs (the CPU kernel
// is deterministic); d values is exact and deterministic.
#include <torch/library.h>

#include <tuple>

#include "common.cuh"

namespace learnsolve {
namespace gpu {
namespace {

template <typename scalar_t, typename index_t>
__global__ void spmv_backward_kernel(const int64_t* __restrict__ rp,
                                     const index_t* __restrict__ ci,
                                     const scalar_t* __restrict__ v,
                                     const scalar_t* __restrict__ x,
                                     const scalar_t* __restrict__ g, scalar_t* __restrict__ gv,
                                     scalar_t* __restrict__ gx, int64_t nrows) {
  for (int64_t r = global_warp(); r < nrows; r += warp_count()) {
    const scalar_t gr = g[r];
    for (int64_t p = rp[r] + lane_id(); p < rp[r + 1]; p += kWarp) {
      const int64_t c = static_cast<int64_t>(ci[p]);
      gv[p] = gr * x[c];
      atomicAdd(gx + c, v[p] * gr);
    }
  }
}

std::tuple<at::Tensor, at::Tensor> spmv_backward_cuda(const at::Tensor& crow,
                                                      const at::Tensor& col,
                                                      const at::Tensor& values,
                                                      const at::Tensor& x,
                                                      const at::Tensor& grad) {
  check_spmv_backward(crow, col, values, x, grad);
  const int64_t nrows = crow.numel() - 1;
  const at::Device device = crow.device();
  c10::cuda::CUDAGuard guard(device);
  const int64_t ncols = x.numel();
  const auto crow_c = crow.contiguous(), col_c = col.contiguous();
  const auto values_c = values.contiguous(), x_c = x.contiguous(), g_c = grad.contiguous();
  auto grad_values = at::empty({col.numel()}, values.options());
  auto grad_x = at::zeros({ncols}, values.options());
  if (nrows <= 0 || col.numel() == 0) return {grad_values, grad_x};
  AT_DISPATCH_FLOATING_TYPES(values.scalar_type(), "spmv_backward_cuda", [&] {
  AT_DISPATCH_INDEX_TYPES(col.scalar_type(), "spmv_backward_cuda", [&] {
    spmv_backward_kernel<scalar_t, index_t><<<warp_blocks(nrows), kThreads, 0, stream()>>>(
        crow_c.data_ptr<int64_t>(), col_c.data_ptr<index_t>(), values_c.data_ptr<scalar_t>(),
        x_c.data_ptr<scalar_t>(), g_c.data_ptr<scalar_t>(), grad_values.data_ptr<scalar_t>(),
        grad_x.data_ptr<scalar_t>(), nrows);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  });
  return {grad_values, grad_x};
}

}  // namespace
}  // namespace gpu

TORCH_LIBRARY_IMPL(learnsolve, CUDA, m) { m.impl("spmv_backward", &gpu::spmv_backward_cuda); }

}  // namespace learnsolve
