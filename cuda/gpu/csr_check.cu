// The structure check of a CSR pattern from outside on the GPU: one thread per
// row, the first offending row / entry of each kind by an atomic minimum.
// Reads col only inside rows whose bounds passed, so that any input is safe.
#include <torch/library.h>

#include "common.cuh"

namespace learnsolve {
namespace gpu {
namespace {

constexpr unsigned long long kNone = 0x7fffffffffffffffULL;

__global__ void csr_check_kernel(const int64_t* __restrict__ crow,
                                 const int64_t* __restrict__ col, int64_t nrows, int64_t nnz,
                                 int64_t ncols, unsigned long long* __restrict__ found) {
  for (int64_t r = global_thread(); r < nrows; r += thread_count()) {
    const int64_t begin = crow[r], end = crow[r + 1];
    if (begin < 0 || end < begin || end > nnz) {
      atomicMin(&found[0], static_cast<unsigned long long>(r));
      continue;
    }
    for (int64_t p = begin; p < end; ++p) {
      const int64_t c = col[p];
      if (c < 0 || c >= ncols) atomicMin(&found[1], static_cast<unsigned long long>(p));
      if (p > begin && c <= col[p - 1]) atomicMin(&found[2], static_cast<unsigned long long>(p));
    }
  }
}

// kNone (nothing found) becomes -1, as the CPU kernel reports it.
__global__ void csr_check_finish_kernel(unsigned long long* found) {
  const int i = threadIdx.x;
  if (i < 3 && found[i] == kNone) found[i] = static_cast<unsigned long long>(-1LL);
}

at::Tensor csr_check_cuda(const at::Tensor& crow, const at::Tensor& col, int64_t ncols) {
  check_csr_check(crow, col, ncols);
  c10::cuda::CUDAGuard guard(crow.device());
  const auto crow_c = crow.contiguous();
  const auto col_c = col.contiguous();
  const int64_t nrows = crow.numel() - 1;
  auto out = at::full({3}, static_cast<int64_t>(kNone), crow.options());
  auto* found = reinterpret_cast<unsigned long long*>(out.data_ptr<int64_t>());
  if (nrows > 0) {
    csr_check_kernel<<<thread_blocks(nrows), kThreads, 0, stream()>>>(
        crow_c.data_ptr<int64_t>(), col_c.data_ptr<int64_t>(), nrows, col.numel(), ncols, found);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }
  csr_check_finish_kernel<<<1, 32, 0, stream()>>>(found);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return out;
}

}  // namespace
}  // namespace gpu

TORCH_LIBRARY_IMPL(learnsolve, CUDA, m) { m.impl("csr_check", &gpu::csr_check_cuda); }

}  // namespace learnsolve
