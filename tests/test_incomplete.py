"""Incomplete factorisations with fill: the ILU(k) level-of-fill pattern (native
``iluk_symbolic`` against a pure-Python reference), the numeric IC(k) / ILU(k)
against dense textbook loops, the breakdown shift, the learned
IncompleteFactor (classical start, gradients, scale equivariance, positivity,
training, errors, copies) and the losses of learnsolve.solvers.losses against
dense formulas."""
import copy
import dataclasses
import functools
import gc
import io
import pickle
import warnings

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from torch.autograd import gradcheck
from torch.library import opcheck

import learnsolve as ls
import learnsolve.core.cache as cache_module
import learnsolve.solvers.losses as losses_module
from cases import m_matrix, poisson_scipy, randn
from learnsolve import Trainer
from learnsolve.core.fill import fill_pattern, level_of_fill
from learnsolve.problems import Problem, diffusion_2d, load_example, poisson_1d, poisson_2d
from learnsolve.solvers import (GMRES, PCG, IncompleteCholesky, IncompleteFactor, IncompleteLU,
                                LowerFactor, pcg_loss)
from learnsolve.solvers.incomplete import incomplete_cholesky, incomplete_lu
from learnsolve.solvers.losses import (exact_solve, inverse_loss, low_frequency_loss,
                                       sketched_loss)

ops = torch.ops.learnsolve
F64 = torch.float64
LOOSE = {torch.float32: dict(rtol=1e-5, atol=1e-6), torch.float64: dict(rtol=1e-11, atol=1e-13)}

# A shift nobody asked for is a failure: the tests that expect one use pytest.warns.
pytestmark = pytest.mark.filterwarnings("error::RuntimeWarning")


# ------------------------------------------------------------------ helpers

def _nonsymmetric_m_matrix(n, density, seed):
    """A random nonsymmetric M-matrix: negative off-diagonals, rows strictly diagonally
    dominant, a diagonal that varies."""
    rng = np.random.default_rng(seed)
    B = abs(sp.random_array((n, n), density=density, format="lil", rng=rng))
    B.setdiag(0)
    B = sp.csr_array(B)
    B.eliminate_zeros()
    S = sp.csr_array(-B + sp.diags_array(rng.uniform(0.5, 3.0, n) + abs(B).sum(axis=1)))
    S.sort_indices()
    return S


def _mask_of(M):
    """The dense boolean pattern of a CSRMatrix."""
    mask = torch.zeros(M.shape, dtype=torch.bool)
    mask[M.row_indices().cpu(), M.col_indices.cpu()] = True
    return mask.numpy()


def _csr_arrays(mask):
    """crow, col (int64 tensors) of a dense boolean pattern."""
    crow = np.concatenate([[0], np.cumsum(mask.sum(axis=1))])
    return (torch.tensor(crow, dtype=torch.long),
            torch.tensor(np.nonzero(mask)[1], dtype=torch.long))


def _reference_fill(mask, level):
    """ILU(level)'s pattern, the textbook way: entries of A and the diagonal have level
    0; eliminating k from row i (k < i, in increasing order, (i, k) kept) gives
    (i, j), j > k kept in row k, the level lev(i, k) + lev(k, j) + 1 (smallest
    wins); entries of level <= ``level`` are kept."""
    n = mask.shape[0]
    infinity = 10 ** 9
    lev = np.where(mask, 0, infinity)
    np.fill_diagonal(lev, 0)
    for i in range(n):
        for k in range(i):
            if lev[i, k] > level:
                continue
            for j in range(k + 1, n):
                if lev[k, j] <= level:
                    lev[i, j] = min(lev[i, j], lev[i, k] + lev[k, j] + 1)
    return lev <= level


def _dense_ilu(a, mask):
    """ILU on a pattern, the IKJ textbook loops: L unit lower (strictly below the
    diagonal) and U together, updates outside the pattern dropped."""
    a = np.where(mask, a, 0.0)
    n = a.shape[0]
    for i in range(n):
        for k in range(i):
            if mask[i, k]:
                a[i, k] /= a[k, k]
                for j in range(k + 1, n):
                    if mask[i, j]:
                        a[i, j] -= a[i, k] * a[k, j]
    return a


def _dense_ic(a, mask):
    """IC on the lower triangle of a pattern, entry by entry."""
    n = a.shape[0]
    L = np.zeros((n, n))
    for i in range(n):
        for k in range(i):
            if mask[i, k]:
                L[i, k] = (a[i, k] - L[i, :k] @ L[k, :k]) / L[k, k]
        L[i, i] = np.sqrt(a[i, i] - L[i, :i] @ L[i, :i])
    return L


def _split_lu(F):
    """Dense L (unit lower) and U of a factor stored together."""
    F = F.to_dense().cpu().double() if isinstance(F, ls.CSRMatrix) else torch.as_tensor(F)
    n = F.shape[0]
    return torch.tril(F, -1) + torch.eye(n, dtype=F.dtype), torch.triu(F)


def _recirc():
    return load_example("recirc_flow", dtype=F64).A


def _kershaw():
    """Kershaw's SPD matrix (eigenvalues 3 +- 2 sqrt 2), not an M-matrix: IC(0) breaks
    down at row 3 with the pivot -5."""
    return ls.CSRMatrix.from_dense(torch.tensor(
        [[3.0, -2.0, 0.0, 2.0], [-2.0, 3.0, -2.0, 0.0], [0.0, -2.0, 3.0, -2.0],
         [2.0, 0.0, -2.0, 3.0]], dtype=F64))


def _shifted(A, alpha):
    """A + alpha diag(A), as the shift computes it."""
    diagonal = A.col_indices == A.row_indices()
    return A.with_values(torch.where(diagonal, A.values + alpha * A.values, A.values))


# ------------------------------------------------------------------ symbolic fill

def _random_pattern(case, seed):
    rng = np.random.default_rng(seed)
    if case == "n1_empty":
        return np.zeros((1, 1), dtype=bool)
    if case == "n1":
        return np.ones((1, 1), dtype=bool)
    n = 25
    mask = rng.random((n, n)) < 0.12
    if case == "with_diagonal":
        np.fill_diagonal(mask, True)
    elif case == "no_diagonal":
        np.fill_diagonal(mask, False)
    elif case == "empty_rows":
        mask[[0, 7, 19], :] = False
        mask[:, [3, 19]] = False
    elif case == "dense_first_row":
        mask[0, :] = True
        mask[:, 0] = True
    return mask


PATTERNS = ["with_diagonal", "no_diagonal", "some_diagonal", "empty_rows", "dense_first_row",
            "n1", "n1_empty"]


