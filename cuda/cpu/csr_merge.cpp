// Union or intersection of two canonical CSR patterns of the same shape, by a
// merge of the sorted rows: one pass counts each row, a scan places the rows,
// a second pass writes them. Alongside the pattern it returns, for every entry
// of A (and of B), its position in the result or -1 where the result lacks
// it, so that values are combined with differentiable gathers and scatters.
#include <torch/library.h>

#include <tuple>

#include "op_checks.h"

namespace learnsolve {
namespace {

// Walks rows ra and rb of the two patterns in step; `emit(j, pa, pb)` is called
// for each column j of the result, pa / pb the positions in A / B or -1.
template <typename F>
inline void merge_row(const int64_t* ca, int64_t a0, int64_t a1, const int64_t* cb, int64_t b0,
                      int64_t b1, bool intersect, F emit) {
  int64_t a = a0, b = b0;
  while (a < a1 && b < b1) {
    if (ca[a] == cb[b]) {
      emit(ca[a], a, b);
      ++a, ++b;
    } else if (ca[a] < cb[b]) {
      if (!intersect) emit(ca[a], a, int64_t{-1});
      ++a;
    } else {
      if (!intersect) emit(cb[b], int64_t{-1}, b);
      ++b;
    }
  }
  if (intersect) return;
  for (; a < a1; ++a) emit(ca[a], a, int64_t{-1});
  for (; b < b1; ++b) emit(cb[b], int64_t{-1}, b);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> csr_merge_cpu(
    const at::Tensor& crow_a, const at::Tensor& col_a, const at::Tensor& crow_b,
    const at::Tensor& col_b, bool intersect) {
  check_csr_merge(crow_a, col_a, crow_b, col_b);
  const int64_t nrows = crow_a.numel() - 1;
  const auto ra_c = crow_a.contiguous(), ca_c = col_a.contiguous();
  const auto rb_c = crow_b.contiguous(), cb_c = col_b.contiguous();
  const int64_t* ra = ra_c.data_ptr<int64_t>();
  const int64_t* ca = ca_c.data_ptr<int64_t>();
  const int64_t* rb = rb_c.data_ptr<int64_t>();
  const int64_t* cb = cb_c.data_ptr<int64_t>();

  auto crow_c = new_buffer({nrows + 1}, crow_a.options());
  int64_t* rc = crow_c.data_ptr<int64_t>();
  rc[0] = 0;
  parallel_rows(ra, nrows, [&](int64_t, int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      int64_t count = 0;
      merge_row(ca, ra[r], ra[r + 1], cb, rb[r], rb[r + 1], intersect,
                [&](int64_t, int64_t, int64_t) { ++count; });
      rc[r + 1] = count;
    }
  });
  for (int64_t r = 0; r < nrows; ++r) rc[r + 1] += rc[r];

  auto col_c = new_buffer({rc[nrows]}, crow_a.options());
  auto map_a = new_buffer({col_a.numel()}, crow_a.options()).fill_(-1);
  auto map_b = new_buffer({col_b.numel()}, crow_a.options()).fill_(-1);
  int64_t* cc = col_c.data_ptr<int64_t>();
  int64_t* ma = map_a.data_ptr<int64_t>();
  int64_t* mb = map_b.data_ptr<int64_t>();
  parallel_rows(ra, nrows, [&](int64_t, int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      int64_t q = rc[r];
      merge_row(ca, ra[r], ra[r + 1], cb, rb[r], rb[r + 1], intersect,
                [&](int64_t j, int64_t pa, int64_t pb) {
                  cc[q] = j;
                  if (pa >= 0) ma[pa] = q;
                  if (pb >= 0) mb[pb] = q;
                  ++q;
                });
    }
  });
  return {crow_c, col_c, map_a, map_b};
}

}  // namespace

TORCH_LIBRARY_IMPL(learnsolve, CPU, m) { m.impl("csr_merge", &csr_merge_cpu); }

}  // namespace learnsolve
