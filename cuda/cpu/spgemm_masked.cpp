// (V W^T) ⊙ mask(M) for sparse V and W: for each stored entry (r, c) of M, the
// sparse dot product of row r of V and row c of W. Row r of V is spread into a
// dense accumulator once (one per chunk of rows, cleared after the row), so an
// entry costs the length of row c of W; nothing outside the mask is computed.
// This is the SpGEMM backward: dA = (G B^T) ⊙ mask(A) is (V, W) = (G, B).
#include <torch/library.h>

#include "op_checks.h"

namespace learnsolve {
namespace {

at::Tensor spgemm_masked_cpu(const at::Tensor& crow_m, const at::Tensor& col_m,
                             const at::Tensor& crow_v, const at::Tensor& col_v,
                             const at::Tensor& values_v, const at::Tensor& crow_w,
                             const at::Tensor& col_w, const at::Tensor& values_w, int64_t inner) {
  check_spgemm_masked(crow_m, col_m, crow_v, col_v, values_v, crow_w, col_w, values_w, inner);
  const int64_t nrows = crow_m.numel() - 1;
  const auto rm_c = crow_m.contiguous(), cm_c = col_m.contiguous();
  const auto rv_c = crow_v.contiguous(), cv_c = col_v.contiguous(), vv_c = values_v.contiguous();
  const auto rw_c = crow_w.contiguous(), cw_c = col_w.contiguous(), vw_c = values_w.contiguous();
  auto out = new_buffer({col_m.numel()}, values_v.options());
  AT_DISPATCH_FLOATING_TYPES(values_v.scalar_type(), "spgemm_masked_cpu", [&] {
    const int64_t* rm = rm_c.data_ptr<int64_t>();
    const int64_t* cm = cm_c.data_ptr<int64_t>();
    const int64_t* rv = rv_c.data_ptr<int64_t>();
    const int64_t* cv = cv_c.data_ptr<int64_t>();
    const scalar_t* vv = vv_c.data_ptr<scalar_t>();
    const int64_t* rw = rw_c.data_ptr<int64_t>();
    const int64_t* cw = cw_c.data_ptr<int64_t>();
    const scalar_t* vw = vw_c.data_ptr<scalar_t>();
    scalar_t* o = out.data_ptr<scalar_t>();
    parallel_rows(rm, nrows, [&](int64_t, int64_t r0, int64_t r1) {
      at::Tensor acc_buffer;
      scalar_t* acc = scratch_array<scalar_t>(acc_buffer, inner, scalar_t(0));
      for (int64_t r = r0; r < r1; ++r) {
        if (rm[r] == rm[r + 1]) continue;
        for (int64_t s = rv[r]; s < rv[r + 1]; ++s) acc[cv[s]] = vv[s];
        for (int64_t p = rm[r]; p < rm[r + 1]; ++p) {
          const int64_t c = cm[p];
          scalar_t sum = 0;
          for (int64_t q = rw[c]; q < rw[c + 1]; ++q) sum += acc[cw[q]] * vw[q];
          o[p] = sum;
        }
        for (int64_t s = rv[r]; s < rv[r + 1]; ++s) acc[cv[s]] = scalar_t(0);
      }
    });
  });
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(learnsolve, CPU, m) { m.impl("spgemm_masked", &spgemm_masked_cpu); }

}  // namespace learnsolve
