// Pattern of A^T by a counting sort over the columns of A. Each chunk of rows
// counts its columns in a histogram of its own, so the scatter needs no
// atomics, and rows are visited in order, so the transpose is canonical
// (sorted columns) without a sort. Returns (t_crow, t_col, perm) with
// values(A^T) = values(A)[perm].
#include <torch/library.h>

#include <tuple>

#include "op_checks.h"

namespace learnsolve {
namespace {

std::tuple<at::Tensor, at::Tensor, at::Tensor> transpose_cpu(const at::Tensor& crow,
                                                             const at::Tensor& col,
                                                             int64_t ncols) {
  check_transpose(crow, col, ncols);
  const int64_t nrows = crow.numel() - 1;
  const int64_t nnz = col.numel();
  const auto crow_c = crow.contiguous();
  const auto col_c = col.to(at::kLong).contiguous();  // an int32 copy is widened
  auto t_crow = new_buffer({ncols + 1}, crow.options());
  auto t_col = new_buffer({nnz}, crow.options());
  auto perm = new_buffer({nnz}, crow.options());
  const int64_t* rp = crow_c.data_ptr<int64_t>();
  const int64_t* ci = col_c.data_ptr<int64_t>();
  int64_t* tr = t_crow.data_ptr<int64_t>();
  int64_t* tc = t_col.data_ptr<int64_t>();
  int64_t* pp = perm.data_ptr<int64_t>();

  // One histogram per chunk; more chunks than the entries pay for are not used.
  int64_t nchunks = row_chunks(rp, nrows);
  if (nchunks > 1 && nnz < nchunks * ncols) nchunks = 1;
  at::Tensor offsets_buffer;
  int64_t* offsets =
      scratch_array<int64_t>(offsets_buffer, std::max<int64_t>(nchunks, 1) * ncols, 0);
  parallel_rows(rp, nrows, nchunks, [&](int64_t c, int64_t r0, int64_t r1) {
    int64_t* h = offsets + c * ncols;
    for (int64_t p = rp[r0]; p < rp[r1]; ++p) ++h[ci[p]];
  });
  // Exclusive scan in (column, chunk) order: chunk c's entries of column j
  // follow those of the chunks before it, which hold the earlier rows.
  int64_t total = 0;
  tr[0] = 0;
  for (int64_t j = 0; j < ncols; ++j) {
    for (int64_t c = 0; c < nchunks; ++c) {
      const int64_t count = offsets[c * ncols + j];
      offsets[c * ncols + j] = total;
      total += count;
    }
    tr[j + 1] = total;
  }
  parallel_rows(rp, nrows, nchunks, [&](int64_t c, int64_t r0, int64_t r1) {
    int64_t* h = offsets + c * ncols;
    for (int64_t r = r0; r < r1; ++r) {
      for (int64_t p = rp[r]; p < rp[r + 1]; ++p) {
        const int64_t q = h[ci[p]]++;
        tc[q] = r;
        pp[q] = p;
      }
    }
  });
  return {t_crow, t_col, perm};
}

}  // namespace

TORCH_LIBRARY_IMPL(learnsolve, CPU, m) { m.impl("transpose", &transpose_cpu); }

}  // namespace learnsolve
