// Symbolic phase of C = A B (Gustavson): the column set of row i of C is the
// union of the rows of B that row i of A selects. Each chunk of rows marks the
// columns it has seen in a dense marker array (one per chunk), sorts each row,
// and keeps its rows in a buffer of its own; the buffers are then copied to
// their places after a scan of the row counts, so each row is computed once.
#include <torch/library.h>

#include <algorithm>
#include <cstring>
#include <tuple>
#include <vector>

#include "common.h"

namespace learnsolve {
namespace {

std::tuple<at::Tensor, at::Tensor> spgemm_symbolic_cpu(const at::Tensor& crow_a,
                                                       const at::Tensor& col_a,
                                                       const at::Tensor& crow_b,
                                                       const at::Tensor& col_b, int64_t ncols) {
  check_pattern(crow_a, col_a, "spgemm_symbolic", "crow_a", "col_a");
  check_pattern(crow_b, col_b, "spgemm_symbolic", "crow_b", "col_b");
  TORCH_CHECK(ncols >= 0, "spgemm_symbolic: expected ncols >= 0, got ", ncols);
  const int64_t nrows = crow_a.numel() - 1;
  const auto ra_c = crow_a.contiguous(), ca_c = col_a.contiguous();
  const auto rb_c = crow_b.contiguous(), cb_c = col_b.contiguous();
  const int64_t* ra = ra_c.data_ptr<int64_t>();
  const int64_t* ca = ca_c.data_ptr<int64_t>();
  const int64_t* rb = rb_c.data_ptr<int64_t>();
  const int64_t* cb = cb_c.data_ptr<int64_t>();

  auto crow_c = at::empty({nrows + 1}, crow_a.options());
  int64_t* rc = crow_c.data_ptr<int64_t>();
  rc[0] = 0;
  const int64_t nchunks = row_chunks(ra, nrows);
  std::vector<std::vector<int64_t>> chunk_cols(static_cast<size_t>(nchunks));
  std::vector<int64_t> chunk_first_row(static_cast<size_t>(nchunks), 0);
  parallel_rows(ra, nrows, nchunks, [&](int64_t c, int64_t r0, int64_t r1) {
    std::vector<int64_t> marker(static_cast<size_t>(ncols), -1);
    std::vector<int64_t>& out = chunk_cols[c];
    chunk_first_row[c] = r0;
    for (int64_t r = r0; r < r1; ++r) {
      const size_t start = out.size();
      for (int64_t p = ra[r]; p < ra[r + 1]; ++p) {
        const int64_t k = ca[p];
        for (int64_t q = rb[k]; q < rb[k + 1]; ++q) {
          const int64_t j = cb[q];
          if (marker[j] != r) {
            marker[j] = r;
            out.push_back(j);
          }
        }
      }
      std::sort(out.begin() + start, out.end());
      rc[r + 1] = static_cast<int64_t>(out.size() - start);
    }
  });
  for (int64_t r = 0; r < nrows; ++r) rc[r + 1] += rc[r];

  auto col_c = at::empty({rc[nrows]}, crow_a.options());
  int64_t* cc = col_c.data_ptr<int64_t>();
  at::parallel_for(0, nchunks, 1, [&](int64_t c0, int64_t c1) {
    for (int64_t c = c0; c < c1; ++c) {
      const auto& cols = chunk_cols[c];
      if (!cols.empty())
        std::memcpy(cc + rc[chunk_first_row[c]], cols.data(), cols.size() * sizeof(int64_t));
    }
  });
  return {crow_c, col_c};
}

}  // namespace

TORCH_LIBRARY_IMPL(learnsolve, CPU, m) { m.impl("spgemm_symbolic", &spgemm_symbolic_cpu); }

}  // namespace learnsolve
