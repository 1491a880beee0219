// Both gradients of y = A x in one pass over A, for when both are wanted:
// d values[p] = g[r(p)] x[c(p)] and d x = A^T g. Each chunk of rows scatters
// its share of A^T g into a vector of its own (no atomics), and the chunks'
// vectors are summed at the end; the values and columns of A are read once,
// not once here and once more through the transpose.
#include <torch/library.h>

#include <tuple>

#include "op_checks.h"

namespace learnsolve {
namespace {

std::tuple<at::Tensor, at::Tensor> spmv_backward_cpu(const at::Tensor& crow,
                                                     const at::Tensor& col,
                                                     const at::Tensor& values,
                                                     const at::Tensor& x,
                                                     const at::Tensor& grad) {
  check_spmv_backward(crow, col, values, x, grad);
  const int64_t nrows = crow.numel() - 1;
  const int64_t ncols = x.numel();
  const auto crow_c = crow.contiguous(), col_c = col.contiguous();
  const auto values_c = values.contiguous(), x_c = x.contiguous(), g_c = grad.contiguous();
  auto grad_values = new_buffer({col.numel()}, values.options());
  auto grad_x = new_buffer({ncols}, values.options());
  AT_DISPATCH_FLOATING_TYPES(values.scalar_type(), "spmv_backward_cpu", [&] {
  AT_DISPATCH_INDEX_TYPES(col.scalar_type(), "spmv_backward_cpu", [&] {
    const int64_t* rp = crow_c.data_ptr<int64_t>();
    const index_t* ci = col_c.data_ptr<index_t>();
    const scalar_t* v = values_c.data_ptr<scalar_t>();
    const scalar_t* xp = x_c.data_ptr<scalar_t>();
    const scalar_t* g = g_c.data_ptr<scalar_t>();
    scalar_t* gv = grad_values.data_ptr<scalar_t>();
    scalar_t* gx = grad_x.data_ptr<scalar_t>();
    const int64_t nchunks = row_chunks(rp, nrows);
    at::Tensor partial_buffer;
    scalar_t* partial = gx;  // one chunk: it scatters into d x itself
    if (nchunks > 1) {
      partial_buffer = new_buffer({nchunks * ncols}, values.options());
      partial = partial_buffer.data_ptr<scalar_t>();
    } else {
      std::fill(gx, gx + ncols, scalar_t(0));
    }
    parallel_rows(rp, nrows, nchunks, [&](int64_t c, int64_t r0, int64_t r1) {
      scalar_t* share = partial + c * ncols;
      if (nchunks > 1) std::fill(share, share + ncols, scalar_t(0));
      for (int64_t r = r0; r < r1; ++r) {
        const scalar_t gr = g[r];
        for (int64_t p = rp[r]; p < rp[r + 1]; ++p) {
          gv[p] = gr * xp[ci[p]];
          share[ci[p]] += v[p] * gr;
        }
      }
    });
    if (nchunks > 1) {
      at::parallel_for(0, ncols, kSerialWork, [&](int64_t j0, int64_t j1) {
        for (int64_t j = j0; j < j1; ++j) {
          scalar_t sum = 0;
          for (int64_t c = 0; c < nchunks; ++c) sum += partial[c * ncols + j];
          gx[j] = sum;
        }
      });
    }
  });
  });
  return {grad_values, grad_x};
}

}  // namespace

TORCH_LIBRARY_IMPL(learnsolve, CPU, m) { m.impl("spmv_backward", &spmv_backward_cpu); }

}  // namespace learnsolve
