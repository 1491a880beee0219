// The sparse triangular solve on the GPU shared by sptrsv and sptrsv_backward
// (the counterpart of cuda/cpu/triangular.h): checks of the level analysis
// (which must live on the matrix's device), the diagonal check, and a
// level-scheduled solve with one or several right-hand sides.
//
// Scheme: the level sets of sptrsv_analysis (rows of one level depend only on
// rows of earlier levels). Each row is solved by one warp as a dot product
// ("pull") over its row of T, or of T^T through the cached transpose pattern
// (values through its permutation) for the transposed solve, which walks the
// levels backwards. A level with many rows is one launch over the whole grid;
// a run of consecutive small levels is one launch of a single block that
// walks them with __syncthreads() between levels. Nothing ever waits on a
// flag set by another block, so no schedule can deadlock, and a missing or
// zero diagonal is found by check_diagonal_cuda before any solve is launched.
// Each row's sum is computed by one warp in a fixed order: deterministic.
// Accumulation in the values' type (float64 for float64).
#pragma once

#include <ATen/ops/empty.h>
#include <ATen/ops/full.h>

#include <limits>
#include <vector>

#include "common.cuh"

namespace learnsolve {
namespace gpu {

// code = 2 i (row i has no stored diagonal) or 2 i + 1 (its diagonal is
// zero); the smallest code over the rows is the first failing row, as the
// CPU's check_diagonal reports it.
template <typename scalar_t>
__global__ void diagonal_check_kernel(const int64_t* __restrict__ diag,
                                      const scalar_t* __restrict__ v, int64_t n,
                                      long long* __restrict__ first) {
  for (int64_t i = global_thread(); i < n; i += thread_count()) {
    const int64_t d = diag[i];
    if (d < 0) atomicMin(first, static_cast<long long>(2 * i));
    else if (v[d] == scalar_t(0)) atomicMin(first, static_cast<long long>(2 * i + 1));
  }
}

// Raises torch.linalg.LinAlgError for the first row whose diagonal is not
// stored, or is zero (one device-to-host read), before any solve is launched.
template <typename scalar_t>
void check_diagonal_cuda(const char* op, const at::Tensor& diag, const scalar_t* v, int64_t n) {
  if (n == 0) return;
  auto first = at::full({1}, std::numeric_limits<int64_t>::max(), diag.options());
  diagonal_check_kernel<scalar_t><<<thread_blocks(n), kThreads, 0, stream()>>>(
      diag.data_ptr<int64_t>(), v, n, reinterpret_cast<long long*>(first.data_ptr<int64_t>()));
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  const int64_t code = first.item<int64_t>();
  if (code == std::numeric_limits<int64_t>::max()) return;
  const int64_t i = code / 2;
  TORCH_CHECK_LINALG(code % 2 == 1, op, ": the matrix is singular: row ", i,
                     " has no stored diagonal entry (pass unit_diagonal=True for a unit ",
                     "triangle)");
  TORCH_CHECK_LINALG(false, op, ": the matrix is singular: the diagonal entry of row ", i,
                     " is zero");
}

// The rows a solve reads: those of T (transpose = false) or of T^T through
// the transpose pattern, values through perm.
template <typename scalar_t>
struct TriangularRows {
  const int64_t* rp;
  const int64_t* ci;
  const int64_t* perm;  // null: values in order
  const scalar_t* v;
  const int64_t* diag;
  bool rows_lower;  // the triangle of these rows: columns < i (else > i)
  bool unit;
  int64_t k;
};

// Solves row i of op(T) x = b in place in x (row-major, k columns) by one
// warp: x_i = (b_i - sum_j T_ij x_j) / T_ii over the row's off-diagonal
// entries of the triangle.
template <typename scalar_t>
__device__ __forceinline__ void solve_row(const TriangularRows<scalar_t>& s, int64_t i,
                                          scalar_t* x) {
  const int lane = lane_id();
  const int64_t begin = s.rp[i], end = s.rp[i + 1];
  if (s.k == 1) {
    scalar_t acc = 0;
    for (int64_t p = begin + lane; p < end; p += kWarp) {
      const int64_t c = s.ci[p];
      if (s.rows_lower ? c < i : c > i) acc += s.v[s.perm == nullptr ? p : s.perm[p]] * x[c];
    }
    acc = group_sum(acc);
    if (lane == 0) {
      scalar_t xi = x[i] - acc;
      if (!s.unit) xi /= s.v[s.diag[i]];
      x[i] = xi;
    }
    return;
  }
  const scalar_t d = s.unit ? scalar_t(1) : s.v[s.diag[i]];
  for (int64_t j = lane; j < s.k; j += kWarp) {
    scalar_t xi = x[i * s.k + j];
    for (int64_t p = begin; p < end; ++p) {
      const int64_t c = s.ci[p];
      if (s.rows_lower ? c < i : c > i) xi -= s.v[s.perm == nullptr ? p : s.perm[p]] * x[c * s.k + j];
    }
    x[i * s.k + j] = s.unit ? xi : xi / d;
  }
}

// One level [begin, end) of level_rows over the whole grid, a warp per row.
template <typename scalar_t>
__global__ void solve_level_kernel(TriangularRows<scalar_t> s, const int64_t* __restrict__ rows,
                                   int64_t begin, int64_t end, scalar_t* x) {
  for (int64_t q = begin + global_warp(); q < end; q += warp_count()) solve_row(s, rows[q], x);
}

// A run of consecutive small levels by one block: levels first ... last
// (inclusive, in solve order, step +1 or -1), a barrier between levels.
template <typename scalar_t>
__global__ void solve_run_kernel(TriangularRows<scalar_t> s, const int64_t* __restrict__ rows,
                                 const int64_t* __restrict__ level_ptr, int64_t first,
                                 int64_t count, int64_t step, scalar_t* x) {
  const int warp = threadIdx.x / kWarp;
  const int warps = blockDim.x / kWarp;
  for (int64_t t = 0; t < count; ++t) {
    const int64_t l = first + t * step;
    for (int64_t q = level_ptr[l] + warp; q < level_ptr[l + 1]; q += warps) solve_row(s, rows[q], x);
    __syncthreads();  // the level's rows are final and visible to the block
  }
}

constexpr int kRunThreads = 512;              // one block for a run of small levels
constexpr int64_t kSmallLevelRows = 2 * (kRunThreads / kWarp);

// op(T) x = b in place in x (holding b), along the levels; `transpose`
// walks them backwards over the rows of T^T. level_ptr_host: the level
// pointer on the host (the launches are planned there).
template <typename scalar_t>
void solve_triangular_cuda(const TriangularRows<scalar_t>& s, const at::Tensor& level_ptr,
                           const std::vector<int64_t>& level_ptr_host,
                           const at::Tensor& level_rows, bool backwards, scalar_t* x) {
  const int64_t nlevels = static_cast<int64_t>(level_ptr_host.size()) - 1;
  const int64_t* rows = level_rows.data_ptr<int64_t>();
  const int64_t* lp = level_ptr.data_ptr<int64_t>();
  const int64_t step = backwards ? -1 : 1;
  int64_t run_first = -1, run_count = 0;
  auto flush_run = [&] {
    if (run_count == 0) return;
    solve_run_kernel<scalar_t><<<1, kRunThreads, 0, stream()>>>(s, rows, lp, run_first, run_count,
                                                                 step, x);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    run_count = 0;
  };
  for (int64_t t = 0; t < nlevels; ++t) {
    const int64_t l = backwards ? nlevels - 1 - t : t;
    const int64_t begin = level_ptr_host[l], end = level_ptr_host[l + 1];
    if (end - begin <= kSmallLevelRows) {
      if (run_count == 0) run_first = l;
      ++run_count;
      continue;
    }
    flush_run();
    solve_level_kernel<scalar_t><<<warp_blocks(end - begin), kThreads, 0, stream()>>>(
        s, rows, begin, end, x);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }
  flush_run();
}

// The level pointer on the host (one small device-to-host copy).
inline std::vector<int64_t> host_level_ptr(const at::Tensor& level_ptr) {
  const at::Tensor h = level_ptr.to(at::kCPU).contiguous();
  const int64_t* p = h.data_ptr<int64_t>();
  return std::vector<int64_t>(p, p + h.numel());
}

}  // namespace gpu
}  // namespace learnsolve
