// Pattern of A^T on the GPU, by a sort: the entries of A, stored row by row,
// are stably sorted by column (torch's device radix sort), so within each
// column they stay in row order and the transpose comes out canonical; the
// sort's permutation is perm, the rows of the sorted entries are t_col, and
// t_crow[j] is the first sorted entry of column >= j (a binary search per
// column). No loop over the matrix per column. Deterministic, and the same
// result as the CPU's counting sort.
#include <torch/library.h>

#include <ATen/ops/sort.h>

#include <tuple>

#include "common.cuh"

namespace learnsolve {
namespace gpu {
namespace {

// t_col[q] = rows[perm[q]] and t_crow[j] = first q with sorted[q] >= j.
__global__ void transpose_fill_kernel(const int64_t* __restrict__ rows,
                                      const int64_t* __restrict__ perm,
                                      const int64_t* __restrict__ sorted,
                                      int64_t* __restrict__ t_col, int64_t* __restrict__ t_crow,
                                      int64_t nnz, int64_t ncols) {
  const int64_t n = nnz > ncols + 1 ? nnz : ncols + 1;
  for (int64_t i = global_thread(); i < n; i += thread_count()) {
    if (i < nnz) t_col[i] = rows[perm[i]];
    if (i <= ncols) t_crow[i] = lower_bound(sorted, int64_t{0}, nnz, i);
  }
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> transpose_cuda(const at::Tensor& crow,
                                                              const at::Tensor& col,
                                                              int64_t ncols) {
  check_transpose(crow, col, ncols);
  const at::Device device = crow.device();
  c10::cuda::CUDAGuard guard(device);
  const int64_t nnz = col.numel();
  const auto crow_c = crow.contiguous();
  const auto col_c = col.to(at::kLong).contiguous();  // an int32 copy is widened
  auto t_crow = at::empty({ncols + 1}, crow.options());
  auto t_col = at::empty({nnz}, crow.options());
  at::Tensor perm;
  at::Tensor sorted;
  if (nnz > 0) {
    std::tie(sorted, perm) = at::sort(col_c, /*stable=*/true, /*dim=*/0, /*descending=*/false);
    sorted = sorted.contiguous();
    perm = perm.contiguous();
  } else {
    sorted = col_c;
    perm = at::empty({0}, crow.options());
  }
  const at::Tensor rows = entry_rows(crow_c, nnz);
  transpose_fill_kernel<<<thread_blocks(std::max(nnz, ncols + 1)), kThreads, 0, stream()>>>(
      rows.data_ptr<int64_t>(), perm.data_ptr<int64_t>(), sorted.data_ptr<int64_t>(),
      t_col.data_ptr<int64_t>(), t_crow.data_ptr<int64_t>(), nnz, ncols);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return {t_crow, t_col, perm};
}

}  // namespace
}  // namespace gpu

TORCH_LIBRARY_IMPL(learnsolve, CUDA, m) { m.impl("transpose", &gpu::transpose_cuda); }

}  // namespace learnsolve
