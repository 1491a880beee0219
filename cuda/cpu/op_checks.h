// The argument checks of the ops, one function per op, called by the CPU
// kernel (cuda/cpu/<op>.cpp) and the CUDA kernel (cuda/gpu/<op>.cu) alike, so
// that both backends accept the same arguments and raise the same errors.
// Each checks ranks, dtypes, lengths and that every tensor is on the device
// of the first; the index arrays themselves are trusted (see registration.cpp).
#pragma once

#include <ATen/MemoryOverlap.h>

#include "common.h"

namespace learnsolve {

inline void check_transpose(const at::Tensor& crow, const at::Tensor& col, int64_t ncols) {
  check_index(crow, "transpose", "crow");
  check_column_index(col, "transpose", "col");
  TORCH_CHECK(ncols >= 0, "transpose: expected ncols >= 0, got ", ncols);
  check_device("transpose", crow.device(), {{"col", &col}});
}

inline void check_csr_check(const at::Tensor& crow, const at::Tensor& col, int64_t ncols) {
  check_pattern(crow, col, "csr_check", "crow", "col");
  TORCH_CHECK(ncols >= 0, "csr_check: expected ncols >= 0, got ", ncols);
}

inline void check_gather_scaled(const at::Tensor& source, const at::Tensor& index) {
  check_floating(source, "gather_scaled", "source");
  check_index(index, "gather_scaled", "index");
  TORCH_CHECK(source.dim() == 1, "gather_scaled: expected source to be 1-D, got ", source.dim(),
              "-D");
  check_device("gather_scaled", source.device(), {{"index", &index}});
}

inline void check_scatter_add_scaled(const at::Tensor& source, const at::Tensor& index,
                                     int64_t size) {
  check_floating(source, "scatter_add_scaled", "source");
  check_index(index, "scatter_add_scaled", "index");
  TORCH_CHECK(source.dim() == 1 && source.numel() == index.numel(), "scatter_add_scaled: ",
              "expected a 1-D source of the length of index (", index.numel(), "), got shape ",
              source.sizes());
  TORCH_CHECK(size >= 0, "scatter_add_scaled: expected size >= 0, got ", size);
  check_device("scatter_add_scaled", source.device(), {{"index", &index}});
}

inline void check_sampled_matmul(const at::Tensor& crow, const at::Tensor& col,
                                 const at::Tensor& x, const at::Tensor& y) {
  check_index(crow, "sampled_matmul", "crow");
  check_column_index(col, "sampled_matmul", "col");
  check_floating(x, "sampled_matmul", "x");
  check_same_dtype(x, y, "sampled_matmul", "x", "y");
  TORCH_CHECK(x.dim() == y.dim() && (x.dim() == 1 || x.dim() == 2),
              "sampled_matmul: expected x and y both 1-D or both 2-D, got ", x.dim(), "-D and ",
              y.dim(), "-D");
  const int64_t nrows = crow.numel() - 1;
  TORCH_CHECK(x.size(0) == nrows, "sampled_matmul: expected x to have ", nrows,
              " rows (one per row of the pattern), got ", x.size(0));
  const int64_t k = x.dim() == 2 ? x.size(1) : 1;
  TORCH_CHECK(x.dim() == 1 || y.size(1) == k, "sampled_matmul: expected x and y with equal ",
              "numbers of columns, got ", k, " and ", y.size(1));
  check_device("sampled_matmul", crow.device(), {{"col", &col}, {"x", &x}, {"y", &y}});
}

inline void check_spmv_backward(const at::Tensor& crow, const at::Tensor& col,
                                const at::Tensor& values, const at::Tensor& x,
                                const at::Tensor& grad) {
  const char* op = "spmv_backward";
  check_index(crow, op, "crow");
  check_column_index(col, op, "col");
  check_floating(values, op, "values");
  check_same_dtype(values, x, op, "values", "x");
  check_same_dtype(values, grad, op, "values", "grad");
  const int64_t nrows = crow.numel() - 1;
  TORCH_CHECK(x.dim() == 1 && grad.dim() == 1 && grad.numel() == nrows, op,
              ": expected 1-D x and a 1-D grad of length ", nrows);
  TORCH_CHECK(values.numel() == col.numel(), op, ": expected values and col of equal length");
  check_device(op, crow.device(), {{"col", &col}, {"values", &values}, {"x", &x},
                                   {"grad", &grad}});
}

inline void check_csr_merge(const at::Tensor& crow_a, const at::Tensor& col_a,
                            const at::Tensor& crow_b, const at::Tensor& col_b) {
  check_pattern(crow_a, col_a, "csr_merge", "crow_a", "col_a");
  check_pattern(crow_b, col_b, "csr_merge", "crow_b", "col_b");
  TORCH_CHECK(crow_a.numel() == crow_b.numel(), "csr_merge: expected crow_a and crow_b of equal ",
              "length (same number of rows), got ", crow_a.numel(), " and ", crow_b.numel());
  check_device("csr_merge", crow_a.device(), {{"col_a", &col_a}, {"crow_b", &crow_b},
                                              {"col_b", &col_b}});
}

inline void check_csr_add_values(const at::Tensor& values_a, const at::Tensor& map_a,
                                 const at::Tensor& values_b, const at::Tensor& map_b,
                                 int64_t nnz, const at::Tensor& alpha, const at::Tensor& beta) {
  const char* op = "csr_add_values";
  check_floating(values_a, op, "values_a");
  check_same_dtype(values_a, values_b, op, "values_a", "values_b");
  check_index(map_a, op, "map_a");
  check_index(map_b, op, "map_b");
  TORCH_CHECK(map_a.numel() == values_a.numel() && map_b.numel() == values_b.numel(), op,
              ": expected map_a, map_b of the lengths of values_a, values_b");
  TORCH_CHECK(alpha.numel() == 1 && beta.numel() == 1, op, ": expected alpha and beta with one "
              "element each, got ", alpha.numel(), " and ", beta.numel());
  TORCH_CHECK(nnz >= 0, op, ": expected nnz >= 0, got ", nnz);
  check_device(op, values_a.device(), {{"map_a", &map_a}, {"values_b", &values_b},
                                       {"map_b", &map_b}});
}

inline void check_spgemm_symbolic(const at::Tensor& crow_a, const at::Tensor& col_a,
                                  const at::Tensor& crow_b, const at::Tensor& col_b,
                                  int64_t ncols) {
  check_pattern(crow_a, col_a, "spgemm_symbolic", "crow_a", "col_a");
  check_pattern(crow_b, col_b, "spgemm_symbolic", "crow_b", "col_b");
  TORCH_CHECK(ncols >= 0, "spgemm_symbolic: expected ncols >= 0, got ", ncols);
  check_device("spgemm_symbolic", crow_a.device(), {{"col_a", &col_a}, {"crow_b", &crow_b},
                                                    {"col_b", &col_b}});
}

inline void check_spgemm_numeric(const at::Tensor& crow_a, const at::Tensor& col_a,
                                 const at::Tensor& values_a, const at::Tensor& crow_b,
                                 const at::Tensor& col_b, const at::Tensor& values_b,
                                 const at::Tensor& crow_c, const at::Tensor& col_c,
                                 int64_t ncols) {
  const char* op = "spgemm_numeric";
  check_pattern(crow_a, col_a, op, "crow_a", "col_a");
  check_pattern(crow_b, col_b, op, "crow_b", "col_b");
  check_pattern(crow_c, col_c, op, "crow_c", "col_c");
  check_floating(values_a, op, "values_a");
  check_same_dtype(values_a, values_b, op, "values_a", "values_b");
  TORCH_CHECK(values_a.numel() == col_a.numel() && values_b.numel() == col_b.numel(), op,
              ": expected values_a, values_b of the lengths of col_a, col_b");
  TORCH_CHECK(crow_c.numel() == crow_a.numel(), op, ": expected crow_c of length ",
              crow_a.numel(), " (the rows of A), got ", crow_c.numel());
  TORCH_CHECK(ncols >= 0, op, ": expected ncols >= 0, got ", ncols);
  check_device(op, crow_a.device(),
               {{"col_a", &col_a}, {"values_a", &values_a}, {"crow_b", &crow_b},
                {"col_b", &col_b}, {"values_b", &values_b}, {"crow_c", &crow_c},
                {"col_c", &col_c}});
}

inline void check_spgemm_grad_b(const at::Tensor& crow_a, const at::Tensor& col_a,
                                const at::Tensor& values_a, const at::Tensor& crow_c,
                                const at::Tensor& col_c, const at::Tensor& grad_c,
                                const at::Tensor& crow_b, const at::Tensor& col_b,
                                int64_t ncols) {
  const char* op = "spgemm_grad_b";
  check_pattern(crow_a, col_a, op, "crow_a", "col_a");
  check_pattern(crow_c, col_c, op, "crow_c", "col_c");
  check_pattern(crow_b, col_b, op, "crow_b", "col_b");
  check_floating(values_a, op, "values_a");
  check_same_dtype(values_a, grad_c, op, "values_a", "grad_c");
  TORCH_CHECK(values_a.numel() == col_a.numel(), op, ": expected values_a of length ",
              col_a.numel());
  TORCH_CHECK(grad_c.numel() == col_c.numel(), op, ": expected grad_c of length ", col_c.numel());
  TORCH_CHECK(crow_c.numel() == crow_a.numel(), op, ": expected crow_c and crow_a of equal ",
              "length (C and A have the same rows)");
  TORCH_CHECK(ncols >= 0, op, ": expected ncols >= 0, got ", ncols);
  check_device(op, crow_a.device(),
               {{"col_a", &col_a}, {"values_a", &values_a}, {"crow_c", &crow_c},
                {"col_c", &col_c}, {"grad_c", &grad_c}, {"crow_b", &crow_b}, {"col_b", &col_b}});
}

inline void check_spgemm_masked(const at::Tensor& crow_m, const at::Tensor& col_m,
                                const at::Tensor& crow_v, const at::Tensor& col_v,
                                const at::Tensor& values_v, const at::Tensor& crow_w,
                                const at::Tensor& col_w, const at::Tensor& values_w,
                                int64_t inner) {
  const char* op = "spgemm_masked";
  check_pattern(crow_m, col_m, op, "crow_m", "col_m");
  check_pattern(crow_v, col_v, op, "crow_v", "col_v");
  check_pattern(crow_w, col_w, op, "crow_w", "col_w");
  check_floating(values_v, op, "values_v");
  check_same_dtype(values_v, values_w, op, "values_v", "values_w");
  TORCH_CHECK(values_v.numel() == col_v.numel() && values_w.numel() == col_w.numel(), op,
              ": expected values_v, values_w of the lengths of col_v, col_w");
  TORCH_CHECK(crow_v.numel() == crow_m.numel(), op, ": expected crow_v of length ",
              crow_m.numel(), " (the rows of the mask), got ", crow_v.numel());
  TORCH_CHECK(inner >= 0, op, ": expected inner >= 0, got ", inner);
  check_device(op, crow_m.device(),
               {{"col_m", &col_m}, {"crow_v", &crow_v}, {"col_v", &col_v},
                {"values_v", &values_v}, {"crow_w", &crow_w}, {"col_w", &col_w},
                {"values_w", &values_w}});
}

// ------------------------------------------------------------------ the fused PCG iteration

// A vector of cg_step: 1-D, contiguous (the passes walk raw pointers), one
// entry per row of A, in the dtype of A's values.
inline void check_step_vector(const at::Tensor& values, const at::Tensor& t, const char* name,
                              int64_t n) {
  check_same_dtype(values, t, "cg_step", "values", name);
  TORCH_CHECK(t.dim() == 1 && t.size(0) == n, "cg_step: expected ", name, " of shape (", n,
              ",) (one entry per row of A), got ", t.sizes());
  TORCH_CHECK(t.is_contiguous(), "cg_step: expected ", name, " to be contiguous");
}

using NamedTensor = std::pair<const char*, const at::Tensor*>;

// Fails unless a and b lie apart in memory or, where `same` allows, exactly on
// each other (an output updated in place).
inline void check_apart(const NamedTensor& a, const NamedTensor& b, bool same) {
  const auto status = at::get_overlap_status(*a.second, *b.second);
  TORCH_CHECK(status == at::MemOverlapStatus::No || (same && status == at::MemOverlapStatus::Full),
              "cg_step: expected ", a.first, same ? " to be " : " not to overlap ", b.first,
              same ? " itself or not to overlap it" : "");
}

// Each output of cg_step may be its own input (in place) and overlap no other
// vector: the passes read the inputs at the rows they write, and a later pass
// reads an earlier one's outputs (x_out on p would lose the p that p_out needs).
// `outputs` pair with the first `inputs` in order (x_out with x, ...); an
// undefined input (no d, no q) is skipped.
inline void check_step_overlap(const NamedTensor (&outputs)[3], const NamedTensor (&inputs)[5]) {
  for (int i = 0; i < 3; ++i) {
    for (int j = i + 1; j < 3; ++j) check_apart(outputs[i], outputs[j], false);
    for (int j = 0; j < 5; ++j) {
      if (inputs[j].second->defined()) check_apart(outputs[i], inputs[j], i == j);
    }
  }
}

// The arguments of cg_step (see registration.cpp): a square CSR A of n rows,
// the vectors x, r, p (d, q when given) and the outputs x_out, r_out, p_out
// of shape (n,), rz one value and dots 2 (no d) or 3 of them (any stride),
// all of A's dtype and on its device.
inline void check_cg_step(const at::Tensor& crow, const at::Tensor& col, const at::Tensor& values,
                          const at::Tensor& x, const at::Tensor& r, const at::Tensor& p,
                          const at::Tensor& rz, const std::optional<at::Tensor>& d,
                          const std::optional<at::Tensor>& q, const at::Tensor& x_out,
                          const at::Tensor& r_out, const at::Tensor& p_out,
                          const at::Tensor& dots) {
  const char* op = "cg_step";
  check_index(crow, op, "crow");
  check_column_index(col, op, "col");
  check_floating(values, op, "values");
  TORCH_CHECK(crow.numel() >= 1, op, ": expected crow to have at least one entry");
  TORCH_CHECK(crow.is_contiguous() && col.is_contiguous() && values.is_contiguous(), op,
              ": expected contiguous crow, col and values");
  TORCH_CHECK(values.numel() == col.numel(), op, ": expected values and col of equal length, got ",
              values.numel(), " and ", col.numel());
  const int64_t n = crow.numel() - 1;
  const at::Tensor none;
  const NamedTensor vectors[] = {{"x", &x}, {"r", &r}, {"p", &p}, {"d", d ? &*d : &none},
                                 {"q", q ? &*q : &none}};
  const NamedTensor outputs[] = {{"x_out", &x_out}, {"r_out", &r_out}, {"p_out", &p_out}};
  for (const auto& [name, t] : vectors) {
    if (t->defined()) check_step_vector(values, *t, name, n);
  }
  for (const auto& [name, t] : outputs) check_step_vector(values, *t, name, n);
  check_same_dtype(values, rz, op, "values", "rz");
  TORCH_CHECK(rz.numel() == 1, op, ": expected rz with one element, got ", rz.numel());
  check_same_dtype(values, dots, op, "values", "dots");
  const int64_t fields = d ? 3 : 2;
  TORCH_CHECK(dots.dim() == 1 && dots.size(0) == fields, op, ": expected dots of shape (",
              fields, ",) (p^T A p, r^T r", d ? ", r^T z" : "", "), got ", dots.sizes());
  check_device(op, crow.device(), {{"col", &col}, {"values", &values}, {"rz", &rz},
                                   {"dots", &dots}});
  for (const auto& [name, t] : vectors) {
    if (t->defined()) check_device(op, crow.device(), {{name, t}});
  }
  for (const auto& [name, t] : outputs) check_device(op, crow.device(), {{name, t}});
  check_step_overlap(outputs, vectors);
}

// ------------------------------------------------------------------ triangular solves

// The level analysis of sptrsv_analysis: rows grouped by level
// (level_ptr, level_rows) and the position of each diagonal entry (or -1).
struct TriangularAnalysis {
  at::Tensor level_ptr, level_rows, diag;
};

// Checks a triangular system (the matrix and its analysis, on one device) and
// returns the analysis arrays, contiguous.
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
  check_device(op, crow.device(), {{"col", &col}, {"values", &values}, {"level_ptr", &level_ptr},
                                   {"level_rows", &level_rows}, {"diag", &diag}});
  return {level_ptr.contiguous(), level_rows.contiguous(), diag.contiguous()};
}