@pytest.mark.parametrize("level", [0, 1, 2, 3])
@pytest.mark.parametrize("case", PATTERNS)
@pytest.mark.parametrize("seed", [0, 1])
def test_iluk_symbolic_matches_reference(case, level, seed):
    mask = _random_pattern(case, seed)
    crow, col = _csr_arrays(mask)
    new_crow, new_col = ops.iluk_symbolic(crow, col, level)
    n = mask.shape[0]
    assert new_crow.dtype == torch.long and new_col.dtype == torch.long
    assert new_crow.shape == (n + 1,) and int(new_crow[0]) == 0
    assert int(new_crow[-1]) == new_col.numel()
    for i in range(n):                                        # sorted, no duplicates
        row = new_col[new_crow[i]:new_crow[i + 1]]
        assert bool((row[1:] > row[:-1]).all()), (i, row)
    got = np.zeros((n, n), dtype=bool)
    rows = np.repeat(np.arange(n), np.diff(new_crow.numpy()))
    got[rows, new_col.numpy()] = True
    np.testing.assert_array_equal(got, _reference_fill(mask, level))
    if level == 0:
        np.testing.assert_array_equal(got, mask | np.eye(n, dtype=bool))


def test_iluk_symbolic_levels_grow():
    mask = _random_pattern("some_diagonal", 3)
    crow, col = _csr_arrays(mask)
    sizes = [ops.iluk_symbolic(crow, col, k)[1].numel() for k in range(6)]
    assert sizes == sorted(sizes) and sizes[-1] > sizes[0]
    # A high enough level is the symbolic LU pattern (no drop at all).
    full = ops.iluk_symbolic(crow, col, 10 ** 6)[1].numel()
    assert full == int(_reference_fill(mask, 10 ** 6).sum())


def test_iluk_symbolic_of_a_0x0_pattern():
    crow, col = torch.zeros(1, dtype=torch.long), torch.zeros(0, dtype=torch.long)
    new_crow, new_col = ops.iluk_symbolic(crow, col, 2)
    assert new_crow.tolist() == [0] and new_col.numel() == 0


def test_iluk_symbolic_opcheck():
    A = poisson_2d(5, dtype=F64).A
    opcheck(ops.iluk_symbolic, (A.crow_indices, A.col_indices, 2))


@pytest.mark.parametrize("dtype", [torch.float32, F64], ids=["float32", "float64"])
def test_ilu_opcheck(dtype):
    F = fill_pattern(ls.CSRMatrix.from_scipy(_nonsymmetric_m_matrix(15, 0.2, 0), dtype=dtype), 1)
    opcheck(ops.ilu, (F.crow_indices, F.col_indices, F.values))


@pytest.mark.parametrize("level", [0, 1, 2, 3])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fill_of_a_symmetric_pattern_is_symmetric(level, seed):
    mask = _random_pattern("some_diagonal", seed)
    mask = mask | mask.T
    crow, col = _csr_arrays(mask)
    A = ls.CSRMatrix(crow, col, torch.ones(col.numel(), dtype=F64), mask.shape)
    got = _mask_of(fill_pattern(A, level))
    np.testing.assert_array_equal(got, got.T)
    np.testing.assert_array_equal(got, _reference_fill(mask, level))


@pytest.mark.parametrize("level", [0, 1, 2])
def test_ic_pattern_is_the_lower_triangle_of_the_fill(level):
    A = poisson_2d(6, dtype=F64).A
    L = incomplete_cholesky(A, level).matrix
    fill = _mask_of(fill_pattern(A, level))
    np.testing.assert_array_equal(_mask_of(L), np.tril(fill))
    ilu = incomplete_lu(A, level).matrix
    np.testing.assert_array_equal(_mask_of(ilu), fill)


def test_poisson_fill_sizes():
    A = poisson_2d(4, dtype=F64).A
    assert [fill_pattern(A, k).nnz for k in (0, 1, 2)] == [64, 82, 94]


@pytest.mark.parametrize("level", [0, 1, 2])
def test_fill_pattern_keeps_a_values_at_a_positions(level):
    S = _nonsymmetric_m_matrix(30, 0.08, 4)
    S = sp.lil_array(S)
    S[5, 5] = 0.0                                              # a row without its diagonal
    S = sp.csr_array(S)
    S.eliminate_zeros()
    A = ls.CSRMatrix.from_scipy(S, dtype=F64)
    fill, positions = level_of_fill(A.pattern, level)
    F = fill_pattern(A, level)
    assert F.nnz == fill.nnz and positions.shape == (A.nnz,)
    assert bool((positions[1:] > positions[:-1]).all())
    torch.testing.assert_close(fill.col[positions], A.col_indices, rtol=0, atol=0)
    torch.testing.assert_close(fill.row()[positions], A.row_indices(), rtol=0, atol=0)
    torch.testing.assert_close(F.values[positions], A.values, rtol=0, atol=0)
    others = torch.ones(F.nnz, dtype=torch.bool)
    others[positions] = False
    assert bool((F.values[others] == 0).all())
    torch.testing.assert_close(F.to_dense(), A.to_dense(), rtol=0, atol=0)
    np.testing.assert_array_equal(_mask_of(F), _reference_fill(S.toarray() != 0, level))
    assert bool(F.diagonal().ne(0).sum() == 29)                # (5, 5) stored, a zero


def test_fill_pattern_is_differentiable():
    A = ls.CSRMatrix.from_scipy(m_matrix(12, 0.3, 1))
    values = A.values.detach().clone().requires_grad_()
    assert gradcheck(lambda v: fill_pattern(A.with_values(v), 2).values, (values,))


def test_level_of_fill_is_cached():
    A = poisson_2d(5, dtype=F64).A
    first = level_of_fill(A.pattern, 1)
    second = level_of_fill(A.pattern, 1)
    assert first[0] is second[0] and first[1] is second[1]
    assert level_of_fill(A.pattern, 2)[0] is not first[0]
    assert fill_pattern(A, 1).pattern is first[0]


def test_level_of_fill_errors():
    A = poisson_2d(3, dtype=F64).A
    for level in (-1, True, False, 1.0, "1", None):
        with pytest.raises(ValueError, match="level: expected an integer >= 0"):
            level_of_fill(A.pattern, level)
        with pytest.raises(ValueError, match="level"):
            fill_pattern(A, level)
    wide = ls.CSRMatrix.from_dense(torch.ones(2, 3, dtype=F64))
    with pytest.raises(ValueError, match="pattern: expected a square pattern"):
        level_of_fill(wide.pattern, 0)
    with pytest.raises(ValueError, match="square"):
        fill_pattern(wide, 1)
    with pytest.raises(TypeError, match="A: expected a CSRMatrix"):
        fill_pattern(A.to_dense(), 1)
    with pytest.raises(RuntimeError, match="iluk_symbolic: expected level >= 0"):
        ops.iluk_symbolic(A.crow_indices, A.col_indices, -1)


def test_fill_pattern_follows_the_device(device):
    A = ls.CSRMatrix.from_scipy(_nonsymmetric_m_matrix(20, 0.1, 2), dtype=F64)
    expected = fill_pattern(A, 2)
    F = fill_pattern(A.to(device), 2)
    assert F.device.type == device and F.crow_indices.device.type == device
    torch.testing.assert_close(F.to_dense().cpu(), expected.to_dense(), rtol=0, atol=0)
    torch.testing.assert_close(F.col_indices.cpu(), expected.col_indices, rtol=0, atol=0)
    _, positions = level_of_fill(A.to(device).pattern, 2)
    assert positions.device.type == device


# ------------------------------------------------------------------ numeric ILU(k) / IC(k)

