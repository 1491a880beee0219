// Both gradients of x = op(T)^{-1} b (op: identity, or the transpose with
// transpose=True) in one call: w = op(T)^{-T} g, the gradient for b, by the
// opposite solve with the same level analysis, and the gradient for the
// values on the triangle's entries, -(w x^T) (or -(x w^T) for the transposed
// solve); entries outside the triangle (and the diagonal of a unit triangle)
// take no part in the solve and get zero. On one thread both come from a
// single pass over T; along parallel levels, the values' gradient is a second
// pass, parallel over rows.
#include <torch/library.h>

#include <optional>
#include <tuple>

#include "triangular.h"

namespace learnsolve {
namespace {

std::tuple<at::Tensor, at::Tensor> sptrsv_backward_cpu(
    const at::Tensor& crow, const at::Tensor& col, const at::Tensor& values, const at::Tensor& x,
    const at::Tensor& grad, const at::Tensor& level_ptr, const at::Tensor& level_rows,
    const at::Tensor& diag, bool lower, bool unit_diagonal, const at::Tensor& t_crow,
    const at::Tensor& t_col, const at::Tensor& t_perm, bool transpose) {
  const TriangularAnalysis an =
      check_triangular("sptrsv_backward", crow, col, values, level_ptr, level_rows, diag);
  const ProductPattern t =
      product_pattern("sptrsv_backward", crow, col, t_crow, t_col, t_perm, true);
  const int64_t n = crow.numel() - 1;
  const int64_t k = check_triangular_grad(values, x, grad, n);
  const auto values_c = values.contiguous();
  const auto x_c = x.contiguous();
  const auto crow_c = crow.contiguous();
  const auto col_c = col.contiguous();
  auto w = new_buffer(grad.sizes(), grad.options());
  w.copy_(grad);
  auto grad_values = new_buffer({col.numel()}, values.options());
  AT_DISPATCH_FLOATING_TYPES(values.scalar_type(), "sptrsv_backward_cpu", [&] {
    const scalar_t* v = values_c.data_ptr<scalar_t>();
    const int64_t* dp = an.diag.data_ptr<int64_t>();
    if (!unit_diagonal) check_diagonal("sptrsv_backward", dp, v, n);
    const int64_t* rp = crow_c.data_ptr<int64_t>();
    const int64_t* ci = col_c.data_ptr<int64_t>();
    const TriangularSystem<scalar_t> system{
        n, rp, ci, t.crow.data_ptr<int64_t>(), t.col.data_ptr<int64_t>(),
        t.perm.data_ptr<int64_t>(), v, dp, lower, unit_diagonal,
        an.level_ptr.data_ptr<int64_t>(), an.level_rows.data_ptr<int64_t>(),
        an.level_ptr.numel() - 1};
    scalar_t* wp = w.data_ptr<scalar_t>();
    // d T[r, c] = -sum_j w[r, j] x[c, j]  (forward T x = b)
    //           = -sum_j x[r, j] w[c, j]  (forward T^T x = b)
    const scalar_t* left = transpose ? x_c.data_ptr<scalar_t>() : wp;
    const scalar_t* right = transpose ? wp : x_c.data_ptr<scalar_t>();
    scalar_t* gv = grad_values.data_ptr<scalar_t>();
    auto grad_row = [&](int64_t r) {
      const scalar_t* lr = left + r * k;
      for (int64_t p = rp[r]; p < rp[r + 1]; ++p) {
        const int64_t c = ci[p];
        const bool inside = (lower ? c < r : c > r) || (c == r && !unit_diagonal);
        scalar_t acc = 0;
        if (inside) {
          const scalar_t* rr = right + c * k;
          for (int64_t j = 0; j < k; ++j) acc += lr[j] * rr[j];
        }
        gv[p] = -acc;
      }
    };
    const std::vector<Segment> segments = level_schedule(system, !transpose, k);
    if (segments.empty()) {
      // One pass over T: row r's gradient is written as soon as row r of w
      // is final. It reads w[r] (forward T x = b; the solve by columns has
      // just finished it) or w[c] for the row's own entries (forward
      // T^T x = b; the solve by rows has finished them all by then).
      solve_serial(system, !transpose, k, wp, grad_row);
    } else {
      solve_levels(system, !transpose, k, wp, segments);
      parallel_rows(rp, n, [&](int64_t, int64_t r0, int64_t r1) {
        for (int64_t r = r0; r < r1; ++r) grad_row(r);
      });
    }
  });
  return {grad_values, w};
}

}  // namespace

TORCH_LIBRARY_IMPL(learnsolve, CPU, m) { m.impl("sptrsv_backward", &sptrsv_backward_cpu); }

}  // namespace learnsolve
