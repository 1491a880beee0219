// The learnsolve operator library: one schema per op. The kernels register
// themselves per backend (cuda/cpu/<op>.cpp, cuda/gpu/<op>.cu); the autograd
// kernels of the products and the triangular solve are C++ (cuda/autograd/),
// Python adds the fake (meta) kernels and the other ops' autograd formulas
// (learnsolve/core/_ops.py).
//
// Every op takes the arrays of canonical CSR patterns (int64 row pointers and
// sorted, duplicate-free column indices): learnsolve.CSRMatrix validates them
// once (csr_check), the kernels trust them. Column indices are int64; the products of a
// matrix with dense operands (spmv, spmm, sampled_matmul, spmv_backward,
// transpose) also take the int32 copy that learnsolve caches.
#include <Python.h>
#include <torch/library.h>

extern "C" {
// Importing learnsolve._C loads this library and so runs the registrations
// below; the module itself is empty.
PyObject* PyInit__C(void) {
  static struct PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, nullptr};
  return PyModule_Create(&module_def);
}
}

TORCH_LIBRARY(learnsolve, m) {
  // y = A x and Y = A X, or A^T x and A^T X with transpose=True. The
  // transpose pattern of A (t_crow, t_col, t_perm from `transpose`, cached on
  // the matrix) is read by transpose=True and by the backward of
  // transpose=False; A^T's values are read through t_perm, never copied.
  m.def("spmv(Tensor crow, Tensor col, Tensor values, Tensor x, Tensor? t_crow=None, "
        "Tensor? t_col=None, Tensor? t_perm=None, bool transpose=False) -> Tensor");
  m.def("spmm(Tensor crow, Tensor col, Tensor values, Tensor x, Tensor? t_crow=None, "
        "Tensor? t_col=None, Tensor? t_perm=None, bool transpose=False) -> Tensor");
  // Both gradients of y = A x in one pass: (g x^T ⊙ mask(A) as values, A^T g).
  m.def("spmv_backward(Tensor crow, Tensor col, Tensor values, Tensor x, Tensor grad) "
        "-> (Tensor, Tensor)");
  // (X Y^T) restricted to the pattern, as the values of that pattern.
  m.def("sampled_matmul(Tensor crow, Tensor col, Tensor x, Tensor y, Tensor? t_crow=None, "
        "Tensor? t_col=None, Tensor? t_perm=None) -> Tensor");
  // Pattern of A^T and perm with values(A^T) = values(A)[perm].
  m.def("transpose(Tensor crow, Tensor col, int ncols) -> (Tensor, Tensor, Tensor)");
  // alpha * source[index] and its adjoint, out[index[p]] += alpha * source[p]
  // into `size` zeros: the moves of values between patterns (transposes,
  // unions, intersections) and their gradients. alpha: a one-element tensor
  // or None for 1.
  m.def("gather_scaled(Tensor source, Tensor index, Tensor? alpha=None) -> Tensor");
  m.def("scatter_add_scaled(Tensor source, Tensor index, int size, Tensor? alpha=None) -> Tensor");
  // Union (intersect=False) or intersection of two patterns, with for each
  // entry of A (of B) its position in the result, or -1 where it has none.
  m.def("csr_merge(Tensor crow_a, Tensor col_a, Tensor crow_b, Tensor col_b, bool intersect) "
        "-> (Tensor, Tensor, Tensor, Tensor)");
  // C = A B in two phases: the pattern, then the values on that pattern.
  m.def("spgemm_symbolic(Tensor crow_a, Tensor col_a, Tensor crow_b, Tensor col_b, int ncols) "
        "-> (Tensor, Tensor)");
  m.def("spgemm_numeric(Tensor crow_a, Tensor col_a, Tensor values_a, Tensor crow_b, "
        "Tensor col_b, Tensor values_b, Tensor crow_c, Tensor col_c, int ncols) -> Tensor");
  // (A^T G) restricted to the pattern of B, for G on the pattern of C = A B:
  // the SpGEMM backward for B.
  m.def("spgemm_grad_b(Tensor crow_a, Tensor col_a, Tensor values_a, Tensor crow_c, "
        "Tensor col_c, Tensor grad_c, Tensor crow_b, Tensor col_b, int ncols) -> Tensor");
  // Values of alpha A + beta B on their union, from csr_merge's maps.
  m.def("csr_add_values(Tensor values_a, Tensor map_a, Tensor values_b, Tensor map_b, int nnz, "
        "Tensor alpha, Tensor beta) -> Tensor");
  // (V W^T) restricted to the mask's pattern, V and W sparse with `inner`
  // columns: the SpGEMM backward, computing only the entries inside the mask.
  m.def("spgemm_masked(Tensor crow_m, Tensor col_m, Tensor crow_v, Tensor col_v, "
        "Tensor values_v, Tensor crow_w, Tensor col_w, Tensor values_w, int inner) -> Tensor");
  // The level analysis of the triangular solve with the lower (or upper)
  // triangle of a square pattern: (level_ptr, level_rows, diag), the rows
  // grouped by level and the position of each diagonal entry (-1: none).
  m.def("sptrsv_analysis(Tensor crow, Tensor col, bool lower) -> (Tensor, Tensor, Tensor)");
  // x = T^{-1} b, or T^{-T} b with transpose=True (through the transpose
  // pattern of A, as spmv), T the lower (upper) triangle of A; the diagonal
  // is taken as 1 with unit_diagonal=True. A missing or zero diagonal raises
  // torch.linalg.LinAlgError naming the row.
  m.def("sptrsv(Tensor crow, Tensor col, Tensor values, Tensor b, Tensor level_ptr, "
        "Tensor level_rows, Tensor diag, bool lower, bool unit_diagonal, Tensor? t_crow=None, "
        "Tensor? t_col=None, Tensor? t_perm=None, bool transpose=False) -> Tensor");
  // Both gradients of x = sptrsv(...) for the incoming grad: (values, b).
  m.def("sptrsv_backward(Tensor crow, Tensor col, Tensor values, Tensor x, Tensor grad, "
        "Tensor level_ptr, Tensor level_rows, Tensor diag, bool lower, bool unit_diagonal, "
        "Tensor t_crow, Tensor t_col, Tensor t_perm, bool transpose) -> (Tensor, Tensor)");
  // Incomplete Cholesky on the given lower-triangle pattern (IC(0) on tril(A),
  // IC(k) on the lower triangle of a level-of-fill pattern): L's values.
  m.def("ic0(Tensor crow, Tensor col, Tensor values) -> Tensor");
  // Incomplete LU on the given pattern: L (unit, below the diagonal) and U's
  // values, stored together; and the level-of-fill pattern of ILU(k).
  m.def("ilu(Tensor crow, Tensor col, Tensor values) -> Tensor");
  m.def("iluk_symbolic(Tensor crow, Tensor col, int level) -> (Tensor, Tensor)");
  // One iteration of preconditioned CG on one system, for a square CSR A and
  // M r = d ∘ r (d None: no preconditioner): q = A p (q: given instead),
  // alpha = rz / p^T q, x_out = x + alpha p, r_out = r - alpha q, z = d ∘ r_out,
  // beta = r_out^T z / rz, p_out = z + beta p; dots gets (p^T q, r_out^T r_out)
  // and, with d, r_out^T z (an output may be its own input: in place). The
  // fused lean step of PCG (learnsolve/solvers/_cg_lean.py); no gradient.
  m.def("cg_step(Tensor crow, Tensor col, Tensor values, Tensor x, Tensor r, Tensor p, "
        "Tensor rz, Tensor? d, Tensor? q, Tensor(a!) x_out, Tensor(b!) r_out, "
        "Tensor(c!) p_out, Tensor(d!) dots) -> ()");
  // The structure check of index arrays from outside (the one op that does not
  // trust them): int64 [first row whose pointers leave [0, nnz] or decrease,
  // first entry whose column is outside [0, ncols), first entry whose column
  // is not above its predecessor's in the row], -1 where there is none.
  m.def("csr_check(Tensor crow, Tensor col, int ncols) -> Tensor");
}