NONSYMMETRIC = {
    "m_matrix": lambda: _nonsymmetric_m_matrix(40, 0.06, 0),
    "recirc_flow": lambda: load_example("recirc_flow", dtype=F64).A.to_scipy(),
}


@pytest.mark.parametrize("fill", [0, 1, 2])
@pytest.mark.parametrize("name", list(NONSYMMETRIC))
def test_ilu_matches_dense_reference(name, fill, dtype):
    S = sp.csr_array(NONSYMMETRIC[name]())
    A = ls.CSRMatrix.from_scipy(S, dtype=dtype)
    factor = incomplete_lu(A, fill)
    assert factor.kind == "lu" and factor.fill == fill and factor.shift == 0.0
    assert factor.name == f"ILU({fill})"
    F = factor.matrix
    assert F.dtype == dtype and not F.values.requires_grad
    mask = _mask_of(fill_pattern(A, fill))
    np.testing.assert_array_equal(_mask_of(F), mask)
    a = A.to_dense().double().numpy()                          # the values as stored
    reference = _dense_ilu(a, mask)
    torch.testing.assert_close(F.to_dense().double(), torch.from_numpy(reference), **LOOSE[dtype])
    # ILU's defining property: L U equals A on the pattern.
    L, U = _split_lu(torch.from_numpy(reference))
    product = (L @ U).numpy()
    np.testing.assert_allclose(product[mask], a[mask], rtol=1e-10, atol=1e-10)


def test_ilu0_of_a_tridiagonal_matrix_is_its_lu():
    rng = np.random.default_rng(5)
    n = 15
    S = sp.diags_array([-rng.uniform(0.5, 1.5, n - 1), rng.uniform(3.0, 4.0, n),
                        -rng.uniform(0.1, 1.0, n - 1)], offsets=[-1, 0, 1], format="csr")
    A = ls.CSRMatrix.from_scipy(S, dtype=F64)
    dense = A.to_dense()
    full = _dense_ilu(dense.numpy(), np.ones((n, n), dtype=bool))  # LU without pivoting
    for fill in (0, 1, 2):
        F = incomplete_lu(A, fill).matrix
        assert F.nnz == A.nnz                                   # no fill at all
        torch.testing.assert_close(F.to_dense(), torch.from_numpy(full), **LOOSE[F64])
        L, U = _split_lu(F)
        torch.testing.assert_close(L @ U, dense, **LOOSE[F64])


@pytest.mark.parametrize("fill", [0, 1, 2])
def test_ic_is_ilu_scaled_by_the_square_root_of_the_pivots(fill):
    A = ls.CSRMatrix.from_scipy(m_matrix(40, 0.08, 1), dtype=F64)
    L_ilu, U = _split_lu(incomplete_lu(A, fill).matrix)
    L_ic = incomplete_cholesky(A, fill).matrix.to_dense()
    pivots = torch.diagonal(U)
    torch.testing.assert_close(L_ic, L_ilu @ torch.diag(pivots.sqrt()), **LOOSE[F64])
    torch.testing.assert_close(U, torch.diag(pivots) @ L_ilu.T, **LOOSE[F64])


@pytest.mark.parametrize("fill", [0, 1, 2])
def test_ic_matches_dense_reference_and_its_defining_property(fill, dtype):
    S = m_matrix(30, 0.1, 2)
    A = ls.CSRMatrix.from_scipy(S, dtype=dtype)
    factor = incomplete_cholesky(A, fill)
    assert factor.kind == "cholesky" and factor.name == f"IC({fill})" and factor.shift == 0.0
    L = factor.matrix
    mask = np.tril(_mask_of(fill_pattern(A, fill)))
    np.testing.assert_array_equal(_mask_of(L), mask)
    a = A.to_dense().double().numpy()
    reference = _dense_ic(a, mask)
    torch.testing.assert_close(L.to_dense().double(), torch.from_numpy(reference), **LOOSE[dtype])
    product = reference @ reference.T
    np.testing.assert_allclose(product[mask], a[mask], rtol=1e-10, atol=1e-12)
    if fill:                                                    # fill entries are 0 in A
        assert np.any(mask & (a == 0))


@pytest.mark.parametrize("fill", [0, 2])
def test_classical_apply_matches_dense(fill, dtype, device):
    S = _nonsymmetric_m_matrix(30, 0.1, 3)
    A = ls.CSRMatrix.from_scipy(S, dtype=dtype, device=device)
    R = randn(30, 3, dtype=dtype, device=device)
    L, U = _split_lu(IncompleteLU(fill).factor(A))
    z = IncompleteLU(fill).setup(A)(R)
    assert z.device == R.device and z.dtype == dtype
    torch.testing.assert_close(z.cpu().double(), torch.linalg.solve(L @ U, R.cpu().double()),
                               **LOOSE[dtype])
    torch.testing.assert_close(IncompleteLU(fill).setup_inverse(A)(R).cpu().double(),
                               L @ U @ R.cpu().double(), **LOOSE[dtype])
    C = ls.CSRMatrix.from_scipy(m_matrix(30, 0.1, 3), dtype=dtype, device=device)
    Lc = IncompleteCholesky(fill).factor(C).to_dense().cpu().double()
    z = IncompleteCholesky(fill).setup(C)(R[:, 0])
    torch.testing.assert_close(z.cpu().double(),
                               torch.linalg.solve(Lc @ Lc.T, R[:, 0].cpu().double()),
                               **LOOSE[dtype])


def test_classical_cache():
    A = ls.CSRMatrix.from_scipy(_nonsymmetric_m_matrix(20, 0.1, 6), dtype=F64)
    model = IncompleteLU(1)
    first = model.factorization(A)
    assert model.factorization(A) is first
    with torch.no_grad():
        A.values.mul_(3.0)
    second = model.factorization(A)
    assert second is not first
    L1, U1 = _split_lu(first.matrix)
    L2, U2 = _split_lu(second.matrix)
    torch.testing.assert_close(L2, L1, **LOOSE[F64])
    torch.testing.assert_close(U2, 3 * U1, **LOOSE[F64])


def test_more_fill_fewer_pcg_iterations():
    p = poisson_2d(16, dtype=F64)
    b = p.random_rhs(seed=1)
    iterations = []
    for fill in (0, 1, 2):
        solution = PCG(M=IncompleteCholesky(fill), rtol=1e-8)(p.A, b)
        assert solution.converged
        iterations.append(solution.iterations)
    assert iterations[0] > iterations[1] >= iterations[2], iterations
    none = PCG(rtol=1e-8)(p.A, b)
    assert none.iterations > iterations[0]


def test_gmres_with_ilu_on_recirc_flow():
    A = _recirc()
    b = torch.ones(A.shape[0], dtype=F64)
    s0 = GMRES(M=IncompleteLU(0), rtol=1e-8)(A, b)
    s1 = GMRES(M=IncompleteLU(1), rtol=1e-8)(A, b)
    none = GMRES(rtol=1e-8)(A, b)
    assert s0.converged and s1.converged
    assert s1.iterations < s0.iterations < none.iterations, (s1, s0, none)
    assert float((b - A @ s1.x).norm() / b.norm()) < 1e-7


# ------------------------------------------------------------------ breakdown and shift

