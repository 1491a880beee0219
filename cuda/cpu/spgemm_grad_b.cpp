// The SpGEMM backward for B: dB = (A^T G) ⊙ mask(B), for C = A B and G the
// gradient on C's pattern. Row k of B marks the positions of its columns in a
// dense map (one per chunk of rows, cleared after the row); then for each
// entry (i, k) of A (row k of A^T, values of A read through at_perm) row i of
// G adds into the marked columns. Only the entries of mask(B) receive
// products, each row of B is written by one thread, and nothing is
// transposed or scattered.
#include <torch/library.h>

#include "common.h"

namespace learnsolve {
namespace {

at::Tensor spgemm_grad_b_cpu(const at::Tensor& at_crow, const at::Tensor& at_col,
                             const at::Tensor& at_perm, const at::Tensor& values_a,
                             const at::Tensor& crow_c, const at::Tensor& col_c,
                             const at::Tensor& grad_c, const at::Tensor& crow_b,
                             const at::Tensor& col_b, int64_t ncols) {
  const char* op = "spgemm_grad_b";
  check_pattern(at_crow, at_col, op, "at_crow", "at_col");
  check_pattern(crow_c, col_c, op, "crow_c", "col_c");
  check_pattern(crow_b, col_b, op, "crow_b", "col_b");
  check_index(at_perm, op, "at_perm");
  check_floating(values_a, op, "values_a");
  check_same_dtype(values_a, grad_c, op, "values_a", "grad_c");
  TORCH_CHECK(at_perm.numel() == at_col.numel() && values_a.numel() == at_col.numel(), op,
              ": expected at_perm and values_a of the length of at_col");
  TORCH_CHECK(grad_c.numel() == col_c.numel(), op, ": expected grad_c of length ", col_c.numel());
  TORCH_CHECK(at_crow.numel() == crow_b.numel(), op, ": expected at_crow and crow_b of equal ",
              "length (A^T and B have the same rows)");
  TORCH_CHECK(ncols >= 0, op, ": expected ncols >= 0, got ", ncols);
  const int64_t nrows = crow_b.numel() - 1;
  const auto rt_c = at_crow.contiguous(), ct_c = at_col.contiguous(), pt_c = at_perm.contiguous();
  const auto va_c = values_a.contiguous();
  const auto rc_c = crow_c.contiguous(), cc_c = col_c.contiguous(), g_c = grad_c.contiguous();
  const auto rb_c = crow_b.contiguous(), cb_c = col_b.contiguous();
  auto out = new_buffer({col_b.numel()}, values_a.options());
  AT_DISPATCH_FLOATING_TYPES(values_a.scalar_type(), "spgemm_grad_b_cpu", [&] {
    const int64_t* rt = rt_c.data_ptr<int64_t>();
    const int64_t* ct = ct_c.data_ptr<int64_t>();
    const int64_t* pt = pt_c.data_ptr<int64_t>();
    const scalar_t* va = va_c.data_ptr<scalar_t>();
    const int64_t* rc = rc_c.data_ptr<int64_t>();
    const int64_t* cc = cc_c.data_ptr<int64_t>();
    const scalar_t* g = g_c.data_ptr<scalar_t>();
    const int64_t* rb = rb_c.data_ptr<int64_t>();
    const int64_t* cb = cb_c.data_ptr<int64_t>();
    scalar_t* o = out.data_ptr<scalar_t>();
    parallel_rows(rt, nrows, [&](int64_t, int64_t k0, int64_t k1) {
      at::Tensor position_buffer;
      int64_t* position = scratch_array<int64_t>(position_buffer, ncols, -1);
      for (int64_t k = k0; k < k1; ++k) {
        const int64_t b0 = rb[k], b1 = rb[k + 1];
        if (b0 == b1) continue;
        for (int64_t p = b0; p < b1; ++p) {
          position[cb[p]] = p;
          o[p] = scalar_t(0);
        }
        for (int64_t q = rt[k]; q < rt[k + 1]; ++q) {
          const int64_t i = ct[q];
          const scalar_t a = va[pt[q]];
          for (int64_t s = rc[i]; s < rc[i + 1]; ++s) {
            const int64_t p = position[cc[s]];
            if (p >= 0) o[p] += a * g[s];
          }
        }
        for (int64_t p = b0; p < b1; ++p) position[cb[p]] = -1;
      }
    });
  });
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(learnsolve, CPU, m) { m.impl("spgemm_grad_b", &spgemm_grad_b_cpu); }

}  // namespace learnsolve
