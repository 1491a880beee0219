// The SpGEMM backward for B: dB = (A^T G) ⊙ mask(B), for C = A B and G the
// gradient on C's pattern. It follows the forward product: row i of G is
// spread into a dense row once, and each entry (i, k) of A adds a times that
// row, read at the columns of row k of B, into the gradient of row k of B.
// Row k of B lies inside row i of C (the symbolic product put it there), so
// every slot read was just written and the dense row is never cleared. Only
// the entries of mask(B) are computed.
//
// Rows of A on different threads may add into the same row of B. Each chunk
// of rows of A therefore adds into a buffer of its own that spans only the
// entries of B its rows reach (for a banded matrix, about nnz(B) / threads
// plus the band), and the buffers are summed at the end.
#include <torch/library.h>

#include <algorithm>
#include <vector>

#include "op_checks.h"

namespace learnsolve {
namespace {

at::Tensor spgemm_grad_b_cpu(const at::Tensor& crow_a, const at::Tensor& col_a,
                             const at::Tensor& values_a, const at::Tensor& crow_c,
                             const at::Tensor& col_c, const at::Tensor& grad_c,
                             const at::Tensor& crow_b, const at::Tensor& col_b, int64_t ncols) {
  check_spgemm_grad_b(crow_a, col_a, values_a, crow_c, col_c, grad_c, crow_b, col_b, ncols);
  const int64_t nrows = crow_a.numel() - 1;
  const int64_t nnz_b = col_b.numel();
  const auto ra_c = crow_a.contiguous(), ca_c = col_a.contiguous(), va_c = values_a.contiguous();
  const auto rc_c = crow_c.contiguous(), cc_c = col_c.contiguous(), g_c = grad_c.contiguous();
  const auto rb_c = crow_b.contiguous(), cb_c = col_b.contiguous();
  auto out = new_buffer({nnz_b}, values_a.options());
  AT_DISPATCH_FLOATING_TYPES(values_a.scalar_type(), "spgemm_grad_b_cpu", [&] {
    const int64_t* ra = ra_c.data_ptr<int64_t>();
    const int64_t* ca = ca_c.data_ptr<int64_t>();
    const scalar_t* va = va_c.data_ptr<scalar_t>();
    const int64_t* rc = rc_c.data_ptr<int64_t>();
    const int64_t* cc = cc_c.data_ptr<int64_t>();
    const scalar_t* g = g_c.data_ptr<scalar_t>();
    const int64_t* rb = rb_c.data_ptr<int64_t>();
    const int64_t* cb = cb_c.data_ptr<int64_t>();
    scalar_t* o = out.data_ptr<scalar_t>();

    // Adds the contributions of rows [r0, r1) of A into sums, which holds the
    // entries [first, ...) of B.
    auto accumulate = [&](int64_t r0, int64_t r1, scalar_t* sums, int64_t first) {
      at::Tensor row_buffer;
      scalar_t* g_row = scratch_array<scalar_t>(row_buffer, ncols, scalar_t(0));
      for (int64_t i = r0; i < r1; ++i) {
        if (ra[i] == ra[i + 1]) continue;
        for (int64_t s = rc[i]; s < rc[i + 1]; ++s) g_row[cc[s]] = g[s];
        for (int64_t p = ra[i]; p < ra[i + 1]; ++p) {
          const scalar_t a = va[p];
          const int64_t k = ca[p];
          for (int64_t q = rb[k]; q < rb[k + 1]; ++q) sums[q - first] += a * g_row[cb[q]];
        }
      }
    };

    const int64_t nchunks = row_chunks(ra, nrows);
    if (nchunks <= 1) {
      std::fill(o, o + nnz_b, scalar_t(0));
      accumulate(0, nrows, o, 0);
      return;
    }
    // Chunk c reaches the entries [first[c], last[c]) of B.
    std::vector<int64_t> first(nchunks, 0), last(nchunks, 0);
    std::vector<at::Tensor> buffers(nchunks);
    parallel_rows(ra, nrows, nchunks, [&](int64_t c, int64_t r0, int64_t r1) {
      int64_t low = nnz_b, high = 0;
      for (int64_t p = ra[r0]; p < ra[r1]; ++p) {
        low = std::min(low, rb[ca[p]]);
        high = std::max(high, rb[ca[p] + 1]);
      }
      first[c] = low;
      last[c] = std::max(low, high);
      scalar_t* sums = scratch_array<scalar_t>(buffers[c], last[c] - first[c], scalar_t(0));
      accumulate(r0, r1, sums, low);
    });
    at::parallel_for(0, nnz_b, kSerialWork, [&](int64_t p0, int64_t p1) {
      std::fill(o + p0, o + p1, scalar_t(0));
      for (int64_t c = 0; c < nchunks; ++c) {
        const scalar_t* sums = reinterpret_cast<const scalar_t*>(buffers[c].data_ptr());
        for (int64_t p = std::max(p0, first[c]); p < std::min(p1, last[c]); ++p)
          o[p] += sums[p - first[c]];
      }
    });
  });
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(learnsolve, CPU, m) { m.impl("spgemm_grad_b", &spgemm_grad_b_cpu); }

}  // namespace learnsolve
