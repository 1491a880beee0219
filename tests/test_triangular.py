"""spsolve_triangular: against scipy and dense torch, gradients, the level
analysis, the parallel schedule, and the errors."""
import numpy as np
import pytest
import scipy.sparse as sp
import scipy.sparse.linalg as sla
import torch
from torch.autograd import gradcheck, gradgradcheck
from torch.library import opcheck

import learnsolve as ls
from cases import DTYPES, assert_close, on_threads, poisson_scipy, randn
from learnsolve.linalg import spsolve_triangular
from learnsolve.linalg.triangular import triangular_levels

ops = torch.ops.learnsolve


def _well_conditioned(n, density, seed):
    """Random matrix with entries in both triangles and a dominant diagonal."""
    rng = np.random.default_rng(seed)
    S = sp.random_array((n, n), density=density, format="csr", rng=rng)
    S = S + sp.diags_array(rng.uniform(2.0, 3.0, n) * (1 + abs(S).sum(axis=1)))
    S = sp.csr_array(S)
    S.sort_indices()
    return S


MATRICES = {
    "random": lambda: _well_conditioned(30, 0.2, 0),
    "poisson": lambda: poisson_scipy(7),
    "1x1": lambda: sp.csr_array(np.array([[4.0]])),
    "diagonal": lambda: sp.csr_array(sp.diags_array(np.arange(1.0, 6.0))),
}


def _triangle(S, lower, unit):
    T = sp.tril(S) if lower else sp.triu(S)
    T = T.toarray()
    if unit:
        np.fill_diagonal(T, 1.0)
    return T


@pytest.mark.parametrize("name", list(MATRICES))
@pytest.mark.parametrize("lower", [True, False])
@pytest.mark.parametrize("transpose", [False, True])
@pytest.mark.parametrize("columns", [None, 3])
def test_matches_scipy(name, lower, transpose, columns, dtype, device):
    S = MATRICES[name]()
    A = ls.CSRMatrix.from_scipy(S, dtype=dtype, device=device)
    n = S.shape[0]
    b = randn(n, dtype=dtype, device=device) if columns is None else randn(
        n, columns, dtype=dtype, device=device)
    x = spsolve_triangular(A, b, lower=lower, transpose=transpose)
    T = _triangle(S, lower, False)
    T = T.T if transpose else T
    expected = sla.spsolve_triangular(sp.csr_array(T), b.cpu().double().numpy(),
                                      lower=lower != transpose)
    assert x.shape == b.shape and x.dtype == dtype
    assert_close(x, torch.tensor(expected, dtype=dtype, device=device), dtype)


@pytest.mark.parametrize("lower", [True, False])
@pytest.mark.parametrize("transpose", [False, True])
def test_unit_diagonal_matches_dense(lower, transpose, device):
    S = _well_conditioned(25, 0.1, 1)
    A = ls.CSRMatrix.from_scipy(S, device=device)
    b = randn(25, 2, device=device)
    T = torch.tensor(_triangle(S, lower, True), device=device)
    x = spsolve_triangular(A, b, lower=lower, unit_diagonal=True, transpose=transpose)
    expected = torch.linalg.solve_triangular(T.T if transpose else T, b,
                                             upper=(lower == transpose), unitriangular=True)
    assert_close(x, expected, torch.float64)


def test_unit_diagonal_needs_no_stored_diagonal():
    S = sp.csr_array(np.array([[0.0, 0.0, 0.0], [2.0, 0.0, 0.0], [1.0, 3.0, 0.0]]))
    A = ls.CSRMatrix.from_scipy(S)
    x = spsolve_triangular(A, torch.ones(3, dtype=torch.float64), unit_diagonal=True)
    assert_close(x, torch.tensor([1.0, -1.0, 3.0], dtype=torch.float64), torch.float64)


