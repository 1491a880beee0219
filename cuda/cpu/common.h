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
#include <initializer_list>
#include <optional>
#include <utility>

#if defined(__linux__)
#include <sys/mman.h>
#include <unistd.h>
#endif

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

// Every tensor argument of an op must live on the device of the first: the
// dispatcher picks the CUDA kernel when any argument is on CUDA, and a CPU
// pointer read on the device would crash the process.
inline void check_device(const char* op, const at::Device& device,
                         std::initializer_list<std::pair<const char*, const at::Tensor*>> args) {
  for (const auto& [name, t] : args) {
    TORCH_CHECK(t->device() == device, op, ": expected ", name, " on ", device, " (the device ",
                "of the other arguments), got ", t->device());
  }
}

// Column indices of a product kernel's pattern: int64, or the int32 copy that
// learnsolve caches for patterns with fewer than 2^31 columns (a quarter less
// memory traffic in the memory-bound products).
inline void check_column_index(const at::Tensor& col, const char* op, const char* name) {
  TORCH_CHECK(col.dim() == 1, op, ": expected ", name, " to be 1-D, got ", col.dim(), "-D");
  TORCH_CHECK(col.scalar_type() == at::kLong || col.scalar_type() == at::kInt, op, ": expected ",
              name, " to have dtype int64 or int32, got ", col.scalar_type());
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

// Row pointers a sequential kernel may walk: rp[0] == 0, never decreasing, and
// rp[n] == nnz (the entries of col). O(n), cheap beside the kernels that call it
// (the factorisations), which would otherwise read outside col on a bad crow.
inline void check_row_pointers(const int64_t* rp, int64_t n, int64_t nnz, const char* op) {
  TORCH_CHECK_VALUE(rp[0] == 0 && rp[n] == nnz, op, ": expected crow to start at 0 and end ",
                    "at the length of col (", nnz, "), got ", rp[0], " and ", rp[n]);
  for (int64_t i = 0; i < n; ++i) {
    TORCH_CHECK_VALUE(rp[i] <= rp[i + 1], op, ": expected non-decreasing crow, row ", i,
                      " ends (", rp[i + 1], ") before it starts (", rp[i], ")");
  }
}

// at::empty for a kernel's output or scratch buffer. A large CPU buffer asks
// the OS for transparent huge pages before it is first touched, as numpy does
// for its arrays: on a fresh 40 MB buffer that turns ten thousand page faults
// into twenty, which is most of the cost of a memory-bound kernel that writes
// it. Only advice: where it is not honoured nothing changes.
inline at::Tensor new_buffer(at::IntArrayRef sizes, const at::TensorOptions& options) {
  at::Tensor t = at::empty(sizes, options);
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  constexpr size_t kHugeAdviceBytes = size_t{4} << 20;
  const size_t nbytes = t.nbytes();
  if (t.device().is_cpu() && nbytes >= kHugeAdviceBytes) {
    const uintptr_t page = static_cast<uintptr_t>(sysconf(_SC_PAGESIZE));
    const uintptr_t start = reinterpret_cast<uintptr_t>(t.data_ptr());
    const uintptr_t first = (start + page - 1) & ~(page - 1);
    const uintptr_t last = (start + nbytes) & ~(page - 1);
    if (last > first) madvise(reinterpret_cast<void*>(first), last - first, MADV_HUGEPAGE);
  }
#endif
  return t;
}

// A scratch array of n values of T, each set to `value`, in a buffer that
// `holder` keeps alive (new_buffer: huge pages for large arrays).
template <typename T>
T* scratch_array(at::Tensor& holder, int64_t n, T value) {
  holder = new_buffer({n * static_cast<int64_t>(sizeof(T))}, at::TensorOptions().dtype(at::kByte));
  T* data = reinterpret_cast<T*>(holder.data_ptr());
  std::fill(data, data + n, value);
  return data;
}

// The pattern a product kernel reads: A itself, or A^T given by the cached
// transpose of A (t_crow, t_col) with the values of A read through t_perm,
// so that no transposed copy of the values is made.
struct ProductPattern {
  at::Tensor crow, col, perm;  // perm undefined: values read in order
};

inline ProductPattern product_pattern(const char* op, const at::Tensor& crow,
                                      const at::Tensor& col,
                                      const std::optional<at::Tensor>& t_crow,
                                      const std::optional<at::Tensor>& t_col,
                                      const std::optional<at::Tensor>& t_perm, bool transpose) {
  check_index(crow, op, "crow");
  check_column_index(col, op, "col");
  TORCH_CHECK(crow.numel() >= 1, op, ": expected crow to have at least one entry");
  check_device(op, crow.device(), {{"col", &col}});
  if (!transpose) return {crow.contiguous(), col.contiguous(), at::Tensor()};
  TORCH_CHECK(t_crow.has_value() && t_col.has_value() && t_perm.has_value(), op,
              ": transpose=True needs the transpose pattern t_crow, t_col, t_perm");
  check_pattern(*t_crow, *t_col, op, "t_crow", "t_col");
  check_index(*t_perm, op, "t_perm");
  TORCH_CHECK(t_col->numel() == col.numel() && t_perm->numel() == col.numel(), op,
              ": expected t_col and t_perm of length ", col.numel(), " (the entries of col)");
  check_device(op, crow.device(), {{"t_crow", &*t_crow}, {"t_col", &*t_col}, {"t_perm", &*t_perm}});
  return {t_crow->contiguous(), t_col->contiguous(), t_perm->contiguous()};
}

// The value of an optional one-element scale tensor (1 when absent), as T.
template <typename T>
T scale_value(const std::optional<at::Tensor>& alpha, const char* op) {
  if (!alpha.has_value()) return T(1);
  TORCH_CHECK(alpha->numel() == 1, op, ": expected alpha with one element, got ", alpha->numel());
  const at::Tensor a = alpha->to(at::kCPU, at::kDouble);
  return static_cast<T>(*a.data_ptr<double>());
}

// Checks the values and dense operand of a product A x (x of rank `dim`).
inline void check_product_operands(const char* op, const at::Tensor& col, const at::Tensor& values,
                                   const at::Tensor& x, int64_t dim) {
  check_floating(values, op, "values");
  check_same_dtype(values, x, op, "values", "x");
  TORCH_CHECK(x.dim() == dim, op, ": expected x to be ", dim, "-D, got ", x.dim(), "-D");
  TORCH_CHECK(values.numel() == col.numel(), op, ": expected values and col of equal length, got ",
              values.numel(), " and ", col.numel());
  check_device(op, col.device(), {{"values", &values}, {"x", &x}});
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