def test_kershaw_is_spd_and_ic0_breaks_down():
    A = _kershaw()
    assert float(torch.linalg.eigvalsh(A.to_dense()).min()) > 0.17
    with pytest.raises(torch.linalg.LinAlgError,
                       match=r"IC\(0\) broke down at row 3: the pivot .* = -5 is not positive"):
        incomplete_cholesky(A, shift=False)
    with pytest.raises(torch.linalg.LinAlgError, match=r"IC\(0\) broke down at row 3"):
        IncompleteCholesky(shift=False).setup(A)
    with pytest.raises(torch.linalg.LinAlgError, match=r"IC\(0\) broke down at row 3"):
        IncompleteFactor(A, shift=False)


def test_ic_shift_after_breakdown():
    A = _kershaw()
    model = IncompleteCholesky()
    with pytest.warns(RuntimeWarning, match=r"IC\(0\) broke down at row 3.*factored A \+ "
                                            r"0\.256 diag\(A\) instead"):
        factorization = model.factorization(A)
    assert factorization.shift == pytest.approx(0.256)         # 1e-3 * 2^8
    L = factorization.matrix
    expected = incomplete_cholesky(_shifted(A, factorization.shift), shift=False).matrix
    torch.testing.assert_close(L.values, expected.values, rtol=0, atol=0)
    # The first shift of the doubling sequence that works: half of it breaks down.
    with pytest.raises(torch.linalg.LinAlgError):
        incomplete_cholesky(_shifted(A, factorization.shift / 2), shift=False)
    # The shifted factor is a usable SPD preconditioner, and cached (no second warning).
    b = torch.ones(4, dtype=F64)
    assert PCG(M=model, rtol=1e-10)(A, b).converged
    assert model.factorization(A) is factorization


def test_incomplete_factor_records_the_shift():
    A = _kershaw()
    with pytest.warns(RuntimeWarning, match=r"IC\(0\) broke down at row 3"):
        M = IncompleteFactor(A)
    assert M.shift_ == pytest.approx(0.256)
    # The Jacobi-scaled Kershaw matrix is Kershaw / 3: the same shift, and the factor
    # is IC(0) of the shifted matrix.
    with pytest.warns(RuntimeWarning):
        classical = IncompleteCholesky().factor(A)
    torch.testing.assert_close(M.factor(A).detach().values, classical.values, **LOOSE[F64])


def test_ilu_zero_pivot_shift():
    dense = torch.tensor([[1.0, 1.0, 0.0], [1.0, 1.0, 0.5], [0.0, 0.5, 2.0]], dtype=F64)
    A = ls.CSRMatrix.from_dense(dense)
    with pytest.raises(torch.linalg.LinAlgError,
                       match=r"ILU\(0\) broke down at row 1: the pivot u_ii = 0 is zero"):
        incomplete_lu(A, shift=False)
    with pytest.raises(torch.linalg.LinAlgError, match=r"ILU\(0\) broke down at row 1"):
        IncompleteLU(shift=False).setup(A)
    with pytest.warns(RuntimeWarning, match=r"ILU\(0\) broke down at row 1.*factored A \+ "
                                            r"0\.001 diag\(A\)"):
        factorization = IncompleteLU().factorization(A)
    assert factorization.shift == pytest.approx(1e-3)
    expected = incomplete_lu(_shifted(A, 1e-3), shift=False).matrix
    torch.testing.assert_close(factorization.matrix.values, expected.values, rtol=0, atol=0)
    L, U = _split_lu(factorization.matrix)
    torch.testing.assert_close(L @ U, _shifted(A, 1e-3).to_dense(), **LOOSE[F64])  # no fill
    with pytest.warns(RuntimeWarning, match=r"ILU\(0\) broke down"):
        M = IncompleteFactor(A, kind="lu")
    assert M.shift_ == pytest.approx(1e-3)
    with pytest.raises(torch.linalg.LinAlgError, match=r"ILU\(0\) broke down"):
        IncompleteFactor(A, kind="lu", shift=False)


def test_no_shift_helps_a_zero_diagonal():
    A = ls.CSRMatrix.from_dense(torch.tensor([[0.0, 1.0], [1.0, 0.0]], dtype=F64))
    with pytest.raises(torch.linalg.LinAlgError,
                       match=r"ILU\(0\) broke down at row 0.*no diagonal shift up to 1000 "
                             r"diag\(A\) helped"):
        incomplete_lu(A)


def test_ilu_op_errors():
    A = ls.CSRMatrix.from_dense(torch.tensor([[1.0, 1.0], [1.0, 0.0]], dtype=F64))
    with pytest.raises(ValueError, match="ilu: expected every diagonal entry stored; row 1"):
        ops.ilu(A.crow_indices, A.col_indices, A.values)
    with pytest.raises(RuntimeError, match="ilu: expected 1-D values of the length of col"):
        ops.ilu(A.crow_indices, A.col_indices, A.values[:2])


# ------------------------------------------------------------------ IncompleteFactor

def _lu_matrix(seed=7, n=30):
    return ls.CSRMatrix.from_scipy(_nonsymmetric_m_matrix(n, 0.1, seed), dtype=F64)


def _spd_matrix(seed=7, n=30):
    return ls.CSRMatrix.from_scipy(m_matrix(n, 0.1, seed), dtype=F64)


@pytest.mark.parametrize("fill", [0, 1])
@pytest.mark.parametrize("kind", ["cholesky", "lu"])
def test_incomplete_factor_starts_as_the_classical_factor(kind, fill):
    A = _spd_matrix() if kind == "cholesky" else _lu_matrix()
    M = IncompleteFactor(A, kind=kind, fill=fill)
    assert M.kind == kind and M.fill == fill and M.shift_ == 0.0
    baseline = (IncompleteCholesky if kind == "cholesky" else IncompleteLU)(fill)
    expected = baseline.factor(A)
    got = M.factor(A)
    assert got.values.requires_grad and got.dtype == F64
    np.testing.assert_array_equal(_mask_of(got), _mask_of(expected))
    torch.testing.assert_close(got.detach().values, expected.values, **LOOSE[F64])
    R = randn(30, 2, seed=1)
    torch.testing.assert_close(M.setup(A)(R).detach(), baseline.setup(A)(R), **LOOSE[F64])
    torch.testing.assert_close(M.setup_inverse(A)(R).detach(), baseline.setup_inverse(A)(R),
                               **LOOSE[F64])


@pytest.mark.parametrize("kind", ["cholesky", "lu"])
def test_incomplete_factor_values_layout(kind):
    A = _spd_matrix() if kind == "cholesky" else _lu_matrix()
    M = IncompleteFactor(A, kind=kind, fill=1)
    F = M.factor()                                              # the factor of D^-1/2 A D^-1/2
    s = A.diagonal().abs().rsqrt()
    scaled = A.with_values(s[A.row_indices()] * A.values * s[A.col_indices])
    classical = (incomplete_cholesky if kind == "cholesky" else incomplete_lu)(scaled, 1).matrix
    torch.testing.assert_close(F.detach().values, classical.values, **LOOSE[F64])
    diagonal = F.col_indices == F.row_indices()
    torch.testing.assert_close(M.values.detach()[diagonal], classical.values[diagonal].abs().log(),
                               **LOOSE[F64])
    torch.testing.assert_close(M.values.detach()[~diagonal], classical.values[~diagonal],
                               **LOOSE[F64])


