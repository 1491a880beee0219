// (X Y^T) ⊙ mask(A) on the GPU: for each stored entry (r, c) the dot product
// of row r of X and row c of Y. One warp per row of the pattern; with few
// columns (k <= 8) each lane takes one entry of the row and sums its k
// products alone, otherwise the warp takes the entries one by one, its lanes
// over the k columns (coalesced), and reduces by shuffles. Deterministic.
// Accumulation in the operands' type (float64 for float64).
#include <torch/library.h>

#include <optional>

#include "common.cuh"

namespace learnsolve {
namespace gpu {
namespace {

constexpr int64_t kNarrow = 8;  // up to this many columns: one lane per entry

template <typename scalar_t, typename index_t>
__global__ void sampled_narrow_kernel(const int64_t* __restrict__ rp,
                                      const index_t* __restrict__ ci,
                                      const scalar_t* __restrict__ x,
                                      const scalar_t* __restrict__ y, scalar_t* __restrict__ out,
                                      int64_t nrows, int64_t k) {
  for (int64_t r = global_warp(); r < nrows; r += warp_count()) {
    const scalar_t* xr = x + r * k;
    for (int64_t p = rp[r] + lane_id(); p < rp[r + 1]; p += kWarp) {
      const scalar_t* yr = y + static_cast<int64_t>(ci[p]) * k;
      scalar_t acc = 0;
      for (int64_t j = 0; j < k; ++j) acc += xr[j] * yr[j];
      out[p] = acc;
    }
  }
}

template <typename scalar_t, typename index_t>
__global__ void sampled_wide_kernel(const int64_t* __restrict__ rp,
                                    const index_t* __restrict__ ci,
                                    const scalar_t* __restrict__ x,
                                    const scalar_t* __restrict__ y, scalar_t* __restrict__ out,
                                    int64_t nrows, int64_t k) {
  const int lane = lane_id();
  for (int64_t r = global_warp(); r < nrows; r += warp_count()) {
    const scalar_t* xr = x + r * k;
    for (int64_t p = rp[r]; p < rp[r + 1]; ++p) {
      const scalar_t* yr = y + static_cast<int64_t>(ci[p]) * k;
      scalar_t acc = 0;
      for (int64_t j = lane; j < k; j += kWarp) acc += xr[j] * yr[j];
      acc = group_sum(acc);
      if (lane == 0) out[p] = acc;
    }
  }
}

at::Tensor sampled_matmul_cuda(const at::Tensor& crow, const at::Tensor& col, const at::Tensor& x,
                               const at::Tensor& y, const std::optional<at::Tensor>& /*t_crow*/,
                               const std::optional<at::Tensor>& /*t_col*/,
                               const std::optional<at::Tensor>& /*t_perm*/) {
  check_sampled_matmul(crow, col, x, y);
  const int64_t nrows = crow.numel() - 1;
  const int64_t k = x.dim() == 2 ? x.size(1) : 1;
  const at::Device device = crow.device();
  c10::cuda::CUDAGuard guard(device);
  const auto crow_c = crow.contiguous();
  const auto col_c = col.contiguous();
  const auto x_c = x.contiguous();
  const auto y_c = y.contiguous();
  auto out = at::empty({col.numel()}, x.options());
  if (nrows <= 0 || col.numel() == 0) return out;
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "sampled_matmul_cuda", [&] {
  AT_DISPATCH_INDEX_TYPES(col.scalar_type(), "sampled_matmul_cuda", [&] {
    const int64_t* rp = crow_c.data_ptr<int64_t>();
    const index_t* ci = col_c.data_ptr<index_t>();
    const scalar_t* xp = x_c.data_ptr<scalar_t>();
    const scalar_t* yp = y_c.data_ptr<scalar_t>();
    scalar_t* o = out.data_ptr<scalar_t>();
    if (k <= kNarrow) {
      sampled_narrow_kernel<scalar_t, index_t><<<warp_blocks(nrows), kThreads, 0, stream()>>>(
          rp, ci, xp, yp, o, nrows, k);
    } else {
      sampled_wide_kernel<scalar_t, index_t><<<warp_blocks(nrows), kThreads, 0, stream()>>>(
          rp, ci, xp, yp, o, nrows, k);
    }
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  });
  return out;
}

}  // namespace
}  // namespace gpu

TORCH_LIBRARY_IMPL(learnsolve, CUDA, m) { m.impl("sampled_matmul", &gpu::sampled_matmul_cuda); }

}  // namespace learnsolve
