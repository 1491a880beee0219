// Y = A X, or Y = A^T X (transpose=True, through the cached transpose of A),
// for CSR A and a dense matrix X: each row of Y is a combination of rows of
// X, so the inner loop runs over contiguous memory. For A^T the values are
// first gathered into the transpose's order (one parallel pass): reading them
// through the permutation inside the product would add a scattered read per
// entry and row of Y, about 1.2-1.4x the time for a few columns.
#include <torch/library.h>

#include "common.h"

namespace learnsolve {
namespace {

constexpr int64_t kBlock = 8;  // columns of Y summed together in registers

at::Tensor spmm_cpu(const at::Tensor& crow, const at::Tensor& col, const at::Tensor& values,
                    const at::Tensor& x, const std::optional<at::Tensor>& t_crow,
                    const std::optional<at::Tensor>& t_col,
                    const std::optional<at::Tensor>& t_perm, bool transpose) {
  const ProductPattern a = product_pattern("spmm", crow, col, t_crow, t_col, t_perm, transpose);
  check_product_operands("spmm", col, values, x, 2);
  const int64_t nrows = a.crow.numel() - 1;
  const int64_t k = x.size(1);
  const auto values_c = values.contiguous();
  const auto x_c = x.contiguous();
  auto y = new_buffer({nrows, k}, x.options());
  if (k == 0) return y;
  AT_DISPATCH_FLOATING_TYPES(values.scalar_type(), "spmm_cpu", [&] {
  AT_DISPATCH_INDEX_TYPES(a.col.scalar_type(), "spmm_cpu", [&] {
    const int64_t* rp = a.crow.data_ptr<int64_t>();
    const index_t* ci = a.col.data_ptr<index_t>();
    const scalar_t* v = values_c.data_ptr<scalar_t>();
    at::Tensor gathered;
    if (transpose) {
      const int64_t nnz = values.numel();
      gathered = new_buffer({nnz}, values.options());
      scalar_t* g = gathered.data_ptr<scalar_t>();
      const int64_t* perm = a.perm.data_ptr<int64_t>();
      at::parallel_for(0, nnz, kSerialWork, [&](int64_t p0, int64_t p1) {
        for (int64_t p = p0; p < p1; ++p) g[p] = v[perm[p]];
      });
      v = g;
    }
    const scalar_t* xp = x_c.data_ptr<scalar_t>();
    scalar_t* yp = y.data_ptr<scalar_t>();
    parallel_rows(rp, nrows, [&](int64_t, int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
        scalar_t* yr = yp + r * k;
        // Columns in blocks of kBlock, summed in registers: a row of Y is
        // written once instead of once per stored entry of the row.
        // The last k % kBlock columns the same way, in a partial block.
        for (int64_t j0 = 0; j0 < k; j0 += kBlock) {
          const int64_t width = std::min(kBlock, k - j0);
          scalar_t acc[kBlock] = {};
          for (int64_t p = rp[r]; p < rp[r + 1]; ++p) {
            const scalar_t a_rp = v[p];
            const scalar_t* xr = xp + ci[p] * k + j0;
            if (width == kBlock) {
              for (int64_t j = 0; j < kBlock; ++j) acc[j] += a_rp * xr[j];
            } else {
              for (int64_t j = 0; j < width; ++j) acc[j] += a_rp * xr[j];
            }
          }
          std::copy(acc, acc + width, yr + j0);
        }
      }
    });
  });
  });
  return y;
}

}  // namespace

TORCH_LIBRARY_IMPL(learnsolve, CPU, m) { m.impl("spmm", &spmm_cpu); }

}  // namespace learnsolve