@pytest.mark.parametrize("kind", ["cholesky", "lu"])
def test_incomplete_factor_setup_inverse_inverts_setup(kind):
    A = _spd_matrix(3) if kind == "cholesky" else _lu_matrix(3)
    M = IncompleteFactor(A, kind=kind, fill=1)
    with torch.no_grad():                                       # away from the classical start
        M.values.add_(0.1 * randn(M.values.numel(), seed=4))
    for r in (randn(30, seed=2), randn(30, 3, seed=3)):
        z = M.setup(A)(r)
        assert z.shape == r.shape
        torch.testing.assert_close(M.setup_inverse(A)(z), r, **LOOSE[F64])
        torch.testing.assert_close(M.setup(A)(M.setup_inverse(A)(r)), r, **LOOSE[F64])
    if kind == "cholesky":                                      # M is symmetric
        X = torch.eye(30, dtype=F64)
        dense = M.setup(A)(X).detach()
        torch.testing.assert_close(dense, dense.T, **LOOSE[F64])
        assert float(torch.linalg.eigvalsh(dense).min()) > 0


@pytest.mark.parametrize("kind", ["cholesky", "lu"])
def test_incomplete_factor_gradcheck(kind):
    A = _spd_matrix(5, 12) if kind == "cholesky" else _lu_matrix(5, 12)
    M = IncompleteFactor(A, kind=kind, fill=1)
    with torch.no_grad():
        M.values.add_(0.05 * randn(M.values.numel(), seed=6))
    r = randn(12, 2, seed=7, requires_grad=True)
    assert gradcheck(lambda values, r: M.setup(A)(r), (M.values, r))
    assert gradcheck(lambda values, r: M.setup_inverse(A)(r), (M.values, r))
    # In A's values: only the diagonal enters.
    a = A.values.detach().clone().requires_grad_()
    assert gradcheck(lambda a: M.setup(A.with_values(a))(r.detach()), (a,))
    grad, = torch.autograd.grad((M.setup(A.with_values(a))(r.detach()) ** 2).sum(), a)
    diagonal = A.col_indices == A.row_indices()
    assert bool((grad[~diagonal] == 0).all()) and bool((grad[diagonal] != 0).all())


def test_incomplete_factor_gradient_through_functional_call():
    A = _spd_matrix(8, 12)
    M = IncompleteFactor(A, fill=1)
    r = randn(12, seed=1)
    values = M.values.detach().clone().requires_grad_()

    def apply(values):
        return torch.func.functional_call(_Setup(M), {"M.values": values}, (A, r))
    assert gradcheck(apply, (values,))
    # The parameter itself is untouched by the functional call.
    torch.testing.assert_close(M.values.detach(), values.detach(), rtol=0, atol=0)


class _Setup(torch.nn.Module):
    """``forward(A, r) = M.setup(A)(r)``: for torch.func.functional_call."""

    def __init__(self, M):
        super().__init__()
        self.M = M

    def forward(self, A, r):
        return self.M.setup(A)(r)


@pytest.mark.parametrize("kind", ["cholesky", "lu"])
def test_incomplete_factor_is_scale_equivariant(kind):
    A = diffusion_2d(6, coefficient="lognormal", seed=3, dtype=F64).A
    if kind == "lu":
        A = _lu_matrix(9)
    c = 441.0
    M = IncompleteFactor(A, kind=kind, fill=1)
    other = IncompleteFactor(c * A, kind=kind, fill=1)
    torch.testing.assert_close(other.values, M.values, rtol=1e-12, atol=1e-14)
    with torch.no_grad():
        M.values.add_(0.1 * randn(M.values.numel(), seed=2))
    r = randn(A.shape[0], seed=3)
    torch.testing.assert_close(M.setup(c * A)(r), M.setup(A)(r) / c, rtol=1e-12, atol=0)
    torch.testing.assert_close(M.setup_inverse(c * A)(r), c * M.setup_inverse(A)(r),
                               rtol=1e-12, atol=0)


def test_incomplete_factor_trains_the_same_on_a_scaled_problem():
    p = poisson_2d(12, dtype=F64)
    q = dataclasses.replace(p, A=441.0 * p.A)

    def fit(problem):
        return Trainer(PCG(M=IncompleteFactor(problem)), lr=1e-2, epochs=20, seed=0,
                       progress=False).fit(problem)
    first, second = fit(p), fit(q)
    np.testing.assert_allclose(second.history_.loss, first.history_.loss, rtol=1e-10, atol=0)
    v1, v2 = first.model.M.values.detach(), second.model.M.values.detach()
    assert not torch.equal(v1, IncompleteFactor(p).values.detach())   # it did train
    torch.testing.assert_close(v2, v1, rtol=1e-10, atol=1e-12)
    b = p.random_rhs(seed=1)
    s1 = PCG(M=first.model.M, rtol=1e-6)(p.A, b)
    s2 = PCG(M=second.model.M, rtol=1e-6)(q.A, b)
    assert s1.converged and s2.converged and s1.iterations == s2.iterations


def test_incomplete_factor_diagonal_keeps_its_sign():
    A = _spd_matrix(2)
    M = IncompleteFactor(A, fill=1)
    diagonal = M._diagonal()
    with torch.no_grad():
        M.values[diagonal] = torch.where(torch.arange(diagonal.numel()) % 2 == 0,
                                         torch.tensor(-30.0, dtype=F64),
                                         torch.tensor(30.0, dtype=F64))
    L = M.factor(A).detach()
    pivots = L.diagonal()
    assert bool((pivots > 0).all()) and bool(torch.isfinite(L.values).all())
    b = randn(30, seed=1)
    solution = PCG(M=M, maxiter=5)(A, b)                         # runs, no breakdown
    assert bool(torch.isfinite(solution.residuals).all())
    # Moderate values: still SPD, PCG converges.
    with torch.no_grad():
        M.values[diagonal] = torch.linspace(-3, 3, diagonal.numel(), dtype=F64)
    assert PCG(M=M, rtol=1e-8)(A, b).converged

    # lu: the signs of the pivots are fixed at the start (rows of A flipped).
    signs = torch.where(torch.arange(30) % 3 == 0, -1.0, 1.0).to(F64)
    B = _lu_matrix(2)
    B = B.with_values(signs[B.row_indices()] * B.values)
    N = IncompleteFactor(B, kind="lu", fill=1)
    torch.testing.assert_close(N.diagonal_sign, signs, rtol=0, atol=0)
    torch.testing.assert_close(N.factor(B).detach().diagonal().sign(), signs, rtol=0, atol=0)
    d = N._diagonal()
    with torch.no_grad():
        N.values[d] = torch.where(torch.arange(30) % 2 == 0, -30.0, 30.0).to(F64)
    torch.testing.assert_close(N.factor(B).detach().diagonal().sign(), signs, rtol=0, atol=0)
    assert bool(torch.isfinite(N.setup(B)(randn(30)).detach()).all())
    assert "diagonal_sign" in N.state_dict()


