// Symbolic phase of C = A B on the GPU (Gustavson, two passes, per-row hash
// tables): one block per row of A (rows strided over the grid), its warps
// over the entries (i, k) of the row, their lanes over row k of B, inserting
// each column into an open-addressing hash table (linear probing, atomicCAS)
// of at least twice the row's upper bound sum_k nnz(B[k, :]) slots.
//   pass 1 counts each row's distinct columns; a scan gives crow_c and,
//          read back to the host, nnz(C);
//   pass 2 inserts again and writes each column at the first new insertion
//          into the row's segment of col_c (in hash order), then a stable
//          device sort by (row, column) makes the rows sorted.
// The table lives in shared memory when it fits (kSharedSlots), else in a
// global scratch buffer from the caching allocator, sized by a scan over the
// rows that need one: so a row of any length works. The result is
// deterministic (the final sort fixes the order) and equals the CPU's.
#include <torch/library.h>

#include <ATen/ops/sort.h>

#include <limits>
#include <tuple>

#include "common.cuh"

namespace learnsolve {
namespace gpu {
namespace {

constexpr int kBlock = 128;                 // threads per row block
constexpr int64_t kSharedSlots = 4096;      // 32 KiB of int64 keys
constexpr unsigned long long kEmpty = ~0ull;  // -1: no column

__device__ __forceinline__ int64_t table_slots(int64_t bound) {
  int64_t cap = 32;
  while (cap < 2 * bound) cap *= 2;
  return cap;
}

// bound[r] = sum of the lengths of the rows of B that row r of A selects;
// gsize[r + 1] = the row's table size if it needs a global one, else 0.
__global__ void spgemm_bound_kernel(const int64_t* __restrict__ ra, const int64_t* __restrict__ ca,
                                    const int64_t* __restrict__ rb, int64_t* __restrict__ bound,
                                    int64_t* __restrict__ gsize, int64_t nrows) {
  for (int64_t r = global_warp(); r < nrows; r += warp_count()) {
    int64_t sum = 0;
    for (int64_t p = ra[r] + lane_id(); p < ra[r + 1]; p += kWarp) sum += rb[ca[p] + 1] - rb[ca[p]];
    sum = group_sum(sum);
    if (lane_id() == 0) {
      bound[r] = sum;
      const int64_t cap = table_slots(sum);
      gsize[r + 1] = sum > 0 && cap > kSharedSlots ? cap : 0;
    }
  }
}

// Pass 1 (fill = false): counts[r + 1] = distinct columns of row r of C.
// Pass 2 (fill = true): writes them into cc[rc[r] ...] (unsorted).
template <bool fill>
__global__ void __launch_bounds__(kBlock)
spgemm_hash_kernel(const int64_t* __restrict__ ra, const int64_t* __restrict__ ca,
                   const int64_t* __restrict__ rb, const int64_t* __restrict__ cb,
                   const int64_t* __restrict__ bound, const int64_t* __restrict__ goff,
                   unsigned long long* __restrict__ global_table, int64_t* __restrict__ counts,
                   const int64_t* __restrict__ rc, int64_t* __restrict__ cc, int64_t nrows) {
  __shared__ unsigned long long shared_table[kSharedSlots];
  __shared__ unsigned long long row_count;
  const int warp = threadIdx.x / kWarp, lane = lane_id();
  constexpr int warps = kBlock / kWarp;
  for (int64_t r = blockIdx.x; r < nrows; r += gridDim.x) {
    const int64_t b = bound[r];  // uniform over the block
    if (b == 0) {
      if (!fill && threadIdx.x == 0) counts[r + 1] = 0;
      continue;
    }
    const int64_t cap = table_slots(b);
    unsigned long long* table = cap <= kSharedSlots ? shared_table : global_table + goff[r];
    for (int64_t s = threadIdx.x; s < cap; s += kBlock) table[s] = kEmpty;
    if (threadIdx.x == 0) row_count = 0;
    __syncthreads();
    for (int64_t p = ra[r] + warp; p < ra[r + 1]; p += warps) {
      const int64_t k = ca[p];
      for (int64_t q = rb[k] + lane; q < rb[k + 1]; q += kWarp) {
        const unsigned long long key = static_cast<unsigned long long>(cb[q]);
        unsigned long long h = (key * 0x9E3779B97F4A7C15ull) >> 20;
        while (true) {
          h &= static_cast<unsigned long long>(cap - 1);
          const unsigned long long old = atomicCAS(table + h, kEmpty, key);
          if (old == kEmpty) {
            const unsigned long long slot = atomicAdd(&row_count, 1ull);
            if (fill) cc[rc[r] + static_cast<int64_t>(slot)] = static_cast<int64_t>(key);
            break;
          }
          if (old == key) break;
          ++h;
        }
      }
    }
    __syncthreads();
    if (!fill && threadIdx.x == 0) counts[r + 1] = static_cast<int64_t>(row_count);
    __syncthreads();  // the table and counter are reset for the next row
  }
}

// key[s] = row(s) * ncols + col[s].
__global__ void composite_key_kernel(const int64_t* __restrict__ rows,
                                     const int64_t* __restrict__ col, int64_t* __restrict__ key,
                                     int64_t n, int64_t ncols) {
  for (int64_t s = global_thread(); s < n; s += thread_count()) key[s] = rows[s] * ncols + col[s];
}

// out[s] = src[perm[s]].
__global__ void permute_kernel(const int64_t* __restrict__ src, const int64_t* __restrict__ perm,
                               int64_t* __restrict__ out, int64_t n) {
  for (int64_t s = global_thread(); s < n; s += thread_count()) out[s] = src[perm[s]];
}

std::tuple<at::Tensor, at::Tensor> spgemm_symbolic_cuda(const at::Tensor& crow_a,
                                                        const at::Tensor& col_a,
                                                        const at::Tensor& crow_b,
                                                        const at::Tensor& col_b, int64_t ncols) {
  check_spgemm_symbolic(crow_a, col_a, crow_b, col_b, ncols);
  const at::Device device = crow_a.device();
  c10::cuda::CUDAGuard guard(device);
  const int64_t nrows = crow_a.numel() - 1;
  const auto ra_c = crow_a.contiguous(), ca_c = col_a.contiguous();
  const auto rb_c = crow_b.contiguous(), cb_c = col_b.contiguous();
  const auto opts = crow_a.options();
  if (nrows == 0 || col_a.numel() == 0 || col_b.numel() == 0) {
    return {at::zeros({nrows + 1}, opts), at::empty({0}, opts)};
  }
  const int64_t* ra = ra_c.data_ptr<int64_t>();
  const int64_t* ca = ca_c.data_ptr<int64_t>();
  const int64_t* rb = rb_c.data_ptr<int64_t>();
  const int64_t* cb = cb_c.data_ptr<int64_t>();

  auto bound = at::empty({nrows}, opts);
  auto gsize = at::zeros({nrows + 1}, opts);
  spgemm_bound_kernel<<<warp_blocks(nrows), kThreads, 0, stream()>>>(
      ra, ca, rb, bound.data_ptr<int64_t>(), gsize.data_ptr<int64_t>(), nrows);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  auto [goff, global_slots] = scan_counts(gsize);
  // Every row reinitialises its own table: no fill of the global one needed.
  auto global_table = at::empty({std::max<int64_t>(global_slots, 1)}, opts);
  auto* gt = reinterpret_cast<unsigned long long*>(global_table.data_ptr<int64_t>());

  const unsigned grid = blocks_for(nrows, 1);
  auto counts = at::zeros({nrows + 1}, opts);
  spgemm_hash_kernel<false><<<grid, kBlock, 0, stream()>>>(
      ra, ca, rb, cb, bound.data_ptr<int64_t>(), goff.data_ptr<int64_t>(), gt,
      counts.data_ptr<int64_t>(), nullptr, nullptr, nrows);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  auto [crow_c, nnz_c] = scan_counts(counts);

  auto unsorted = at::empty({nnz_c}, opts);
  if (nnz_c == 0) return {crow_c, unsorted};
  spgemm_hash_kernel<true><<<grid, kBlock, 0, stream()>>>(
      ra, ca, rb, cb, bound.data_ptr<int64_t>(), goff.data_ptr<int64_t>(), gt, nullptr,
      crow_c.data_ptr<int64_t>(), unsorted.data_ptr<int64_t>(), nrows);
  C10_CUDA_KERNEL_LAUNCH_CHECK();

  // Sort each row's columns: one stable device sort by (row, column).
  const at::Tensor rows = entry_rows(crow_c, nnz_c);
  at::Tensor perm;
  if (ncols == 0 || nrows <= std::numeric_limits<int64_t>::max() / ncols) {
    auto key = at::empty({nnz_c}, opts);
    composite_key_kernel<<<thread_blocks(nnz_c), kThreads, 0, stream()>>>(
        rows.data_ptr<int64_t>(), unsorted.data_ptr<int64_t>(), key.data_ptr<int64_t>(), nnz_c,
        ncols);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    perm = std::get<1>(at::sort(key, /*stable=*/true, 0, false)).contiguous();
  } else {
    // (row, column) does not fit in int64: sort by column, then stably by row.
    const at::Tensor by_col = std::get<1>(at::sort(unsorted, true, 0, false)).contiguous();
    auto rows_by_col = at::empty({nnz_c}, opts);
    permute_kernel<<<thread_blocks(nnz_c), kThreads, 0, stream()>>>(
        rows.data_ptr<int64_t>(), by_col.data_ptr<int64_t>(), rows_by_col.data_ptr<int64_t>(),
        nnz_c);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    const at::Tensor by_row = std::get<1>(at::sort(rows_by_col, true, 0, false)).contiguous();
    perm = at::empty({nnz_c}, opts);
    permute_kernel<<<thread_blocks(nnz_c), kThreads, 0, stream()>>>(
        by_col.data_ptr<int64_t>(), by_row.data_ptr<int64_t>(), perm.data_ptr<int64_t>(), nnz_c);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }
  auto col_c = at::empty({nnz_c}, opts);
  permute_kernel<<<thread_blocks(nnz_c), kThreads, 0, stream()>>>(
      unsorted.data_ptr<int64_t>(), perm.data_ptr<int64_t>(), col_c.data_ptr<int64_t>(), nnz_c);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return {crow_c, col_c};
}

}  // namespace
}  // namespace gpu

TORCH_LIBRARY_IMPL(learnsolve, CUDA, m) { m.impl("spgemm_symbolic", &gpu::spgemm_symbolic_cuda); }

}  // namespace learnsolve
