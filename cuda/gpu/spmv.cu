// y = A x, or y = A^T x (transpose=True, through the cached transpose of A),
// on the GPU: CSR-vector. Each row is one group of G lanes (G = 2 ... 32, a
// power of two chosen from the mean row length, so short rows do not leave
// most of a warp idle and long rows are shared by a whole warp); the group's
// lanes stride over the row, coalesced, and reduce with shuffles. The sum
// order differs from the CPU's sequential one (results agree to rounding);
// it is fixed for a given pattern, so the result is deterministic.
// Accumulation in the values' type (float64 for float64).
#include <torch/library.h>

#include "common.cuh"

namespace learnsolve {
namespace gpu {
namespace {

template <typename scalar_t, typename index_t, int G>
__global__ void spmv_kernel(const int64_t* __restrict__ rp, const index_t* __restrict__ ci,
                            const int64_t* __restrict__ perm, const scalar_t* __restrict__ v,
                            const scalar_t* __restrict__ x, scalar_t* __restrict__ y,
                            int64_t nrows) {
  const int64_t group = global_thread() / G;
  const int64_t groups = thread_count() / G;
  const int lane = threadIdx.x & (G - 1);
  // All lanes of a warp run the same number of iterations (groups tile the
  // warp and the bound is uniform per iteration step), so the shuffles
  // inside are safe: rows past the end contribute nothing.
  const int64_t rounds = (nrows + groups - 1) / groups;
  for (int64_t it = 0; it < rounds; ++it) {
    const int64_t r = group + it * groups;
    scalar_t acc = 0;
    if (r < nrows) {
      const int64_t end = rp[r + 1];
      if (perm == nullptr) {
        for (int64_t p = rp[r] + lane; p < end; p += G) acc += v[p] * x[ci[p]];
      } else {
        for (int64_t p = rp[r] + lane; p < end; p += G) acc += v[perm[p]] * x[ci[p]];
      }
    }
    acc = group_sum(acc, G);
    if (r < nrows && lane == 0) y[r] = acc;
  }
}

template <typename scalar_t, typename index_t, int G>
void launch(const int64_t* rp, const index_t* ci, const int64_t* perm, const scalar_t* v,
            const scalar_t* x, scalar_t* y, int64_t nrows) {
  spmv_kernel<scalar_t, index_t, G><<<blocks_for(nrows, kThreads / G), kThreads, 0, stream()>>>(
      rp, ci, perm, v, x, y, nrows);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

at::Tensor spmv_cuda(const at::Tensor& crow, const at::Tensor& col, const at::Tensor& values,
                     const at::Tensor& x, const std::optional<at::Tensor>& t_crow,
                     const std::optional<at::Tensor>& t_col,
                     const std::optional<at::Tensor>& t_perm, bool transpose) {
  const ProductPattern a = product_pattern("spmv", crow, col, t_crow, t_col, t_perm, transpose);
  check_product_operands("spmv", col, values, x, 1);
  const at::Device device = crow.device();
  c10::cuda::CUDAGuard guard(device);
  const int64_t nrows = a.crow.numel() - 1;
  const auto values_c = values.contiguous();
  const auto x_c = x.contiguous();
  auto y = at::empty({nrows}, x.options());
  if (nrows == 0) return y;
  // Mean row length (host-side from sizes only: no sync) picks the group.
  const int64_t mean = col.numel() / nrows;
  AT_DISPATCH_FLOATING_TYPES(values.scalar_type(), "spmv_cuda", [&] {
  AT_DISPATCH_INDEX_TYPES(a.col.scalar_type(), "spmv_cuda", [&] {
    const int64_t* rp = a.crow.data_ptr<int64_t>();
    const index_t* ci = a.col.data_ptr<index_t>();
    const int64_t* perm = transpose ? a.perm.data_ptr<int64_t>() : nullptr;
    const scalar_t* v = values_c.data_ptr<scalar_t>();
    const scalar_t* xp = x_c.data_ptr<scalar_t>();
    scalar_t* yp = y.data_ptr<scalar_t>();
    if (mean <= 2) launch<scalar_t, index_t, 2>(rp, ci, perm, v, xp, yp, nrows);
    else if (mean <= 4) launch<scalar_t, index_t, 4>(rp, ci, perm, v, xp, yp, nrows);
    else if (mean <= 8) launch<scalar_t, index_t, 8>(rp, ci, perm, v, xp, yp, nrows);
    else if (mean <= 16) launch<scalar_t, index_t, 16>(rp, ci, perm, v, xp, yp, nrows);
    else launch<scalar_t, index_t, 32>(rp, ci, perm, v, xp, yp, nrows);
  });
  });
  return y;
}

}  // namespace
}  // namespace gpu

TORCH_LIBRARY_IMPL(learnsolve, CUDA, m) { m.impl("spmv", &gpu::spmv_cuda); }

}  // namespace learnsolve
