// The sparse triangular solve shared by sptrsv and sptrsv_backward: checks of
// the level analysis, and a level-scheduled solve with one or several
// right-hand sides.
//
// T is the lower (or upper) triangle of a square CSR matrix A; entries of the
// other triangle are skipped. sptrsv_analysis gives, once per pattern, the
// level of every row (rows of one level depend only on rows of earlier
// levels, so they can be solved at the same time) and the position of every
// diagonal entry. T^T is solved with the same analysis: it reads the rows of
// A^T (the cached transpose pattern, values through its permutation) and
// walks the levels backwards, since x_j of T^T x = b waits only for rows i of
// T that depend on j, all of a later level.
#pragma once

#include <omp.h>

#include <vector>

#include "common.h"

namespace learnsolve {

// The level analysis of sptrsv_analysis: rows grouped by level
// (level_ptr, level_rows) and the position of each diagonal entry (or -1).
struct TriangularAnalysis {
  at::Tensor level_ptr, level_rows, diag;
};

inline TriangularAnalysis check_triangular(const char* op, const at::Tensor& crow,
                                           const at::Tensor& col, const at::Tensor& values,
                                           const at::Tensor& level_ptr,
                                           const at::Tensor& level_rows, const at::Tensor& diag) {
  check_pattern(crow, col, op, "crow", "col");
  check_floating(values, op, "values");
  TORCH_CHECK(values.numel() == col.numel(), op, ": expected values and col of equal length, got ",
              values.numel(), " and ", col.numel());
  const int64_t n = crow.numel() - 1;
  check_index(level_ptr, op, "level_ptr");
  check_index(level_rows, op, "level_rows");
  check_index(diag, op, "diag");
  TORCH_CHECK(level_ptr.numel() >= 1 && level_rows.numel() == n && diag.numel() == n, op,
              ": expected the analysis of sptrsv_analysis for ", n, " rows, got level_ptr, ",
              "level_rows, diag of lengths ", level_ptr.numel(), ", ", level_rows.numel(), ", ",
              diag.numel());
  for (const at::Tensor* t : {&level_ptr, &level_rows, &diag}) {
    TORCH_CHECK(t->device().is_cpu(), op, ": expected the analysis on the CPU");
  }
  return {level_ptr.contiguous(), level_rows.contiguous(), diag.contiguous()};
}

// Raises torch.linalg.LinAlgError for the first row whose diagonal is not
// stored, or is zero: a solve never divides by zero.
template <typename scalar_t>
void check_diagonal(const char* op, const int64_t* diag, const scalar_t* values, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    TORCH_CHECK_LINALG(diag[i] >= 0, op, ": the matrix is singular: row ", i,
                       " has no stored diagonal entry (pass unit_diagonal=True for a unit ",
                       "triangle)");
    TORCH_CHECK_LINALG(values[diag[i]] != scalar_t(0), op, ": the matrix is singular: the ",
                       "diagonal entry of row ", i, " is zero");
  }
}

// A level is shared among the threads when it carries at least this much
// work (stored entries plus rows, times right-hand sides); a smaller one is
// solved by one thread, since a shared loop would cost more in
// synchronisation than it saves.
constexpr int64_t kSharedLevelWork = 1 << 14;

// Solves op(T) x = b in place in x (x holds b on entry; n rows, k columns,
// row-major). The pattern read is T's (transpose=false: crow, col, values in
// order) or T^T's (transpose=true: t_crow, t_col, values through perm); the
// off-diagonal entries of a row are those before the diagonal when the rows
// read are lower triangular, after it otherwise; the diagonal is
// values[diag[i]] (1 for a unit triangle).
template <typename scalar_t, typename index_t>
void solve_triangular(const int64_t* rp, const index_t* ci, const int64_t* perm,
                      const scalar_t* v, const int64_t* diag, bool rows_lower, bool unit,
                      const int64_t* level_ptr, const int64_t* level_rows, int64_t nlevels,
                      bool backwards, int64_t n, int64_t k, scalar_t* x) {
  auto value = [&](int64_t p) { return perm == nullptr ? v[p] : v[perm[p]]; };
  auto solve_row = [&](int64_t i) {
    scalar_t* xi = x + i * k;
    if (k == 1) {
      scalar_t acc = xi[0];
      if (rows_lower) {
        for (int64_t p = rp[i]; p < rp[i + 1] && ci[p] < i; ++p) acc -= value(p) * x[ci[p]];
      } else {
        for (int64_t p = rp[i + 1] - 1; p >= rp[i] && ci[p] > i; --p) acc -= value(p) * x[ci[p]];
      }
      xi[0] = unit ? acc : acc / v[diag[i]];
      return;
    }
    auto subtract = [&](int64_t p) {
      const scalar_t a = value(p);
      const scalar_t* xj = x + static_cast<int64_t>(ci[p]) * k;
      for (int64_t c = 0; c < k; ++c) xi[c] -= a * xj[c];
    };
    if (rows_lower) {
      for (int64_t p = rp[i]; p < rp[i + 1] && ci[p] < i; ++p) subtract(p);
    } else {
      for (int64_t p = rp[i + 1] - 1; p >= rp[i] && ci[p] > i; --p) subtract(p);
    }
    if (!unit) {
      const scalar_t d = v[diag[i]];
      for (int64_t c = 0; c < k; ++c) xi[c] /= d;
    }
  };

  // Segments of the schedule: a level with enough work is shared by all
  // threads; consecutive small levels are solved in order by one thread.
  struct Segment {
    int64_t begin, end;  // positions in level_rows
    bool shared;
  };
  std::vector<Segment> segments;
  const int64_t nthreads = at::get_num_threads();
  const double row_work = n == 0 ? 0.0 : double(rp[n] - rp[0] + n) / double(n) * double(k);
  bool any_shared = false;
  if (nthreads > 1 && !at::in_parallel_region()) {
    for (int64_t s = 0; s < nlevels; ++s) {
      const int64_t l = backwards ? nlevels - 1 - s : s;
      const int64_t rows = level_ptr[l + 1] - level_ptr[l];
      const Segment level{level_ptr[l], level_ptr[l + 1],
                          double(rows) * row_work >= double(kSharedLevelWork) && rows > 1};
      any_shared = any_shared || level.shared;
      if (!level.shared && !segments.empty() && !segments.back().shared) {
        // Consecutive levels are adjacent in level_rows: the run grows by one
        // level, at its end (forwards) or at its start (backwards).
        if (backwards) segments.back().begin = level.begin; else segments.back().end = level.end;
      } else {
        segments.push_back(level);
      }
    }
  }
  if (!any_shared) {
    // No level worth sharing: the natural order, a valid schedule for any
    // triangle, on one thread.
    if (rows_lower) {
      for (int64_t i = 0; i < n; ++i) solve_row(i);
    } else {
      for (int64_t i = n - 1; i >= 0; --i) solve_row(i);
    }
    return;
  }
  // A run of small levels is walked in schedule order: forwards, or
  // backwards (the levels reversed; the order within a level is free).
#pragma omp parallel num_threads(static_cast<int>(nthreads))
  {
    for (const Segment& segment : segments) {
      if (segment.shared) {
#pragma omp for schedule(static)
        for (int64_t q = segment.begin; q < segment.end; ++q) solve_row(level_rows[q]);
      } else {
#pragma omp single
        {
          if (backwards) {
            for (int64_t q = segment.end - 1; q >= segment.begin; --q) solve_row(level_rows[q]);
          } else {
            for (int64_t q = segment.begin; q < segment.end; ++q) solve_row(level_rows[q]);
          }
        }
      }
    }
  }
}

}  // namespace learnsolve