def test_training_beats_ic0():
    p = poisson_2d(16, dtype=F64)
    b = p.random_rhs(seed=1)
    ic0 = PCG(M=IncompleteCholesky(), rtol=1e-6)(p.A, b)
    untrained = PCG(M=IncompleteFactor(p), rtol=1e-6)(p.A, b)
    assert untrained.iterations == ic0.iterations
    trainer = Trainer(PCG(M=IncompleteFactor(p)), loss=functools.partial(pcg_loss, iterations=16),
                      lr=1e-2, epochs=60, seed=0, progress=False).fit(p)
    assert trainer.history_.loss[-1] < 0.6 * trainer.history_.loss[0]
    trained = PCG(M=trainer.model.M, rtol=1e-6)(p.A, b)
    assert trained.converged and ic0.converged
    # measured: 16 -> 12 iterations
    assert trained.iterations <= 0.85 * ic0.iterations, (trained.iterations, ic0.iterations)


def test_incomplete_factor_errors():
    A = _spd_matrix(1, 12)
    with pytest.raises(ValueError, match="kind: expected one of"):
        IncompleteFactor(A, kind="qr")
    with pytest.raises(ValueError, match="fill"):
        IncompleteFactor(A, fill=-1)
    with pytest.raises((TypeError, ValueError), match="fill"):
        IncompleteFactor(A, fill=True)
    with pytest.raises((TypeError, ValueError), match="fill"):
        IncompleteFactor(A, fill=1.5)
    with pytest.raises(ValueError, match="init: expected 'classical' or a tensor"):
        IncompleteFactor(A, init="jacobi")
    nnz = A.tril().nnz
    with pytest.raises(ValueError, match=f"init: expected a 1-D float tensor of {nnz} values"):
        IncompleteFactor(A, init=torch.ones(nnz + 1, dtype=F64))
    with pytest.raises(ValueError, match="init"):
        IncompleteFactor(A, init=torch.ones(nnz, dtype=torch.long))
    lower = A.tril()
    values = torch.where(lower.col_indices == lower.row_indices(), 1.0, 0.0).to(F64)
    bad = values.clone()
    bad[A.tril().crow_indices[5 + 1] - 1] = 0.0                 # row 5's diagonal
    with pytest.raises(ValueError, match="init: expected a positive diagonal.*row 5"):
        IncompleteFactor(A, init=bad)
    bad[A.tril().crow_indices[5 + 1] - 1] = -1.0
    with pytest.raises(ValueError, match="init: expected a positive diagonal.*row 5"):
        IncompleteFactor(A, init=bad)
    nonsymmetric = _lu_matrix(1, 12)
    with pytest.raises(ValueError, match="symmetric"):
        IncompleteFactor(nonsymmetric)
    M = IncompleteFactor(A)
    with pytest.raises(ValueError, match="A: expected shape"):
        M.setup(_spd_matrix(1, 13))
    with pytest.raises(ValueError, match="A: expected shape"):
        M.setup_inverse(_spd_matrix(1, 13))
    with pytest.raises(ValueError, match="A: expected a square"):
        IncompleteFactor(ls.CSRMatrix.from_dense(torch.ones(2, 3, dtype=F64)))
    zero_diagonal = ls.CSRMatrix.from_dense(torch.tensor([[0.0, 1.0], [1.0, 2.0]], dtype=F64))
    with pytest.raises(ValueError, match="A: expected a nonzero diagonal"):
        IncompleteFactor(zero_diagonal, kind="lu")
    with pytest.raises(TypeError):
        IncompleteFactor(A.to_dense())


def test_incomplete_factor_tensor_init():
    A = _spd_matrix(1, 12)
    lower = A.tril()
    identity = torch.where(lower.col_indices == lower.row_indices(), 1.0, 0.0).to(F64)
    M = IncompleteFactor(A, init=identity)                      # L~ = I: Jacobi
    r = randn(12)
    torch.testing.assert_close(M.setup(A)(r).detach(), r / A.diagonal(), **LOOSE[F64])
    B = _lu_matrix(1, 12)
    F = fill_pattern(B, 1)
    identity = torch.where(F.col_indices == F.row_indices(), -2.0, 0.0).to(F64)
    N = IncompleteFactor(B, kind="lu", fill=1, init=identity)
    torch.testing.assert_close(N.diagonal_sign, -torch.ones(12, dtype=F64), rtol=0, atol=0)
    torch.testing.assert_close(N.setup(B)(r).detach(), -r / (2 * B.diagonal().abs()),
                               **LOOSE[F64])


def test_incomplete_factor_state_dict_copies_and_dtype():
    A = _lu_matrix(4, 20)
    M = IncompleteFactor(A, kind="lu", fill=1)
    with torch.no_grad():
        M.values.add_(0.1 * randn(M.values.numel(), seed=5))
    r = randn(20, seed=6)
    expected = M.setup(A)(r).detach()
    other = IncompleteFactor(A, kind="lu", fill=1)
    assert not torch.allclose(other.setup(A)(r), expected)
    other.load_state_dict(M.state_dict())
    torch.testing.assert_close(other.setup(A)(r).detach(), expected, rtol=0, atol=0)
    buffer = io.BytesIO()
    torch.save(M, buffer)
    buffer.seek(0)
    for copied in (copy.deepcopy(M), pickle.loads(pickle.dumps(M)),
                   torch.load(buffer, weights_only=False)):
        assert copied.kind == "lu" and copied.fill == 1
        torch.testing.assert_close(copied.setup(A)(r).detach(), expected, rtol=0, atol=0)
    single = copy.deepcopy(M).to(torch.float32)
    assert single.values.dtype == torch.float32
    A32 = A.to(torch.float32)
    z = single.setup(A32)(r.float())
    assert z.dtype == torch.float32
    torch.testing.assert_close(z.detach().double(), expected, rtol=1e-4, atol=1e-5)
    # The float64 module also serves a float32 matrix (its values cast).
    assert M.setup(A32)(r.float()).dtype == torch.float32


def test_incomplete_factor_on_device(device):
    A = ls.CSRMatrix.from_scipy(m_matrix(20, 0.15, 2), dtype=F64)
    M = IncompleteFactor(A, fill=1)
    r = randn(20)
    expected = M.setup(A)(r).detach()
    M_device = copy.deepcopy(M).to(device)
    z = M_device.setup(A.to(device))(r.to(device))
    assert z.device.type == device
    torch.testing.assert_close(z.detach().cpu(), expected, **LOOSE[F64])
    built = IncompleteFactor(A.to(device), fill=1)
    assert built.values.device.type == device
    torch.testing.assert_close(built.values.detach().cpu(), IncompleteFactor(A, fill=1).values
                               .detach(), **LOOSE[F64])


def test_incomplete_factor_gmres():
    A = _recirc()
    b = torch.ones(A.shape[0], dtype=F64)
    M = IncompleteFactor(A, kind="lu", fill=1)
    learned = GMRES(M=M, rtol=1e-8)(A, b)
    classical = GMRES(M=IncompleteLU(1), rtol=1e-8)(A, b)
    assert learned.converged and learned.iterations == classical.iterations


# ------------------------------------------------------------------ losses

