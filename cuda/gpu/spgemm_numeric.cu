// Numeric phase of C = A B on the GPU, on the pattern of the symbolic phase:
// one block per row i of A (rows strided over the grid), its warps over the
// entries (i, k), their lanes over row k of B. Each product a_ik b_kj is added
// into the accumulator of column j of row i of C, found by a binary search in
// that row's sorted columns (the pattern is known, so this lookup is exact,
// needs no hash table and no table of ncols per row). The accumulators are
// the row's slots in shared memory when the row fits (kSharedVals), else the
// output itself in global memory.
// NON-DETERMINISTIC: the additions into one entry come from several lanes by
// atomicAdd in varying order, so results may differ in the last bits between
// runs and from the CPU's sequential sum. Accumulation in the values' type
// (float64 for float64).
#include <torch/library.h>

#include "common.cuh"

namespace learnsolve {
namespace gpu {
namespace {

constexpr int kBlock = 128;
constexpr int64_t kSharedVals = 4096;

template <typename scalar_t>
__global__ void __launch_bounds__(kBlock)
spgemm_numeric_kernel(const int64_t* __restrict__ ra, const int64_t* __restrict__ ca,
                      const scalar_t* __restrict__ va, const int64_t* __restrict__ rb,
                      const int64_t* __restrict__ cb, const scalar_t* __restrict__ vb,
                      const int64_t* __restrict__ rc, const int64_t* __restrict__ cc,
                      scalar_t* __restrict__ vc, int64_t nrows) {
  __shared__ scalar_t shared_acc[kSharedVals];
  const int warp = threadIdx.x / kWarp, lane = lane_id();
  constexpr int warps = kBlock / kWarp;
  for (int64_t r = blockIdx.x; r < nrows; r += gridDim.x) {
    const int64_t c0 = rc[r], c1 = rc[r + 1];
    if (c0 == c1) continue;  // uniform over the block
    const bool in_shared = c1 - c0 <= kSharedVals;
    scalar_t* acc = in_shared ? shared_acc : vc + c0;  // vc is zeroed for the global case
    if (in_shared) {
      for (int64_t s = threadIdx.x; s < c1 - c0; s += kBlock) acc[s] = scalar_t(0);
      __syncthreads();
    }
    for (int64_t p = ra[r] + warp; p < ra[r + 1]; p += warps) {
      const scalar_t a = va[p];
      const int64_t k = ca[p];
      for (int64_t q = rb[k] + lane; q < rb[k + 1]; q += kWarp) {
        const int64_t s = find_sorted(cc, c0, c1, cb[q]);
        if (s >= 0) atomicAdd(acc + (s - c0), a * vb[q]);
      }
    }
    if (in_shared) {
      __syncthreads();
      for (int64_t s = threadIdx.x; s < c1 - c0; s += kBlock) vc[c0 + s] = acc[s];
      __syncthreads();  // before the next row reuses the accumulators
    }
  }
}

at::Tensor spgemm_numeric_cuda(const at::Tensor& crow_a, const at::Tensor& col_a,
                               const at::Tensor& values_a, const at::Tensor& crow_b,
                               const at::Tensor& col_b, const at::Tensor& values_b,
                               const at::Tensor& crow_c, const at::Tensor& col_c, int64_t ncols) {
  check_spgemm_numeric(crow_a, col_a, values_a, crow_b, col_b, values_b, crow_c, col_c, ncols);
  const at::Device device = crow_a.device();
  c10::cuda::CUDAGuard guard(device);
  const int64_t nrows = crow_a.numel() - 1;
  const auto ra_c = crow_a.contiguous(), ca_c = col_a.contiguous(), va_c = values_a.contiguous();
  const auto rb_c = crow_b.contiguous(), cb_c = col_b.contiguous(), vb_c = values_b.contiguous();
  const auto rc_c = crow_c.contiguous(), cc_c = col_c.contiguous();
  auto values_c = at::zeros({col_c.numel()}, values_a.options());
  if (nrows == 0 || col_c.numel() == 0) return values_c;
  AT_DISPATCH_FLOATING_TYPES(values_a.scalar_type(), "spgemm_numeric_cuda", [&] {
    spgemm_numeric_kernel<scalar_t><<<blocks_for(nrows, 1), kBlock, 0, stream()>>>(
        ra_c.data_ptr<int64_t>(), ca_c.data_ptr<int64_t>(), va_c.data_ptr<scalar_t>(),
        rb_c.data_ptr<int64_t>(), cb_c.data_ptr<int64_t>(), vb_c.data_ptr<scalar_t>(),
        rc_c.data_ptr<int64_t>(), cc_c.data_ptr<int64_t>(), values_c.data_ptr<scalar_t>(), nrows);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return values_c;
}

}  // namespace
}  // namespace gpu

TORCH_LIBRARY_IMPL(learnsolve, CUDA, m) { m.impl("spgemm_numeric", &gpu::spgemm_numeric_cuda); }

}  // namespace learnsolve