// Checks the right-hand side b of sptrsv (shape (n,) or (n, k)); returns k.
inline int64_t check_triangular_rhs(const at::Tensor& values, const at::Tensor& b, int64_t n) {
  check_same_dtype(values, b, "sptrsv", "values", "b");
  TORCH_CHECK((b.dim() == 1 || b.dim() == 2) && b.size(0) == n, "sptrsv: expected b of shape (",
              n, ",) or (", n, ", k), got ", b.sizes());
  check_device("sptrsv", values.device(), {{"b", &b}});
  return b.dim() == 2 ? b.size(1) : 1;
}

// Checks the solution x and incoming gradient of sptrsv_backward; returns k.
inline int64_t check_triangular_grad(const at::Tensor& values, const at::Tensor& x,
                                     const at::Tensor& grad, int64_t n) {
  check_same_dtype(values, x, "sptrsv_backward", "values", "x");
  check_same_dtype(values, grad, "sptrsv_backward", "values", "grad");
  TORCH_CHECK((x.dim() == 1 || x.dim() == 2) && x.size(0) == n && grad.sizes() == x.sizes(),
              "sptrsv_backward: expected x and grad of equal shape (", n, ",) or (", n,
              ", k), got ", x.sizes(), " and ", grad.sizes());
  check_device("sptrsv_backward", values.device(), {{"x", &x}, {"grad", &grad}});
  return x.dim() == 2 ? x.size(1) : 1;
}

}  // namespace learnsolve
