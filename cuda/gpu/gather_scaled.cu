// out[p] = alpha * source[index[p]] on the GPU: one thread per output entry.
// alpha is read on the device (no host sync). Deterministic.
#include <torch/library.h>

#include "common.cuh"

namespace learnsolve {
namespace gpu {
namespace {

template <typename scalar_t>
__global__ void gather_scaled_kernel(const scalar_t* __restrict__ s,
                                     const int64_t* __restrict__ idx,
                                     const scalar_t* __restrict__ alpha,
                                     scalar_t* __restrict__ o, int64_t n) {
  const scalar_t a = *alpha;
  for (int64_t p = global_thread(); p < n; p += thread_count()) o[p] = a * s[idx[p]];
}

at::Tensor gather_scaled_cuda(const at::Tensor& source, const at::Tensor& index,
                              const std::optional<at::Tensor>& alpha) {
  check_gather_scaled(source, index);
  const at::Device device = source.device();
  c10::cuda::CUDAGuard guard(device);
  const at::Tensor a = device_scale(alpha, "gather_scaled", "alpha", source.options());
  const auto source_c = source.contiguous();
  const auto index_c = index.contiguous();
  const int64_t n = index.numel();
  auto out = at::empty({n}, source.options());
  if (n == 0) return out;
  AT_DISPATCH_FLOATING_TYPES(source.scalar_type(), "gather_scaled_cuda", [&] {
    gather_scaled_kernel<scalar_t><<<thread_blocks(n), kThreads, 0, stream()>>>(
        source_c.data_ptr<scalar_t>(), index_c.data_ptr<int64_t>(), a.data_ptr<scalar_t>(),
        out.data_ptr<scalar_t>(), n);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return out;
}

}  // namespace
}  // namespace gpu

TORCH_LIBRARY_IMPL(learnsolve, CUDA, m) { m.impl("gather_scaled", &gpu::gather_scaled_cuda); }

}  // namespace learnsolve
