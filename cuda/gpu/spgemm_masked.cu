// (V W^T) ⊙ mask(M) for sparse V and W on the GPU: one warp per stored entry
// (r, c) of M (balanced over entries), its lanes over row c of W; each entry
// (c, j) of W is matched with V[r, j] by a binary search in row r of V, and
// the warp sums the products by shuffles. Nothing outside the mask is
// computed; no atomics, so the result is deterministic (its sum order differs
// from the CPU's sequential one: equal to rounding). Accumulation in the
// values' type (float64 for float64).
#include <torch/library.h>

#include "common.cuh"

namespace learnsolve {
namespace gpu {
namespace {

template <typename scalar_t>
__global__ void spgemm_masked_kernel(const int64_t* __restrict__ rows_m,
                                     const int64_t* __restrict__ cm,
                                     const int64_t* __restrict__ rv,
                                     const int64_t* __restrict__ cv,
                                     const scalar_t* __restrict__ vv,
                                     const int64_t* __restrict__ rw,
                                     const int64_t* __restrict__ cw,
                                     const scalar_t* __restrict__ vw, scalar_t* __restrict__ out,
                                     int64_t nnz_m) {
  for (int64_t p = global_warp(); p < nnz_m; p += warp_count()) {
    const int64_t r = rows_m[p], c = cm[p];
    const int64_t v0 = rv[r], v1 = rv[r + 1];
    scalar_t acc = 0;
    if (v0 < v1) {
      for (int64_t q = rw[c] + lane_id(); q < rw[c + 1]; q += kWarp) {
        const int64_t s = find_sorted(cv, v0, v1, cw[q]);
        if (s >= 0) acc += vv[s] * vw[q];
      }
    }
    acc = group_sum(acc);
    if (lane_id() == 0) out[p] = acc;
  }
}

at::Tensor spgemm_masked_cuda(const at::Tensor& crow_m, const at::Tensor& col_m,
                              const at::Tensor& crow_v, const at::Tensor& col_v,
                              const at::Tensor& values_v, const at::Tensor& crow_w,
                              const at::Tensor& col_w, const at::Tensor& values_w, int64_t inner) {
  check_spgemm_masked(crow_m, col_m, crow_v, col_v, values_v, crow_w, col_w, values_w, inner);
  const at::Device device = crow_m.device();
  c10::cuda::CUDAGuard guard(device);
  const int64_t nnz_m = col_m.numel();
  const auto rm_c = crow_m.contiguous(), cm_c = col_m.contiguous();
  const auto rv_c = crow_v.contiguous(), cv_c = col_v.contiguous(), vv_c = values_v.contiguous();
  const auto rw_c = crow_w.contiguous(), cw_c = col_w.contiguous(), vw_c = values_w.contiguous();
  auto out = at::empty({nnz_m}, values_v.options());
  if (nnz_m == 0) return out;
  const at::Tensor rows_m = entry_rows(rm_c, nnz_m);
  AT_DISPATCH_FLOATING_TYPES(values_v.scalar_type(), "spgemm_masked_cuda", [&] {
    spgemm_masked_kernel<scalar_t><<<warp_blocks(nnz_m), kThreads, 0, stream()>>>(
        rows_m.data_ptr<int64_t>(), cm_c.data_ptr<int64_t>(), rv_c.data_ptr<int64_t>(),
        cv_c.data_ptr<int64_t>(), vv_c.data_ptr<scalar_t>(), rw_c.data_ptr<int64_t>(),
        cw_c.data_ptr<int64_t>(), vw_c.data_ptr<scalar_t>(), out.data_ptr<scalar_t>(), nnz_m);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return out;
}

}  // namespace
}  // namespace gpu

TORCH_LIBRARY_IMPL(learnsolve, CUDA, m) { m.impl("spgemm_masked", &gpu::spgemm_masked_cuda); }

}  // namespace learnsolve
