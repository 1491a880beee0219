// The level analysis of a sparse triangular solve for a pattern on the GPU.
// Computed once per pattern and cached, so it is not worth a device
// algorithm: the pattern is copied to the host, the CPU kernel of
// learnsolve::sptrsv_analysis runs on it (through the dispatcher, so both
// backends give the same analysis, bit for bit), and (level_ptr, level_rows,
// diag) are copied back to the pattern's device, where sptrsv and
// sptrsv_backward read them with the device values.
#include <torch/library.h>

#include <ATen/core/dispatch/Dispatcher.h>

#include <tuple>

#include "common.cuh"

namespace learnsolve {
namespace gpu {
namespace {

using Analysis = std::tuple<at::Tensor, at::Tensor, at::Tensor>;

std::tuple<at::Tensor, at::Tensor, at::Tensor> sptrsv_analysis_cuda(const at::Tensor& crow,
                                                                    const at::Tensor& col,
                                                                    bool lower) {
  check_pattern(crow, col, "sptrsv_analysis", "crow", "col");
  const at::Device device = crow.device();
  c10::cuda::CUDAGuard guard(device);
  static const auto cpu_op =
      c10::Dispatcher::singleton()
          .findSchemaOrThrow("learnsolve::sptrsv_analysis", "")
          .typed<Analysis(const at::Tensor&, const at::Tensor&, bool)>();
  const auto [level_ptr, level_rows, diag] =
      cpu_op.call(crow.to(at::kCPU), col.to(at::kCPU), lower);
  return {level_ptr.to(device), level_rows.to(device), diag.to(device)};
}

}  // namespace
}  // namespace gpu

TORCH_LIBRARY_IMPL(learnsolve, CUDA, m) { m.impl("sptrsv_analysis", &gpu::sptrsv_analysis_cuda); }

}  // namespace learnsolve