def test_reads_only_the_named_triangle():
    S = _well_conditioned(20, 0.3, 2)
    A = ls.CSRMatrix.from_scipy(S)
    b = randn(20)
    for lower in (True, False):
        T = ls.CSRMatrix.from_scipy(sp.csr_array(_triangle(S, lower, False)))
        assert torch.equal(spsolve_triangular(A, b, lower=lower),
                           spsolve_triangular(T, b, lower=lower))


@pytest.mark.parametrize("lower", [True, False])
@pytest.mark.parametrize("unit", [False, True])
@pytest.mark.parametrize("transpose", [False, True])
def test_gradients_keep_the_triangle(lower, unit, transpose):
    S = _well_conditioned(15, 0.3, 3)
    A = ls.CSRMatrix.from_scipy(S)
    values = A.values.clone().requires_grad_()
    b = randn(15, 2, requires_grad=True)
    x = spsolve_triangular(A.with_values(values), b, lower=lower, unit_diagonal=unit,
                           transpose=transpose)
    x.square().sum().backward()
    row, col = A.row_indices(), A.col_indices
    outside = (col > row if lower else col < row) | ((col == row) & unit)
    assert outside.any() and (values.grad[outside] == 0).all()
    assert (values.grad[~outside] != 0).any()
    # Against dense torch: the same loss through torch.linalg.solve_triangular.
    dense_values = A.values.clone().requires_grad_()
    D = A.with_values(dense_values).to_dense()
    T = (D.tril() if lower else D.triu())
    if unit:
        T = T - torch.diag(T.diagonal()) + torch.eye(15, dtype=T.dtype)
    b2 = b.detach().clone().requires_grad_()
    torch.linalg.solve_triangular(T.T if transpose else T, b2,
                                  upper=(lower == transpose)).square().sum().backward()
    assert_close(values.grad, dense_values.grad, torch.float64)
    assert_close(b.grad, b2.grad, torch.float64)


@pytest.mark.parametrize("lower", [True, False])
@pytest.mark.parametrize("unit", [False, True])
@pytest.mark.parametrize("transpose", [False, True])
def test_gradcheck(lower, unit, transpose):
    S = _well_conditioned(10, 0.4, 4)
    A = ls.CSRMatrix.from_scipy(S)
    values = A.values.clone().requires_grad_()
    b1 = randn(10, requires_grad=True)
    b2 = randn(10, 3, seed=1, requires_grad=True)

    def solve(v, b):
        return spsolve_triangular(A.with_values(v), b, lower=lower, unit_diagonal=unit,
                                  transpose=transpose)

    assert gradcheck(solve, (values, b1))
    assert gradcheck(solve, (values, b2))
    assert gradgradcheck(solve, (values, b2))


def test_levels_are_a_valid_schedule_and_cached():
    S = _well_conditioned(60, 0.08, 5)
    A = ls.CSRMatrix.from_scipy(S)
    for lower in (True, False):
        level_ptr, level_rows, diag = triangular_levels(A.pattern, lower)
        assert triangular_levels(A.pattern, lower)[0] is level_ptr
        assert sorted(level_rows.tolist()) == list(range(60))
        level = torch.empty(60, dtype=torch.long)
        for lev in range(level_ptr.numel() - 1):
            level[level_rows[level_ptr[lev]:level_ptr[lev + 1]]] = lev
        row, col = A.row_indices(), A.col_indices
        reads = col < row if lower else col > row
        assert (level[row[reads]] > level[col[reads]]).all()
        # Levels are as early as possible: each row of level l > 0 reads one of level l - 1.
        for i in range(60):
            deps = col[reads & (row == i)]
            expected = 0 if deps.numel() == 0 else int(level[deps].max()) + 1
            assert level[i] == expected
        on_diagonal = diag >= 0
        assert (col[diag[on_diagonal]] == torch.arange(60)[on_diagonal]).all()


def test_levels_of_poisson_are_wavefronts():
    m = 6
    A = ls.CSRMatrix.from_scipy(poisson_scipy(m))
    level_ptr, _, _ = triangular_levels(A.pattern, True)
    assert level_ptr.numel() - 1 == 2 * m - 1


