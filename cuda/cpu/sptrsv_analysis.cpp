// The level analysis of a sparse triangular solve, computed once per pattern:
// the level of every row of the lower (or upper) triangle of a square CSR
// matrix, the rows grouped by level, and the position of each diagonal entry.
// A row's level is one more than the highest level among the rows it reads
// (0 for a row that reads none), so the rows of one level are independent.
#include <torch/library.h>

#include <tuple>

#include "common.h"

namespace learnsolve {
namespace {

std::tuple<at::Tensor, at::Tensor, at::Tensor> sptrsv_analysis_cpu(const at::Tensor& crow,
                                                                   const at::Tensor& col,
                                                                   bool lower) {
  check_pattern(crow, col, "sptrsv_analysis", "crow", "col");
  const int64_t n = crow.numel() - 1;
  const auto crow_c = crow.contiguous();
  const auto col_c = col.contiguous();
  const int64_t* rp = crow_c.data_ptr<int64_t>();
  const int64_t* ci = col_c.data_ptr<int64_t>();
  auto diag = at::empty({n}, crow.options());
  int64_t* dp = diag.data_ptr<int64_t>();
  at::Tensor level_holder;
  int64_t* level = scratch_array<int64_t>(level_holder, n, 0);
  int64_t nlevels = 0;
  // Sequential by nature: a row's level needs the levels of the rows it reads.
  for (int64_t s = 0; s < n; ++s) {
    const int64_t i = lower ? s : n - 1 - s;
    int64_t lev = 0;
    dp[i] = -1;
    if (lower) {
      int64_t p = rp[i];
      for (; p < rp[i + 1] && ci[p] < i; ++p) lev = std::max(lev, level[ci[p]] + 1);
      if (p < rp[i + 1] && ci[p] == i) dp[i] = p;
    } else {
      int64_t p = rp[i + 1] - 1;
      for (; p >= rp[i] && ci[p] > i; --p) lev = std::max(lev, level[ci[p]] + 1);
      if (p >= rp[i] && ci[p] == i) dp[i] = p;
    }
    level[i] = lev;
    nlevels = std::max(nlevels, lev + 1);
  }
  // Rows grouped by level, in increasing row order within a level.
  auto level_ptr = at::zeros({nlevels + 1}, crow.options());
  int64_t* lp = level_ptr.data_ptr<int64_t>();
  for (int64_t i = 0; i < n; ++i) ++lp[level[i] + 1];
  for (int64_t l = 0; l < nlevels; ++l) lp[l + 1] += lp[l];
  auto level_rows = at::empty({n}, crow.options());
  int64_t* lr = level_rows.data_ptr<int64_t>();
  at::Tensor next_holder;
  int64_t* next = scratch_array<int64_t>(next_holder, nlevels, 0);
  std::copy(lp, lp + nlevels, next);
  for (int64_t i = 0; i < n; ++i) lr[next[level[i]]++] = i;
  return {level_ptr, level_rows, diag};
}

}  // namespace

TORCH_LIBRARY_IMPL(learnsolve, CPU, m) { m.impl("sptrsv_analysis", &sptrsv_analysis_cpu); }

}  // namespace learnsolve
