// Values of alpha A + beta B on the union of their patterns on the GPU, from
// csr_merge's one-to-one maps: the union is zeroed, A's entries written, B's
// added, one thread per entry, the two passes ordered on the stream (no
// conflicts within a pass, since a map hits each position at most once).
// alpha and beta are read on the device (no host sync). Deterministic.
#include <torch/library.h>

#include "common.cuh"

namespace learnsolve {
namespace gpu {
namespace {

// o[map[p]] = a * v[p] (accumulate=false) or o[map[p]] += a * v[p].
template <typename scalar_t, bool accumulate>
__global__ void place_kernel(const scalar_t* __restrict__ v, const int64_t* __restrict__ map,
                             const scalar_t* __restrict__ alpha, scalar_t* __restrict__ o,
                             int64_t n) {
  const scalar_t a = *alpha;
  for (int64_t p = global_thread(); p < n; p += thread_count()) {
    const int64_t q = map[p];
    if (q < 0) continue;  // an entry outside the result (never so for a union)
    if (accumulate) o[q] += a * v[p]; else o[q] = a * v[p];
  }
}

at::Tensor csr_add_values_cuda(const at::Tensor& values_a, const at::Tensor& map_a,
                               const at::Tensor& values_b, const at::Tensor& map_b, int64_t nnz,
                               const at::Tensor& alpha, const at::Tensor& beta) {
  check_csr_add_values(values_a, map_a, values_b, map_b, nnz, alpha, beta);
  const at::Device device = values_a.device();
  c10::cuda::CUDAGuard guard(device);
  const at::Tensor a = device_scale(alpha, "csr_add_values", "alpha", values_a.options());
  const at::Tensor b = device_scale(beta, "csr_add_values", "beta", values_a.options());
  const auto va_c = values_a.contiguous(), ma_c = map_a.contiguous();
  const auto vb_c = values_b.contiguous(), mb_c = map_b.contiguous();
  auto out = at::zeros({nnz}, values_a.options());
  if (nnz == 0) return out;
  const int64_t na = values_a.numel(), nb = values_b.numel();
  AT_DISPATCH_FLOATING_TYPES(values_a.scalar_type(), "csr_add_values_cuda", [&] {
    scalar_t* o = out.data_ptr<scalar_t>();
    if (na > 0) {
      place_kernel<scalar_t, false><<<thread_blocks(na), kThreads, 0, stream()>>>(
          va_c.data_ptr<scalar_t>(), ma_c.data_ptr<int64_t>(), a.data_ptr<scalar_t>(), o, na);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    }
    if (nb > 0) {
      place_kernel<scalar_t, true><<<thread_blocks(nb), kThreads, 0, stream()>>>(
          vb_c.data_ptr<scalar_t>(), mb_c.data_ptr<int64_t>(), b.data_ptr<scalar_t>(), o, nb);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    }
  });
  return out;
}

}  // namespace
}  // namespace gpu

TORCH_LIBRARY_IMPL(learnsolve, CUDA, m) { m.impl("csr_add_values", &gpu::csr_add_values_cuda); }

}  // namespace learnsolve