@pytest.mark.parametrize("lower", [True, False])
@pytest.mark.parametrize("transpose", [False, True])
def test_parallel_schedule_matches_serial(lower, transpose):
    """Wide levels (a random sparse triangle) with 8 right-hand sides: the
    levels are shared among threads. T x = b is solved row by row on one
    thread and on two, each row by one thread summing in storage order, so
    the results agree bit for bit; T^T x = b is solved by columns on one
    thread and by rows of T^T on two (other summation orders): to rounding."""
    n = 20000
    rng = np.random.default_rng(6)
    S = sp.random_array((n, n), density=3.0 / n, format="csr", rng=rng) + 4.0 * sp.eye_array(n)
    S = sp.csr_array(S)
    S.sort_indices()
    A = ls.CSRMatrix.from_scipy(S)
    level_ptr, _, _ = triangular_levels(A.pattern, lower)
    assert n / (level_ptr.numel() - 1) > 1000  # wide levels
    b = randn(n, 8)
    one = on_threads(1, lambda: spsolve_triangular(A, b, lower=lower, transpose=transpose))
    two = on_threads(2, lambda: spsolve_triangular(A, b, lower=lower, transpose=transpose))
    if transpose:
        torch.testing.assert_close(one, two, rtol=1e-14, atol=1e-14)
    else:
        assert torch.equal(one, two)
    T = sp.csr_array(sp.tril(S) if lower else sp.triu(S))
    expected = sla.spsolve_triangular(sp.csr_array(T.T) if transpose else T, b.numpy(),
                                      lower=lower != transpose)
    assert_close(one, torch.tensor(expected), torch.float64)


@pytest.mark.parametrize("transpose", [False, True])
def test_parallel_backward_matches_serial(transpose):
    """The backward on wide levels: a level-parallel solve and a separate pass
    for the values' gradient on two threads, one fused pass on one thread."""
    n = 20000
    rng = np.random.default_rng(7)
    S = sp.csr_array(sp.random_array((n, n), density=3.0 / n, format="csr", rng=rng)
                     + 4.0 * sp.eye_array(n))
    S.sort_indices()
    A = ls.CSRMatrix.from_scipy(S)
    weight = randn(n, 8, seed=1)

    def gradients():
        values = A.values.clone().requires_grad_()
        b = randn(n, 8, requires_grad=True)
        x = spsolve_triangular(A.with_values(values), b, transpose=transpose)
        torch.autograd.backward(x, weight)
        return values.grad, b.grad

    for one, two in zip(on_threads(1, gradients), on_threads(2, gradients)):
        torch.testing.assert_close(one, two, rtol=1e-13, atol=1e-13)


def test_missing_diagonal_names_the_row():
    S = sp.csr_array(np.array([[1.0, 0.0, 0.0], [1.0, 2.0, 0.0], [1.0, 1.0, 0.0]]))
    A = ls.CSRMatrix.from_scipy(S)
    with pytest.raises(torch.linalg.LinAlgError, match="row 2 has no stored diagonal entry"):
        spsolve_triangular(A, torch.ones(3, dtype=torch.float64))


def test_zero_diagonal_names_the_row():
    S = sp.csr_array(np.array([[1.0, 0.0, 0.0], [1.0, 1.0, 0.0], [1.0, 1.0, 1.0]]))
    A = ls.CSRMatrix.from_scipy(S)
    values = A.values.clone()
    values[A.col_indices == A.row_indices()] = torch.tensor([1.0, 0.0, 1.0], dtype=torch.float64)
    with pytest.raises(torch.linalg.LinAlgError, match="diagonal entry of row 1 is zero"):
        spsolve_triangular(A.with_values(values), torch.ones(3, dtype=torch.float64))
    # The upper triangle of the same matrix has the same zero diagonal.
    with pytest.raises(torch.linalg.LinAlgError, match="row 1"):
        spsolve_triangular(A.with_values(values), torch.ones(3, dtype=torch.float64), lower=False)


