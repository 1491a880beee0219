// The level-of-fill pattern of ILU(k) (and, on its lower triangle, of IC(k)):
// the symbolic phase of an incomplete factorisation with fill level `level`.
//
// An entry of A has level 0; eliminating row k from row i gives the entry
// (i, j) the level lev(i, k) + lev(k, j) + 1, the smallest over all k < i
// that reach it; entries of level <= `level` are kept, the others dropped
// (and so never fill further). Level 0 gives A's pattern; the diagonal is
// always part of the result. Row by row, the columns k < i of row i taken in
// increasing order from a heap (a fill entry of row i joins it when found),
// each merged with the upper part of the finished row k. Sequential (rows
// depend on earlier rows); CPU only: the Python side moves the pattern.
#include <torch/library.h>

#include <functional>
#include <limits>
#include <queue>
#include <tuple>
#include <vector>

#include "common.h"

namespace learnsolve {
namespace {

std::tuple<at::Tensor, at::Tensor> iluk_symbolic_cpu(const at::Tensor& crow, const at::Tensor& col,
                                                     int64_t level) {
  check_pattern(crow, col, "iluk_symbolic", "crow", "col");
  TORCH_CHECK(level >= 0, "iluk_symbolic: expected level >= 0, got ", level);
  const int64_t n = crow.numel() - 1;
  const auto crow_c = crow.contiguous();
  const auto col_c = col.contiguous();
  const int64_t* rp = crow_c.data_ptr<int64_t>();
  const int64_t* ci = col_c.data_ptr<int64_t>();
  check_row_pointers(rp, n, col.numel(), "iluk_symbolic");
  constexpr int64_t kAbsent = std::numeric_limits<int64_t>::max();

  std::vector<int64_t> out_ptr(n + 1, 0), out_col, out_level, upper_start(n);
  out_col.reserve(col.numel());
  out_level.reserve(col.numel());
  std::vector<int64_t> lev(n, kAbsent), row;
  std::priority_queue<int64_t, std::vector<int64_t>, std::greater<int64_t>> pending;
  for (int64_t i = 0; i < n; ++i) {
    row.clear();
    auto add = [&](int64_t j, int64_t l) {
      lev[j] = l;
      row.push_back(j);
      if (j < i) pending.push(j);
    };
    for (int64_t p = rp[i]; p < rp[i + 1]; ++p) {
      TORCH_CHECK(ci[p] >= 0 && ci[p] < n, "iluk_symbolic: expected a square pattern, column ",
                  ci[p], " of row ", i, " is outside [0, ", n, ")");
      add(ci[p], 0);
    }
    if (lev[i] == kAbsent) add(i, 0);
    while (!pending.empty()) {
      const int64_t k = pending.top();
      pending.pop();
      const int64_t lk = lev[k];
      for (int64_t q = upper_start[k]; q < out_ptr[k + 1]; ++q) {
        const int64_t j = out_col[q], l = lk + out_level[q] + 1;
        if (l > level) continue;
        if (lev[j] == kAbsent) {
          add(j, l);
        } else if (l < lev[j]) {
          lev[j] = l;
        }
      }
    }
    std::sort(row.begin(), row.end());
    for (const int64_t j : row) {
      out_col.push_back(j);
      out_level.push_back(lev[j]);
      lev[j] = kAbsent;
    }
    out_ptr[i + 1] = static_cast<int64_t>(out_col.size());
    // The finished row's entries right of the diagonal, read by later rows.
    upper_start[i] = out_ptr[i] + (std::upper_bound(row.begin(), row.end(), i) - row.begin());
  }
  auto options = crow.options();
  auto new_crow = at::empty({n + 1}, options);
  auto new_col = at::empty({static_cast<int64_t>(out_col.size())}, options);
  std::copy(out_ptr.begin(), out_ptr.end(), new_crow.data_ptr<int64_t>());
  std::copy(out_col.begin(), out_col.end(), new_col.data_ptr<int64_t>());
  return {new_crow, new_col};
}

}  // namespace

TORCH_LIBRARY_IMPL(learnsolve, CPU, m) { m.impl("iluk_symbolic", &iluk_symbolic_cpu); }

}  // namespace learnsolve
