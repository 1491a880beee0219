// Shared helpers of the CPU kernels: argument checks and a row-parallel loop
// whose chunks carry about equal numbers of stored entries.
#pragma once

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/full.h>
#include <ATen/ops/zeros.h>
#include <c10/util/Exception.h>

#include <algorithm>
#include <cstdint>

namespace learnsolve {

inline void check_index(const at::Tensor& t, const char* op, const char* name) {
  TORCH_CHECK(t.dim() == 1, op, ": expected ", name, " to be 1-D, got ", t.dim(), "-D");
  TORCH_CHECK(t.scalar_type() == at::kLong, op, ": expected ", name,
              " to have dtype int64, got ", t.scalar_type());
}

inline void check_floating(const at::Tensor& t, const char* op, const char* name) {
  TORCH_CHECK(t.scalar_type() == at::kFloat || t.scalar_type() == at::kDouble, op,
              ": expected ", name, " to have dtype float32 or float64, got ", t.scalar_type());
}

inline void check_same_device(const at::Tensor& a, const at::Tensor& b, const char* op,
                              const char* name_a, const char* name_b) {
  TORCH_CHECK(a.device() == b.device(), op, ": expected ", name_a, " and ", name_b,
              " on the same device, got ", a.device(), " and ", b.device());
}

inline void check_same_dtype(const at::Tensor& a, const at::Tensor& b, const char* op,
                             const char* name_a, const char* name_b) {
  TORCH_CHECK(a.scalar_type() == b.scalar_type(), op, ": expected ", name_a, " and ", name_b,
              " to have the same dtype, got ", a.scalar_type(), " and ", b.scalar_type());
}

// Checks a CSR pattern's arrays: int64, 1-D, col of length crow[-1] is left to
// the Python validation (it needs a device sync); here only the cheap checks.
inline void check_pattern(const at::Tensor& crow, const at::Tensor& col, const char* op,
                          const char* crow_name, const char* col_name) {
  check_index(crow, op, crow_name);
  check_index(col, op, col_name);
  TORCH_CHECK(crow.numel() >= 1, op, ": expected ", crow_name, " to have at least one entry");
  check_same_device(crow, col, op, crow_name, col_name);
}

// Below this much work (stored entries plus rows) a kernel runs on one thread:
// starting threads would cost more than the loop.
constexpr int64_t kSerialWork = 1 << 15;

// Number of chunks parallel_rows splits a pattern into: one per thread, or a
// single one for small work (kernels keep one scratch buffer per chunk).
inline int64_t row_chunks(const int64_t* crow, int64_t nrows) {
  if (nrows == 0) return 0;
  const int64_t work = crow[nrows] - crow[0] + nrows;
  return work < kSerialWork ? 1 : std::min<int64_t>(at::get_num_threads(), nrows);
}

// Runs fn(chunk, row_begin, row_end) over [0, nrows) in `nchunks` contiguous
// chunks, in parallel, each holding about the same number of stored entries
// plus rows, so that a few long rows do not leave the other threads idle.
// `crow` is the row pointer (length nrows + 1). The chunks depend only on
// crow and nchunks, so two passes over the same pattern see the same chunks.
template <typename F>
void parallel_rows(const int64_t* crow, int64_t nrows, int64_t nchunks, F fn) {
  if (nrows == 0 || nchunks == 0) return;
  if (nchunks == 1) {
    fn(int64_t{0}, int64_t{0}, nrows);
    return;
  }
  const int64_t work = crow[nrows] - crow[0] + nrows;
  // crow[r] + r is strictly increasing in r: the work done before row r.
  auto row_at = [&](int64_t target) {
    int64_t lo = 0, hi = nrows;
    while (lo < hi) {
      const int64_t mid = lo + (hi - lo) / 2;
      if (crow[mid] - crow[0] + mid < target) lo = mid + 1; else hi = mid;
    }
    return lo;
  };
  at::parallel_for(0, nchunks, 1, [&](int64_t c0, int64_t c1) {
    for (int64_t c = c0; c < c1; ++c) {
      const int64_t r0 = row_at(work * c / nchunks);
      const int64_t r1 = c + 1 == nchunks ? nrows : row_at(work * (c + 1) / nchunks);
      fn(c, r0, r1);
    }
  });
}

// parallel_rows with one chunk per thread (row_chunks).
template <typename F>
void parallel_rows(const int64_t* crow, int64_t nrows, F fn) {
  parallel_rows(crow, nrows, row_chunks(crow, nrows), fn);
}

}  // namespace learnsolve
