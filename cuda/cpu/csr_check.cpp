// The structure check of a CSR pattern from outside, in one parallel pass:
// row pointers that stay within [0, nnz] and never decrease, columns in
// [0, ncols), and whether each row's columns are strictly increasing.
// Reads col only inside rows whose bounds passed, so that any input is safe.
#include <torch/library.h>

#include <atomic>
#include <limits>

#include "op_checks.h"

namespace learnsolve {
namespace {

constexpr int64_t kNone = std::numeric_limits<int64_t>::max();

void atomic_min(std::atomic<int64_t>& target, int64_t value) {
  int64_t seen = target.load(std::memory_order_relaxed);
  while (value < seen && !target.compare_exchange_weak(seen, value, std::memory_order_relaxed)) {
  }
}

at::Tensor csr_check_cpu(const at::Tensor& crow, const at::Tensor& col, int64_t ncols) {
  check_csr_check(crow, col, ncols);
  const auto crow_c = crow.contiguous();
  const auto col_c = col.contiguous();
  const int64_t nrows = crow.numel() - 1;
  const int64_t nnz = col.numel();
  const int64_t* cp = crow_c.data_ptr<int64_t>();
  const int64_t* cc = col_c.data_ptr<int64_t>();
  std::atomic<int64_t> bad_row{kNone}, bad_col{kNone}, unsorted{kNone};
  // Grain: rows are short on average; a chunk of rows is the unit of work.
  // Grain: rows are short on average; a chunk of rows is the unit of work. A row
  // whose columns increase needs its range checked at its ends only: the common
  // case is one comparison per entry, and the slow scan runs only in a bad row.
  at::parallel_for(0, nrows, kSerialWork / 8, [&](int64_t r0, int64_t r1) {
    int64_t my_row = kNone, my_col = kNone, my_unsorted = kNone;
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t begin = cp[r], end = cp[r + 1];
      if (begin < 0 || end < begin || end > nnz) {
        my_row = std::min(my_row, r);
        continue;
      }
      if (begin == end) continue;
      bool increasing = true;
      for (int64_t p = begin + 1; p < end; ++p) increasing &= cc[p] > cc[p - 1];
      if (increasing && cc[begin] >= 0 && cc[end - 1] < ncols) continue;
      for (int64_t p = begin; p < end; ++p) {
        const int64_t c = cc[p];
        if ((c < 0 || c >= ncols) && my_col == kNone) my_col = p;
        if (p > begin && c <= cc[p - 1] && my_unsorted == kNone) my_unsorted = p;
      }
    }
    atomic_min(bad_row, my_row);
    atomic_min(bad_col, my_col);
    atomic_min(unsorted, my_unsorted);
  });
  auto out = at::empty({3}, crow.options());
  int64_t* o = out.data_ptr<int64_t>();
  const int64_t found[3] = {bad_row.load(), bad_col.load(), unsorted.load()};
  for (int i = 0; i < 3; ++i) o[i] = found[i] == kNone ? -1 : found[i];
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(learnsolve, CPU, m) { m.impl("csr_check", &csr_check_cpu); }

}  // namespace learnsolve
