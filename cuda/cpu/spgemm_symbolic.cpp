// Symbolic phase of C = A B (Gustavson): the column set of row i of C is the
// union of the rows of B that row i of A selects. Two passes over the rows,
// each with a dense marker array per chunk of rows: the first counts each
// row's columns, a scan places the rows, the second writes the columns in
// place and sorts them. No intermediate buffers, so no copies.
#include <torch/library.h>

#include <algorithm>
#include <tuple>

#include "op_checks.h"

namespace learnsolve {
namespace {

// Sorts a short row by insertion (the rows of sparse products are mostly a
// few dozen entries), a long one with std::sort.
inline void sort_row(int64_t* first, int64_t* last) {
  if (last - first > 32) {
    std::sort(first, last);
    return;
  }
  for (int64_t* i = first + 1; i < last; ++i) {
    const int64_t v = *i;
    int64_t* j = i;
    for (; j > first && *(j - 1) > v; --j) *j = *(j - 1);
    *j = v;
  }
}

std::tuple<at::Tensor, at::Tensor> spgemm_symbolic_cpu(const at::Tensor& crow_a,
                                                       const at::Tensor& col_a,
                                                       const at::Tensor& crow_b,
                                                       const at::Tensor& col_b, int64_t ncols) {
  check_spgemm_symbolic(crow_a, col_a, crow_b, col_b, ncols);
  const int64_t nrows = crow_a.numel() - 1;
  const auto ra_c = crow_a.contiguous(), ca_c = col_a.contiguous();
  const auto rb_c = crow_b.contiguous(), cb_c = col_b.contiguous();
  const int64_t* ra = ra_c.data_ptr<int64_t>();
  const int64_t* ca = ca_c.data_ptr<int64_t>();
  const int64_t* rb = rb_c.data_ptr<int64_t>();
  const int64_t* cb = cb_c.data_ptr<int64_t>();

  // Calls emit(j) once for each distinct column j of row r of C, in the order
  // first met; `marker` holds for each column the last row that met it.
  auto for_each_column = [&](int64_t r, int64_t* marker, auto emit) {
    for (int64_t p = ra[r]; p < ra[r + 1]; ++p) {
      const int64_t k = ca[p];
      for (int64_t q = rb[k]; q < rb[k + 1]; ++q) {
        const int64_t j = cb[q];
        if (marker[j] != r) {
          marker[j] = r;
          emit(j);
        }
      }
    }
  };

  auto crow_c = new_buffer({nrows + 1}, crow_a.options());
  int64_t* rc = crow_c.data_ptr<int64_t>();
  rc[0] = 0;
  parallel_rows(ra, nrows, [&](int64_t, int64_t r0, int64_t r1) {
    at::Tensor marker_buffer;
    int64_t* marker = scratch_array<int64_t>(marker_buffer, ncols, -1);
    for (int64_t r = r0; r < r1; ++r) {
      int64_t count = 0;
      for_each_column(r, marker, [&](int64_t) { ++count; });
      rc[r + 1] = count;
    }
  });
  for (int64_t r = 0; r < nrows; ++r) rc[r + 1] += rc[r];

  auto col_c = new_buffer({rc[nrows]}, crow_a.options());
  int64_t* cc = col_c.data_ptr<int64_t>();
  parallel_rows(ra, nrows, [&](int64_t, int64_t r0, int64_t r1) {
    at::Tensor marker_buffer;
    int64_t* marker = scratch_array<int64_t>(marker_buffer, ncols, -1);
    for (int64_t r = r0; r < r1; ++r) {
      int64_t* out = cc + rc[r];
      for_each_column(r, marker, [&](int64_t j) { *out++ = j; });
      sort_row(cc + rc[r], out);
    }
  });
  return {crow_c, col_c};
}

}  // namespace

TORCH_LIBRARY_IMPL(learnsolve, CPU, m) { m.impl("spgemm_symbolic", &spgemm_symbolic_cpu); }

}  // namespace learnsolve
