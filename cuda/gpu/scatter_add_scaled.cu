// out = zeros(size); out[index[p]] += alpha * source[p] on the GPU: one thread
// per source entry, atomicAdd into the output (double atomicAdd: sm_60+).
// NON-DETERMINISTIC where an index repeats: the order of the additions into
// one output varies between runs, so such outputs may differ in the last bits
// from run to run and from the CPU's serial sum (exact where indices are
// distinct, as for the one-to-one maps of transposes, unions, intersections).
#include <torch/library.h>

#include "common.cuh"

namespace learnsolve {
namespace gpu {
namespace {

template <typename scalar_t>
__global__ void scatter_add_scaled_kernel(const scalar_t* __restrict__ s,
                                          const int64_t* __restrict__ idx,
                                          const scalar_t* __restrict__ alpha,
                                          scalar_t* __restrict__ o, int64_t n) {
  const scalar_t a = *alpha;
  for (int64_t p = global_thread(); p < n; p += thread_count()) atomicAdd(o + idx[p], a * s[p]);
}

at::Tensor scatter_add_scaled_cuda(const at::Tensor& source, const at::Tensor& index,
                                   int64_t size, const std::optional<at::Tensor>& alpha) {
  check_scatter_add_scaled(source, index, size);
  const at::Device device = source.device();
  c10::cuda::CUDAGuard guard(device);
  const at::Tensor a = device_scale(alpha, "scatter_add_scaled", "alpha", source.options());
  const auto source_c = source.contiguous();
  const auto index_c = index.contiguous();
  auto out = at::zeros({size}, source.options());
  const int64_t n = index.numel();
  if (n == 0) return out;
  AT_DISPATCH_FLOATING_TYPES(source.scalar_type(), "scatter_add_scaled_cuda", [&] {
    scatter_add_scaled_kernel<scalar_t><<<thread_blocks(n), kThreads, 0, stream()>>>(
        source_c.data_ptr<scalar_t>(), index_c.data_ptr<int64_t>(), a.data_ptr<scalar_t>(),
        out.data_ptr<scalar_t>(), n);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return out;
}

}  // namespace
}  // namespace gpu

TORCH_LIBRARY_IMPL(learnsolve, CUDA, m) {
  m.impl("scatter_add_scaled", &gpu::scatter_add_scaled_cuda);
}

}  // namespace learnsolve
