// Incomplete LU on a given pattern: the values of L (unit lower, below the
// diagonal) and U (upper, diagonal included) with L U ≈ A, stored together
// on the pattern of A (ILU(0)), or on a level-of-fill pattern with A's
// values scattered onto it and zeros at the fill (ILU(k)).
//
// The IKJ variant, row by row: for each stored k < i in increasing order,
//   l_ik = a_ik / u_kk,   a_ij -= l_ik u_kj   for the stored j > k of row k
// that row i also stores (updates outside the pattern are dropped). No
// pivoting; a zero or non-finite pivot u_ii is a breakdown, raised as
// torch.linalg.LinAlgError naming the row (the Python side shifts the
// diagonal and retries, as classical codes do). Sequential (rows depend on
// earlier rows), float64 accumulation whatever the dtype; CPU only.
#include <torch/library.h>

#include <cmath>
#include <vector>

#include "common.h"

namespace learnsolve {
namespace {

at::Tensor ilu_cpu(const at::Tensor& crow, const at::Tensor& col, const at::Tensor& values) {
  check_pattern(crow, col, "ilu", "crow", "col");
  check_floating(values, "ilu", "values");
  TORCH_CHECK(values.dim() == 1 && values.numel() == col.numel(), "ilu: expected 1-D values of ",
              "the length of col (", col.numel(), "), got shape ", values.sizes());
  check_device("ilu", crow.device(), {{"col", &col}, {"values", &values}});
  const int64_t n = crow.numel() - 1;
  const auto crow_c = crow.contiguous();
  const auto col_c = col.contiguous();
  const int64_t* rp = crow_c.data_ptr<int64_t>();
  const int64_t* ci = col_c.data_ptr<int64_t>();
  check_row_pointers(rp, n, col.numel(), "ilu");
  auto out = values.to(at::kDouble).clone().contiguous();
  double* f = out.data_ptr<double>();
  std::vector<int64_t> diagonal(n), position(n, -1);
  for (int64_t i = 0; i < n; ++i) {
    int64_t d = -1;
    for (int64_t p = rp[i]; p < rp[i + 1]; ++p) {
      TORCH_CHECK(ci[p] >= 0 && ci[p] < n, "ilu: expected a square pattern, column ", ci[p],
                  " of row ", i, " is outside [0, ", n, ")");
      if (ci[p] == i) d = p;
    }
    TORCH_CHECK_VALUE(d >= 0, "ilu: expected every diagonal entry stored; row ", i, " has none");
    diagonal[i] = d;
  }
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t p = rp[i]; p < rp[i + 1]; ++p) position[ci[p]] = p;
    for (int64_t p = rp[i]; p < diagonal[i]; ++p) {
      const int64_t k = ci[p];
      const double l = f[p] / f[diagonal[k]];
      f[p] = l;
      for (int64_t q = diagonal[k] + 1; q < rp[k + 1]; ++q) {
        const int64_t at = position[ci[q]];
        if (at >= 0) f[at] -= l * f[q];
      }
    }
    for (int64_t p = rp[i]; p < rp[i + 1]; ++p) position[ci[p]] = -1;
    const double pivot = f[diagonal[i]];
    TORCH_CHECK_LINALG(pivot != 0.0 && std::isfinite(pivot), "broke down at row ", i,
                       ": the pivot u_ii = ", pivot, " is ", pivot == 0.0 ? "zero" : "not finite",
                       " (ILU without pivoting exists for M-matrices and diagonally dominant "
                       "matrices, not for every nonsingular matrix)");
  }
  return out.to(values.scalar_type());
}

}  // namespace

TORCH_LIBRARY_IMPL(learnsolve, CPU, m) { m.impl("ilu", &ilu_cpu); }

}  // namespace learnsolve
