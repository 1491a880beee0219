// Y = A X, or Y = A^T X (transpose=True, through the cached transpose of A),
// on the GPU: one warp per row of A, its lanes over the columns of X (so the
// reads of a row of X and the write of a row of Y are coalesced), 32 columns
// at a time. The warp loads 32 (column, value) pairs of the row at once and
// broadcasts them by shuffles, so the pattern is read once per 32 columns of
// X. Each output is a sequential sum in storage order, as on the CPU:
// deterministic. Accumulation in the values' type (float64 for float64).
#include <torch/library.h>

#include "common.cuh"

namespace learnsolve {
namespace gpu {
namespace {

template <typename scalar_t, typename index_t>
__global__ void spmm_kernel(const int64_t* __restrict__ rp, const index_t* __restrict__ ci,
                            const int64_t* __restrict__ perm, const scalar_t* __restrict__ v,
                            const scalar_t* __restrict__ x, scalar_t* __restrict__ y,
                            int64_t nrows, int64_t k) {
  const int lane = lane_id();
  for (int64_t r = global_warp(); r < nrows; r += warp_count()) {
    const int64_t begin = rp[r], end = rp[r + 1];
    for (int64_t j0 = 0; j0 < k; j0 += kWarp) {
      const int64_t j = j0 + lane;
      scalar_t acc = 0;
      for (int64_t p0 = begin; p0 < end; p0 += kWarp) {
        // Lane t holds entry p0 + t of the row.
        int64_t my_col = 0;
        scalar_t my_val = 0;
        if (p0 + lane < end) {
          my_col = static_cast<int64_t>(ci[p0 + lane]);
          my_val = v[perm == nullptr ? p0 + lane : perm[p0 + lane]];
        }
        const int n = end - p0 < kWarp ? static_cast<int>(end - p0) : kWarp;
        for (int t = 0; t < n; ++t) {
          const int64_t c = __shfl_sync(0xffffffffu, my_col, t);
          const scalar_t a = __shfl_sync(0xffffffffu, my_val, t);
          if (j < k) acc += a * x[c * k + j];
        }
      }
      if (j < k) y[r * k + j] = acc;
    }
  }
}

at::Tensor spmm_cuda(const at::Tensor& crow, const at::Tensor& col, const at::Tensor& values,
                     const at::Tensor& x, const std::optional<at::Tensor>& t_crow,
                     const std::optional<at::Tensor>& t_col,
                     const std::optional<at::Tensor>& t_perm, bool transpose) {
  const ProductPattern a = product_pattern("spmm", crow, col, t_crow, t_col, t_perm, transpose);
  check_product_operands("spmm", col, values, x, 2);
  const at::Device device = crow.device();
  c10::cuda::CUDAGuard guard(device);
  const int64_t nrows = a.crow.numel() - 1;
  const int64_t k = x.size(1);
  const auto values_c = values.contiguous();
  const auto x_c = x.contiguous();
  auto y = at::empty({nrows, k}, x.options());
  if (k == 0 || nrows == 0) return y;
  AT_DISPATCH_FLOATING_TYPES(values.scalar_type(), "spmm_cuda", [&] {
  AT_DISPATCH_INDEX_TYPES(a.col.scalar_type(), "spmm_cuda", [&] {
    spmm_kernel<scalar_t, index_t><<<warp_blocks(nrows), kThreads, 0, stream()>>>(
        a.crow.data_ptr<int64_t>(), a.col.data_ptr<index_t>(),
        transpose ? a.perm.data_ptr<int64_t>() : nullptr, values_c.data_ptr<scalar_t>(),
        x_c.data_ptr<scalar_t>(), y.data_ptr<scalar_t>(), nrows, k);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  });
  return y;
}

}  // namespace
}  // namespace gpu

TORCH_LIBRARY_IMPL(learnsolve, CUDA, m) { m.impl("spmm", &gpu::spmm_cuda); }

}  // namespace learnsolve