def _dense_inverse_of_m(M, A, kind):
    """M^{-1} = L L^T or L U, dense, from M.factor(A)."""
    F = M.factor(A)
    if kind == "cholesky":
        L = F.to_dense()
        return L @ L.T
    F = F.to_dense()
    n = F.shape[0]
    return (torch.tril(F, -1) + torch.eye(n, dtype=F.dtype)) @ torch.triu(F)


def _loss_case(kind):
    if kind == "cholesky":
        A = _spd_matrix(11, 25)
    else:
        A = _lu_matrix(11, 25)
    M = IncompleteFactor(A, kind=kind, fill=1)
    with torch.no_grad():
        M.values.add_(0.1 * randn(M.values.numel(), seed=12))
    return A, M


@pytest.mark.parametrize("kind", ["cholesky", "lu"])
def test_losses_match_dense_formulas(kind):
    A, M = _loss_case(kind)
    n = A.shape[0]
    identity = torch.eye(n, dtype=F64)
    dense = A.to_dense()
    with torch.no_grad():
        inverse = _dense_inverse_of_m(M, A, kind)
        precond = torch.linalg.inv(inverse)
        sketched = torch.linalg.norm(inverse - dense) / torch.linalg.norm(dense)
        low = torch.linalg.norm((inverse - dense) @ torch.linalg.inv(dense)) / n ** 0.5
        inv = torch.linalg.norm(dense @ precond - identity) / n ** 0.5
        for c in (1.0, 441.0):
            B = c * A
            torch.testing.assert_close(sketched_loss(M, B, identity), sketched, rtol=1e-10, atol=0)
            torch.testing.assert_close(low_frequency_loss(M, B, identity), low, rtol=1e-10,
                                       atol=0)
            torch.testing.assert_close(inverse_loss(M, B, identity), inv, rtol=1e-10, atol=0)
        # A solver holding M, a Problem, and a 1-D X.
        solver = PCG(M=M) if kind == "cholesky" else GMRES(M=M)
        X = randn(n, 3, seed=4)
        for loss in (sketched_loss, low_frequency_loss, inverse_loss):
            torch.testing.assert_close(loss(solver, A, X), loss(M, A, X), rtol=1e-14, atol=0)
        x = X[:, 0]
        torch.testing.assert_close(sketched_loss(M, A, x),
                                   torch.linalg.norm((inverse - dense) @ x)
                                   / torch.linalg.norm(dense @ x), rtol=1e-10, atol=0)
        y = torch.linalg.solve(dense, x)
        torch.testing.assert_close(low_frequency_loss(M, A, x),
                                   torch.linalg.norm(inverse @ y - x) / torch.linalg.norm(x),
                                   rtol=1e-10, atol=0)
        torch.testing.assert_close(inverse_loss(M, A, x),
                                   torch.linalg.norm(dense @ precond @ x - x)
                                   / torch.linalg.norm(x), rtol=1e-10, atol=0)


def test_losses_of_the_classical_baselines():
    A = _spd_matrix(13, 20)
    identity = torch.eye(20, dtype=F64)
    L = IncompleteCholesky(1).factor(A).to_dense()
    dense = A.to_dense()
    expected = torch.linalg.norm(L @ L.T - dense) / torch.linalg.norm(dense)
    torch.testing.assert_close(sketched_loss(IncompleteCholesky(1), A, identity), expected,
                               rtol=1e-10, atol=0)
    p = poisson_2d(5, dtype=F64)
    X = p.random_rhs(3, seed=0)
    assert float(inverse_loss(IncompleteLU(1), p, X)) < float(inverse_loss(IncompleteLU(0), p, X))
    for loss in (sketched_loss, low_frequency_loss, inverse_loss):
        assert float(loss(PCG(M=IncompleteCholesky()), p, X)) > 0


def test_losses_need_setup_inverse_and_a_preconditioner():
    A = poisson_2d(4, dtype=F64).A
    X = randn(16, 2)
    lower = LowerFactor(A)
    for loss in (sketched_loss, low_frequency_loss):
        with pytest.raises(TypeError, match="inverse_loss"):
            loss(lower, A, X)
        with pytest.raises(TypeError, match="inverse_loss"):
            loss(PCG(M=lower), A, X)
    assert torch.isfinite(inverse_loss(lower, A, X))
    for loss in (sketched_loss, low_frequency_loss, inverse_loss):
        with pytest.raises(TypeError, match="model: expected a preconditioner"):
            loss(PCG(), A, X)
        with pytest.raises(TypeError, match="model: expected a preconditioner"):
            loss(torch.nn.Linear(2, 2), A, X)
        with pytest.raises(ValueError, match="X: expected a tensor of shape"):
            loss(IncompleteFactor(A), A, torch.ones(16, 2, 2, dtype=F64))
        with pytest.raises(TypeError, match="problem"):
            loss(IncompleteFactor(A), "A", X)


@pytest.mark.parametrize("loss", [sketched_loss, low_frequency_loss, inverse_loss],
                         ids=["sketched", "low_frequency", "inverse"])
@pytest.mark.parametrize("kind", ["cholesky", "lu"])
def test_loss_gradients_reach_the_values(loss, kind):
    A, M = _loss_case(kind)
    value = loss(M, A, randn(A.shape[0], 4, seed=1))
    value.backward()
    grad = M.values.grad
    assert grad is not None and bool(torch.isfinite(grad).all()) and float(grad.abs().max()) > 0
    # Also trains through a Trainer.
    model = PCG(M=M) if kind == "cholesky" else GMRES(M=M)
    trainer = Trainer(model, loss=loss, lr=1e-3, epochs=2, seed=0, progress=False).fit(Problem(A))
    assert all(np.isfinite(trainer.history_.loss))


def test_loss_gradcheck():
    A, M = _loss_case("lu")
    X = randn(A.shape[0], 2, seed=3)
    for loss in (sketched_loss, low_frequency_loss, inverse_loss):
        assert gradcheck(lambda values: loss(M, A, X), (M.values,))


