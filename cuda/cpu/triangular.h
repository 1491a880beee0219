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

#include "op_checks.h"

namespace learnsolve {

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

// A triangular system: T the lower (upper) triangle of the square CSR matrix
// A (n rows), with its level analysis; A^T's rows (t_rp, t_ci, values through
// perm) where the caller has them, else null.
template <typename scalar_t>
struct TriangularSystem {
  int64_t n;
  const int64_t* rp;
  const int64_t* ci;
  const int64_t* t_rp;
  const int64_t* t_ci;
  const int64_t* perm;
  const scalar_t* v;
  const int64_t* diag;
  bool lower, unit;
  const int64_t* level_ptr;
  const int64_t* level_rows;
  int64_t nlevels;
};

// A step of the parallel schedule: the rows level_rows[begin, end), either one
// level shared by all threads or a run of consecutive small levels that one
// thread solves in order.
struct Segment {
  int64_t begin, end;
  bool shared;
};

// The schedule of a solve walking the levels forwards (T x = b) or backwards
// (T^T x = b) with k right-hand sides on the current thread count; empty when
// no level is worth sharing, which means: solve on one thread.
template <typename scalar_t>
std::vector<Segment> level_schedule(const TriangularSystem<scalar_t>& s, bool backwards,
                                    int64_t k) {
  std::vector<Segment> segments;
  if (at::get_num_threads() == 1 || at::in_parallel_region() || s.n == 0) return segments;
  const double row_work = double(s.rp[s.n] - s.rp[0] + s.n) / double(s.n) * double(k);
  bool any_shared = false;
  for (int64_t step = 0; step < s.nlevels; ++step) {
    const int64_t l = backwards ? s.nlevels - 1 - step : step;
    const int64_t rows = s.level_ptr[l + 1] - s.level_ptr[l];
    const Segment level{s.level_ptr[l], s.level_ptr[l + 1],
                        rows > 1 && double(rows) * row_work >= double(kSharedLevelWork)};
    any_shared = any_shared || level.shared;
    if (!level.shared && !segments.empty() && !segments.back().shared) {
      // Consecutive levels are adjacent in level_rows: the run grows by one
      // level, at its end (forwards) or at its start (backwards).
      if (backwards) segments.back().begin = level.begin; else segments.back().end = level.end;
    } else {
      segments.push_back(level);
    }
  }
  if (!any_shared) segments.clear();
  return segments;
}

// One thread: op(T) x = b in place in x (holding b on entry; row-major, k
// columns), calling done(i) as soon as row i of x is final. T x = b by rows
// in the natural order; T^T x = b by columns of T^T, i.e. rows of T, in the
// reverse order.
template <typename scalar_t, typename Done>
void solve_serial(const TriangularSystem<scalar_t>& s, bool transpose, int64_t k, scalar_t* x,
                  Done done) {
  const int64_t* rp = s.rp;
  const int64_t* ci = s.ci;
  const scalar_t* v = s.v;
  // The entries of row i of T off its diagonal: [off_begin, off_end).
  auto off_begin = [&](int64_t i) {
    if (s.lower) return rp[i];
    int64_t p = rp[i];
    while (p < rp[i + 1] && ci[p] <= i) ++p;
    return p;
  };
  auto off_end = [&](int64_t i) {
    if (!s.lower) return rp[i + 1];
    int64_t p = rp[i];
    while (p < rp[i + 1] && ci[p] < i) ++p;
    return p;
  };
  auto divide = [&](int64_t i) {
    if (s.unit) return;
    const scalar_t d = v[s.diag[i]];
    for (int64_t c = 0; c < k; ++c) x[i * k + c] /= d;
  };
  const bool ascending = s.lower != transpose;
  // The row solved last and its value, kept in a register (k == 1): a row
  // that reads it (a band's neighbour, the usual last entry before the
  // diagonal) takes it from there, not from memory through the store it was
  // just given, which puts a store-to-load forwarding on the solve's
  // critical path (the rows form one chain of dependencies). The same
  // products and sums in the same order: the same results. (Transposed: the
  // next row's b as last updated.)
  int64_t last = -1;
  scalar_t last_value = 0;
  for (int64_t step = 0; step < s.n; ++step) {
    const int64_t i = ascending ? step : s.n - 1 - step;
    const int64_t begin = off_begin(i), end = off_end(i);
    scalar_t* xi = x + i * k;
    if (!transpose) {  // x_i = (b_i - sum_j T_ij x_j) / T_ii
      if (k == 1) {
        scalar_t acc = xi[0];
        for (int64_t p = begin; p < end; ++p) {
          const int64_t j = ci[p];
          if (__builtin_expect(j == last, 1)) {
            acc -= v[p] * last_value;
          } else {
            acc -= v[p] * x[j];
          }
        }
        if (!s.unit) acc /= v[s.diag[i]];
        xi[0] = acc;
        last = i;
        last_value = acc;
      } else {
        for (int64_t p = begin; p < end; ++p) {
          const scalar_t* xj = x + ci[p] * k;
          for (int64_t c = 0; c < k; ++c) xi[c] -= v[p] * xj[c];
        }
        divide(i);
      }
    } else if (k == 1) {  // x_i is final; b_j -= T_ij x_i for the j it feeds
      // As above, from the other side: the update of the next row's b, the
      // last thing written before that row is solved, is kept in a register.
      scalar_t value = last == i ? last_value : xi[0];
      if (!s.unit) value /= v[s.diag[i]];
      xi[0] = value;
      const int64_t next = ascending ? i + 1 : i - 1;
      for (int64_t p = begin; p < end; ++p) {
        const int64_t j = ci[p];
        const scalar_t updated = x[j] - v[p] * value;
        x[j] = updated;
        if (j == next) {
          last = j;
          last_value = updated;
        }
      }
    } else {
      divide(i);
      for (int64_t p = begin; p < end; ++p) {
        scalar_t* xj = x + ci[p] * k;
        for (int64_t c = 0; c < k; ++c) xj[c] -= v[p] * xi[c];
      }
    }
    done(i);
  }
}

// Several threads along a schedule of level_schedule: op(T) x = b in place,
// each row by one thread as a dot product ("pull") over the rows of T (or of
// T^T, through the transpose pattern, which must be given).
template <typename scalar_t>
void solve_levels(const TriangularSystem<scalar_t>& s, bool transpose, int64_t k, scalar_t* x,
                  const std::vector<Segment>& segments) {
  const int64_t* rp = transpose ? s.t_rp : s.rp;
  const int64_t* ci = transpose ? s.t_ci : s.ci;
  const int64_t* perm = transpose ? s.perm : nullptr;
  const scalar_t* v = s.v;
  const bool rows_lower = s.lower != transpose;
  auto value = [&](int64_t p) { return perm == nullptr ? v[p] : v[perm[p]]; };
  auto solve_row = [&](int64_t i) {
    scalar_t* xi = x + i * k;
    auto subtract = [&](int64_t p) {
      const scalar_t a = value(p);
      const scalar_t* xj = x + ci[p] * k;
      for (int64_t c = 0; c < k; ++c) xi[c] -= a * xj[c];
    };
    // The off-diagonal entries in storage order, as solve_serial sums them.
    if (rows_lower) {
      for (int64_t p = rp[i]; p < rp[i + 1] && ci[p] < i; ++p) subtract(p);
    } else {
      int64_t p = rp[i + 1];
      while (p > rp[i] && ci[p - 1] > i) --p;
      for (; p < rp[i + 1]; ++p) subtract(p);
    }
    if (!s.unit) {
      const scalar_t d = v[s.diag[i]];
      for (int64_t c = 0; c < k; ++c) xi[c] /= d;
    }
  };
  const bool backwards = transpose;
#pragma omp parallel num_threads(static_cast<int>(at::get_num_threads()))
  {
    for (const Segment& segment : segments) {
      if (segment.shared) {
#pragma omp for schedule(static)
        for (int64_t q = segment.begin; q < segment.end; ++q) solve_row(s.level_rows[q]);
      } else {
#pragma omp single
        {
          // A run of small levels in schedule order (within a level any order).
          if (backwards) {
            for (int64_t q = segment.end - 1; q >= segment.begin; --q) solve_row(s.level_rows[q]);
          } else {
            for (int64_t q = segment.begin; q < segment.end; ++q) solve_row(s.level_rows[q]);
          }
        }
      }
    }
  }
}

// op(T) x = b in place in x: in parallel along the levels where some level is
// wide enough, else on one thread.
template <typename scalar_t>
void solve_triangular(const TriangularSystem<scalar_t>& s, bool transpose, int64_t k,
                      scalar_t* x) {
  const std::vector<Segment> segments = level_schedule(s, transpose, k);
  if (segments.empty()) {
    solve_serial(s, transpose, k, x, [](int64_t) {});
  } else {
    TORCH_CHECK(!transpose || s.t_rp != nullptr,
                "sptrsv: the transposed solve needs the transpose pattern t_crow, t_col, t_perm");
    solve_levels(s, transpose, k, x, segments);
  }
}

}  // namespace learnsolve
