// Shared helpers of the CUDA kernels: the argument checks shared with the CPU
// kernels (cuda/cpu/op_checks.h, so that both backends raise the same errors),
// device checks, launch geometry, warp reductions, and the small device-side
// building blocks several ops share (row of each stored entry, binary search
// in a sorted row, exclusive scans of counts into row pointers).
//
// Every kernel is launched on the current stream of the tensors' device under
// a CUDAGuard, and every buffer comes from torch's caching allocator
// (at::empty / at::zeros with the inputs' options): no cudaMalloc, no sync
// except the device-to-host reads of data-dependent output sizes.
//
// Only headers that the CPU build of torch also ships are included, so that
// cuda/check_gpu_build.py can compile the kernels on a machine without a GPU.
#pragma once

#include <ATen/Dispatch.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/cumsum.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/full.h>
#include <ATen/ops/zeros.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <c10/util/Exception.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <initializer_list>
#include <optional>

#include "../cpu/op_checks.h"

namespace learnsolve {
namespace gpu {

constexpr int kWarp = 32;
constexpr int kThreads = 256;                 // threads per block of the grid-stride kernels
constexpr int kWarpsPerBlock = kThreads / kWarp;
constexpr int64_t kMaxBlocks = int64_t{1} << 20;  // grid-stride loops cover the rest

inline cudaStream_t stream() { return c10::cuda::getCurrentCUDAStream().stream(); }

// Blocks for `items` work items at `per_block` items per block (at least one).
inline unsigned blocks_for(int64_t items, int64_t per_block) {
  const int64_t b = (std::max<int64_t>(items, 1) + per_block - 1) / per_block;
  return static_cast<unsigned>(std::min(b, kMaxBlocks));
}
// Blocks of kThreads for one thread per item, and for one warp per item.
inline unsigned thread_blocks(int64_t items) { return blocks_for(items, kThreads); }
inline unsigned warp_blocks(int64_t items) { return blocks_for(items, kWarpsPerBlock); }

// A one-element scale tensor (absent: 1) as a one-element tensor of `options`
// on the device, read by the kernel through a pointer: no host sync.
inline at::Tensor device_scale(const std::optional<at::Tensor>& alpha, const char* op,
                               const char* name, const at::TensorOptions& options) {
  if (!alpha.has_value()) return at::full({1}, 1.0, options);
  TORCH_CHECK(alpha->numel() == 1, op, ": expected ", name, " with one element, got ",
              alpha->numel());
  return alpha->reshape({1}).to(options);
}

// ---------------------------------------------------------------- device code

// Global warp index and number of warps of a 1-D grid.
__device__ __forceinline__ int64_t global_warp() {
  return (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) / kWarp;
}
__device__ __forceinline__ int64_t warp_count() {
  return static_cast<int64_t>(gridDim.x) * blockDim.x / kWarp;
}
__device__ __forceinline__ int lane_id() { return threadIdx.x & (kWarp - 1); }
__device__ __forceinline__ int64_t global_thread() {
  return static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
}
__device__ __forceinline__ int64_t thread_count() {
  return static_cast<int64_t>(gridDim.x) * blockDim.x;
}

// Sum over the `width` lanes of a group (width a power of two <= 32, groups
// aligned within the warp); every lane of the group gets the sum.
template <typename T>
__device__ __forceinline__ T group_sum(T v, int width = kWarp) {
  for (int offset = width / 2; offset > 0; offset /= 2) v += __shfl_xor_sync(0xffffffffu, v, offset, width);
  return v;
}

// First position in [lo, hi) of the sorted array a whose value is >= key.
template <typename I, typename K>
__device__ __forceinline__ int64_t lower_bound(const I* a, int64_t lo, int64_t hi, K key) {
  while (lo < hi) {
    const int64_t mid = lo + (hi - lo) / 2;
    if (static_cast<int64_t>(a[mid]) < static_cast<int64_t>(key)) lo = mid + 1; else hi = mid;
  }
  return lo;
}

// Position of key in the sorted [lo, hi) of a, or -1.
template <typename I, typename K>
__device__ __forceinline__ int64_t find_sorted(const I* a, int64_t lo, int64_t hi, K key) {
  const int64_t p = lower_bound(a, lo, hi, key);
  return p < hi && static_cast<int64_t>(a[p]) == static_cast<int64_t>(key) ? p : -1;
}

// rows[p] = r for each stored entry p of row r: one warp per row, its lanes
// over the row's entries, so a long row is shared by 32 threads.
__global__ void entry_rows_kernel(const int64_t* __restrict__ crow, int64_t nrows,
                                  int64_t* __restrict__ rows) {
  for (int64_t r = global_warp(); r < nrows; r += warp_count()) {
    for (int64_t p = crow[r] + lane_id(); p < crow[r + 1]; p += kWarp) rows[p] = r;
  }
}

// The row of every stored entry of a pattern (crow contiguous int64 on the
// device, nnz = crow[-1] entries, as canonical patterns have crow[0] == 0).
inline at::Tensor entry_rows(const at::Tensor& crow, int64_t nnz) {
  const int64_t nrows = crow.numel() - 1;
  auto rows = at::empty({nnz}, crow.options());
  if (nnz == 0 || nrows == 0) return rows;
  entry_rows_kernel<<<warp_blocks(nrows), kThreads, 0, stream()>>>(
      crow.data_ptr<int64_t>(), nrows, rows.data_ptr<int64_t>());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return rows;
}

// Row pointers from per-row counts: `counts` holds n + 1 int64 with
// counts[0] == 0 and counts[r + 1] the length of row r; returns its inclusive
// scan (the row pointer, crow[0] == 0) and the total, read back to the host
// (the one sync of an op whose output size depends on the data).
inline std::pair<at::Tensor, int64_t> scan_counts(const at::Tensor& counts) {
  at::Tensor crow = at::cumsum(counts, 0);
  const int64_t total = crow.numel() > 0 ? crow[crow.numel() - 1].item<int64_t>() : 0;
  return {crow, total};
}

}  // namespace gpu
}  // namespace learnsolve
