// The SpGEMM backward for B on the GPU: dB = (A^T G) ⊙ mask(B), for C = A B
// and G on C's pattern. One warp per stored entry (i, k) of A (balanced over
// the entries, not the rows), its lanes over row k of B: entry (k, j) of B
// gets a_ik G[i, j], G[i, j] found by a binary search in row i of C (row k of
// B lies inside row i of C, the symbolic product put it there; a column not
// found adds nothing). Contributions of different rows i to one entry of B
// are added with atomicAdd into a zeroed output.
// NON-DETERMINISTIC: the order of those additions varies between runs, so
// results may differ in the last bits between runs and from the CPU.
// Accumulation in the values' type (float64 for float64).
#include <torch/library.h>

#include "common.cuh"

namespace learnsolve {
namespace gpu {
namespace {

template <typename scalar_t>
__global__ void spgemm_grad_b_kernel(const int64_t* __restrict__ rows_a,
                                     const int64_t* __restrict__ ca,
                                     const scalar_t* __restrict__ va,
                                     const int64_t* __restrict__ rc,
                                     const int64_t* __restrict__ cc,
                                     const scalar_t* __restrict__ g,
                                     const int64_t* __restrict__ rb,
                                     const int64_t* __restrict__ cb, scalar_t* __restrict__ out,
                                     int64_t nnz_a) {
  for (int64_t p = global_warp(); p < nnz_a; p += warp_count()) {
    const int64_t i = rows_a[p], k = ca[p];
    const scalar_t a = va[p];
    const int64_t c0 = rc[i], c1 = rc[i + 1];
    for (int64_t q = rb[k] + lane_id(); q < rb[k + 1]; q += kWarp) {
      const int64_t s = find_sorted(cc, c0, c1, cb[q]);
      if (s >= 0) atomicAdd(out + q, a * g[s]);
    }
  }
}

at::Tensor spgemm_grad_b_cuda(const at::Tensor& crow_a, const at::Tensor& col_a,
                              const at::Tensor& values_a, const at::Tensor& crow_c,
                              const at::Tensor& col_c, const at::Tensor& grad_c,
                              const at::Tensor& crow_b, const at::Tensor& col_b, int64_t ncols) {
  check_spgemm_grad_b(crow_a, col_a, values_a, crow_c, col_c, grad_c, crow_b, col_b, ncols);
  const at::Device device = crow_a.device();
  c10::cuda::CUDAGuard guard(device);
  const int64_t nnz_a = col_a.numel();
  const auto ra_c = crow_a.contiguous(), ca_c = col_a.contiguous(), va_c = values_a.contiguous();
  const auto rc_c = crow_c.contiguous(), cc_c = col_c.contiguous(), g_c = grad_c.contiguous();
  const auto rb_c = crow_b.contiguous(), cb_c = col_b.contiguous();
  auto out = at::zeros({col_b.numel()}, values_a.options());
  if (nnz_a == 0 || col_b.numel() == 0) return out;
  const at::Tensor rows_a = entry_rows(ra_c, nnz_a);
  AT_DISPATCH_FLOATING_TYPES(values_a.scalar_type(), "spgemm_grad_b_cuda", [&] {
    spgemm_grad_b_kernel<scalar_t><<<warp_blocks(nnz_a), kThreads, 0, stream()>>>(
        rows_a.data_ptr<int64_t>(), ca_c.data_ptr<int64_t>(), va_c.data_ptr<scalar_t>(),
        rc_c.data_ptr<int64_t>(), cc_c.data_ptr<int64_t>(), g_c.data_ptr<scalar_t>(),
        rb_c.data_ptr<int64_t>(), cb_c.data_ptr<int64_t>(), out.data_ptr<scalar_t>(), nnz_a);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return out;
}

}  // namespace
}  // namespace gpu

TORCH_LIBRARY_IMPL(learnsolve, CUDA, m) { m.impl("spgemm_grad_b", &gpu::spgemm_grad_b_cuda); }

}  // namespace learnsolve
