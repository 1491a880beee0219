// Incomplete Cholesky on a given pattern: the values of the lower triangular
// L with L L^T ≈ A on the pattern of A's lower triangle (IC(0)), or on the
// lower triangle of a level-of-fill pattern with A's values scattered onto it
// and zeros at the fill (IC(k)).
//
// Row by row (row i needs the rows k < i it reads):
//   L_ik = (a_ik - sum_{j<k} L_ij L_kj) / L_kk   for the stored k < i,
//   L_ii = sqrt(a_ii - sum_{j<i} L_ij^2),
// each sparse dot product a merge of the sorted rows i and k. Sequential (a
// baseline, computed once per matrix); accumulated in float64 whatever the
// dtype of the values. CPU only: the Python side factors on the CPU and moves
// L to the matrix's device.
#include <torch/library.h>

#include <cmath>

#include "common.h"

namespace learnsolve {
namespace {

at::Tensor ic0_cpu(const at::Tensor& crow, const at::Tensor& col, const at::Tensor& values) {
  check_pattern(crow, col, "ic0", "crow", "col");
  check_floating(values, "ic0", "values");
  TORCH_CHECK(values.dim() == 1 && values.numel() == col.numel(), "ic0: expected 1-D values of ",
              "the length of col (", col.numel(), "), got shape ", values.sizes());
  check_device("ic0", crow.device(), {{"col", &col}, {"values", &values}});
  const int64_t n = crow.numel() - 1;
  const auto crow_c = crow.contiguous();
  const auto col_c = col.contiguous();
  const auto a = values.to(at::kDouble).contiguous();
  const int64_t* rp = crow_c.data_ptr<int64_t>();
  const int64_t* ci = col_c.data_ptr<int64_t>();
  check_row_pointers(rp, n, col.numel(), "ic0");
  const double* av = a.data_ptr<double>();
  auto out = new_buffer({values.numel()}, a.options());
  double* l = out.data_ptr<double>();
  for (int64_t i = 0; i < n; ++i) {
    const int64_t begin = rp[i], last = rp[i + 1] - 1;
    // The input is a lower triangle with its diagonal stored: the diagonal
    // closes every row.
    TORCH_CHECK_VALUE(last >= begin && ci[last] == i, "ic0: expected the lower triangle of a ",
                      "matrix with every diagonal entry stored; row ", i,
                      last >= begin && ci[last] > i ? " has an entry above the diagonal"
                                                    : " has no stored diagonal entry");
    for (int64_t p = begin; p < last; ++p) {
      const int64_t k = ci[p];
      TORCH_CHECK_VALUE(k >= 0 && k < i, "ic0: expected the columns of row ", i, " in [0, ", i,
                        "] (a lower triangle, sorted), got ", k);
      // sum_{j<k} L_ij L_kj: row i before p against row k before its diagonal.
      double dot = 0.0;
      int64_t q = begin, s = rp[k];
      const int64_t s_end = rp[k + 1] - 1;
      while (q < p && s < s_end) {
        if (ci[q] < ci[s]) {
          ++q;
        } else if (ci[q] > ci[s]) {
          ++s;
        } else {
          dot += l[q++] * l[s++];
        }
      }
      l[p] = (av[p] - dot) / l[s_end];
    }
    double pivot = av[last];
    for (int64_t p = begin; p < last; ++p) pivot -= l[p] * l[p];
    TORCH_CHECK_LINALG(pivot > 0.0, "broke down at row ", i, ": the pivot a_ii - ",
                       "sum_j L_ij^2 = ", pivot, " is not positive (IC exists for ",
                       "M-matrices and diagonally dominant SPD matrices, not for every SPD ",
                       "matrix)");
    l[last] = std::sqrt(pivot);
  }
  return out.to(values.scalar_type());
}

}  // namespace

TORCH_LIBRARY_IMPL(learnsolve, CPU, m) { m.impl("ic0", &ic0_cpu); }

}  // namespace learnsolve