def test_empty_matrix():
    A = ls.CSRMatrix.from_scipy(sp.csr_array((0, 0)))
    x = spsolve_triangular(A, torch.zeros(0, dtype=torch.float64))
    assert x.shape == (0,)


@pytest.mark.parametrize("bad, error, message", [
    (lambda A, b: spsolve_triangular(A.to_scipy(), b), TypeError, "A: expected a learnsolve"),
    (lambda A, b: spsolve_triangular(ls.CSRMatrix.from_scipy(sp.csr_array(np.ones((2, 3)))), b),
     ValueError, "A: expected a square matrix"),
    (lambda A, b: spsolve_triangular(A, b[:3]), ValueError, r"b: expected shape \(4,\)"),
    (lambda A, b: spsolve_triangular(A, b.reshape(2, 2)), ValueError, "b: expected shape"),
    (lambda A, b: spsolve_triangular(A, b.reshape(4, 1, 1)), ValueError, "b: expected shape"),
    (lambda A, b: spsolve_triangular(A, b.float()), TypeError, "b: expected dtype torch.float64"),
    (lambda A, b: spsolve_triangular(A, b.numpy()), TypeError, "b: expected a torch.Tensor"),
])
def test_bad_input(bad, error, message):
    A = ls.CSRMatrix.from_scipy(_well_conditioned(4, 0.5, 7))
    with pytest.raises(error, match=message):
        bad(A, torch.ones(4, dtype=torch.float64))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_device_mismatch():
    A = ls.CSRMatrix.from_scipy(_well_conditioned(4, 0.5, 7))
    with pytest.raises(ValueError, match="b: expected a tensor on cpu"):
        spsolve_triangular(A, torch.ones(4, dtype=torch.float64, device="cuda"))


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
def test_opcheck(dtype):
    A = ls.CSRMatrix.from_scipy(_well_conditioned(12, 0.3, 8), dtype=dtype)
    crow, col = A.crow_indices, A.col_indices
    t = A.pattern.transpose_arrays()
    values = A.values.clone().requires_grad_()
    opcheck(ops.sptrsv_analysis, (crow, col, True))
    for lower in (True, False):
        levels = triangular_levels(A.pattern, lower)
        for transpose in (False, True):
            b = randn(12, 2, dtype=dtype, requires_grad=True)
            opcheck(ops.sptrsv, (crow, col, values, b, *levels, lower, False, *t, transpose))
            x = ops.sptrsv(crow, col, A.values, b.detach(), *levels, lower, False, *t, transpose)
            opcheck(ops.sptrsv_backward, (crow, col, A.values, x, torch.ones_like(x), *levels,
                                          lower, True, *t, transpose))


@pytest.mark.parametrize("flag", ["lower", "unit_diagonal", "transpose"])
@pytest.mark.parametrize("value", ["no", 0, 1, None, torch.tensor(True), np.array([True])],
                         ids=["str", "0", "1", "None", "tensor", "array"])
def test_flags_must_be_bools(flag, value):
    A = ls.CSRMatrix.from_scipy(_well_conditioned(4, 0.5, 7))
    with pytest.raises(TypeError, match=f"{flag}: expected a bool, got"):
        spsolve_triangular(A, torch.ones(4, dtype=torch.float64), **{flag: value})


def test_levels_flag_must_be_a_bool_numpy_bools_taken():
    A = ls.CSRMatrix.from_scipy(_well_conditioned(4, 0.5, 7))
    with pytest.raises(TypeError, match="lower: expected a bool, got str"):
        triangular_levels(A.pattern, "no")
    b = torch.ones(4, dtype=torch.float64)
    for lower in (True, False):
        for transpose in (True, False):
            torch.testing.assert_close(
                spsolve_triangular(A, b, np.bool_(lower), np.bool_(False),
                                   transpose=np.bool_(transpose)),
                spsolve_triangular(A, b, lower, False, transpose=transpose), rtol=0, atol=0)