def test_exact_solve_is_a_cached_dense_solve(monkeypatch):
    calls = []

    def counting(A, *args, **kwargs):
        calls.append(A)
        return ls.linalg.direct.splu(A, *args, **kwargs)
    monkeypatch.setattr(losses_module, "splu", counting)
    A = _lu_matrix(14, 20)
    B = randn(20, 3, seed=1)
    expected = torch.linalg.solve(A.to_dense(), B)
    torch.testing.assert_close(exact_solve(A, B), expected, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(exact_solve(A, B[:, 0]), expected[:, 0], rtol=1e-10, atol=1e-12)
    assert len(calls) == 1
    # Another CSRMatrix with the same values tensor: the same factorisation.
    exact_solve(A.with_values(A.values), B)
    assert len(calls) == 1
    with torch.no_grad():
        A.values.mul_(2.0)                                      # changed in place
    torch.testing.assert_close(exact_solve(A, B), expected / 2, rtol=1e-10, atol=1e-12)
    assert len(calls) == 2
    exact_solve(A, B)
    assert len(calls) == 2
    C = A.with_values(A.values.clone())                         # another values tensor
    exact_solve(C, B)
    assert len(calls) == 3
    # Detached and no gradient even where A's values require one.
    D = A.with_values(A.values.detach().clone().requires_grad_())
    assert not exact_solve(D, B).requires_grad
    assert len(calls) == 4
    # low_frequency_loss reuses the factorisation across calls (training steps).
    E = A.with_values(A.values.detach().clone())
    M = IncompleteFactor(E, kind="lu")
    for _ in range(3):
        low_frequency_loss(M, E, B)
    assert len(calls) == 5


def test_exact_solve_warnings_free_and_matches_with_float32():
    A = _lu_matrix(15, 20).to(torch.float32)
    B = randn(20, 2, seed=2, dtype=torch.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        x = exact_solve(A, B)
    assert x.dtype == torch.float32
    torch.testing.assert_close(x, torch.linalg.solve(A.to_dense(), B), rtol=1e-4, atol=1e-5)


def test_ic_of_poisson_1d_is_exact_for_every_fill():
    A = poisson_1d(10, dtype=F64).A
    expected = torch.linalg.cholesky(A.to_dense())
    for fill in (0, 1, 3):
        torch.testing.assert_close(incomplete_cholesky(A, fill).matrix.to_dense(), expected,
                                   **LOOSE[F64])


def test_ic_on_the_reference_fill_of_poisson():
    S = poisson_scipy(6)
    A = ls.CSRMatrix.from_scipy(S, dtype=F64)
    for fill in (0, 1):
        L = incomplete_cholesky(A, fill).matrix.to_dense().numpy()
        mask = np.tril(_reference_fill(S.toarray() != 0, fill))
        np.testing.assert_allclose(L, _dense_ic(S.toarray(), mask), rtol=1e-12, atol=1e-14)


def test_exact_solve_drops_its_factorisation_with_the_matrix():
    B = ls.CSRMatrix.from_scipy(_nonsymmetric_m_matrix(20, 0.1, 16), dtype=F64)
    before = len(cache_module._BY_VALUES)
    exact_solve(B, torch.ones(20, dtype=F64))
    assert len(cache_module._BY_VALUES) == before + 1
    del B
    gc.collect()
    assert len(cache_module._BY_VALUES) == before


def test_one_by_one_and_a_missing_diagonal():
    A = ls.CSRMatrix.from_dense(torch.tensor([[4.0]], dtype=F64))
    assert incomplete_cholesky(A, 2).matrix.values.tolist() == [2.0]
    assert incomplete_lu(A, 2).matrix.values.tolist() == [4.0]
    M = IncompleteFactor(A, fill=1)
    assert M.values.tolist() == [0.0]                           # log 1: the scaled matrix is 1
    torch.testing.assert_close(M.setup(A)(torch.ones(1, dtype=F64)).detach(),
                               torch.tensor([0.25], dtype=F64))
    # ILU of a row without its diagonal entry: the fill pattern stores it (a zero) and
    # the elimination makes the pivot.
    B = ls.CSRMatrix.from_dense(torch.tensor([[2.0, 1.0, 0.0], [1.0, 0.0, 1.0],
                                              [0.0, 1.0, 3.0]], dtype=F64))
    assert B.nnz == 6
    F = incomplete_lu(B).matrix
    assert F.nnz == 7
    mask = _mask_of(F)
    torch.testing.assert_close(F.to_dense(), torch.from_numpy(_dense_ilu(B.to_dense().numpy(),
                                                                         mask)), **LOOSE[F64])
    L, U = _split_lu(F)
    torch.testing.assert_close(L @ U, B.to_dense(), **LOOSE[F64])  # tridiagonal: exact


# ------------------------------------------------------------------ orderings

def _scattered_fem():
    """A P1 matrix whose unknowns are shuffled: a wide band RCM narrows."""
    from learnsolve.problems import fem_problem, l_shape, mesh_size
    p = fem_problem(l_shape(mesh_size(400, 3.0)), dtype=F64)
    perm = torch.from_numpy(np.random.default_rng(0).permutation(p.num_nodes))
    return ls.core.fill.permute(p.A, perm)


def test_permute_is_p_a_pt_and_differentiable():
    A = ls.CSRMatrix.from_scipy(sp.random_array((9, 9), density=0.3, rng=1, format="csr"),
                                dtype=F64)
    perm = torch.randperm(9)
    dense = A.to_dense()
    torch.testing.assert_close(ls.core.fill.permute(A, perm).to_dense(), dense[perm][:, perm])
    values = A.values.clone().requires_grad_()
    assert gradcheck(lambda v: ls.core.fill.permute(A.with_values(v), perm).values, (values,))
    for bad in (torch.tensor([0, 0, 1, 2, 3, 4, 5, 6, 7]), torch.arange(8), perm.int()):
        with pytest.raises(ValueError, match="perm: expected a permutation"):
            ls.core.fill.permute(A, bad)


def test_rcm_ordering_narrows_the_band_and_is_cached():
    A = _scattered_fem()
    perm = ls.core.fill.ordering(A.pattern, "rcm")
    assert ls.core.fill.ordering(A.pattern, "rcm") is perm
    assert torch.equal(perm.sort().values, torch.arange(A.shape[0]))
    B = ls.core.fill.permute(A, perm)

    def bandwidth(M):
        return int((M.row_indices() - M.col_indices).abs().max())
    assert bandwidth(B) < bandwidth(A) / 5
    assert ls.core.fill.ordering(A.pattern, None) is None
    with pytest.raises(ValueError, match="ordering: expected one of"):
        ls.core.fill.ordering(A.pattern, "amd")


@pytest.mark.parametrize("kind", ["cholesky", "lu"])
def test_an_ordering_factors_p_a_pt(kind):
    A = _scattered_fem()
    classical = (IncompleteCholesky if kind == "cholesky" else IncompleteLU)(0, ordering="rcm")
    factorization = classical.factorization(A)
    perm = factorization.permutation
    plain = (incomplete_cholesky if kind == "cholesky" else incomplete_lu)(
        ls.core.fill.permute(A, perm))
    torch.testing.assert_close(factorization.matrix.values, plain.matrix.values)
    r = randn(A.shape[0], 2, dtype=F64)
    expected = torch.empty_like(r)
    expected[perm] = plain.apply()(r[perm])
    torch.testing.assert_close(classical.setup(A)(r), expected)
    learned = IncompleteFactor(A, kind=kind, ordering="rcm")
    torch.testing.assert_close(learned.setup(A)(r), expected)
    torch.testing.assert_close(learned.setup_inverse(A)(learned.setup(A)(r)), r)
    restored = IncompleteFactor(A, kind=kind, ordering="rcm")
    restored.load_state_dict(learned.state_dict())
    assert torch.equal(restored.permutation, perm)
    with pytest.raises(ValueError, match="ordering: expected one of"):
        IncompleteFactor(A, kind=kind, ordering="natural")


def test_rcm_makes_ic0_of_a_scattered_mesh_stronger():
    A = _scattered_fem()
    b = randn(A.shape[0], dtype=F64)
    natural = PCG(M=IncompleteCholesky(), rtol=1e-8)(A, b).iterations
    rcm = PCG(M=IncompleteCholesky(ordering="rcm"), rtol=1e-8)(A, b).iterations
    assert rcm < natural, (rcm, natural)
