"""Poisson (paper eqs. 29, 32), grid diffusion, pyamg stencils: against scipy and pyamg."""
import numpy as np
import pytest
import scipy.sparse as sp
import torch
from pyamg.gallery import diffusion_stencil_2d, poisson, stencil_grid

import learnsolve as ls
from learnsolve.core.validation import check_csr_arrays
from learnsolve.problems import (JumpCoefficient, LognormalCoefficient, anisotropic_diffusion,
                                 diffusion_2d, grid_boundary, grid_coordinates, poisson_1d,
                                 poisson_2d, stencil_problem)


def laplacian_1d(n):
    return sp.diags_array([-1.0, 2.0, -1.0], offsets=[-1, 0, 1], shape=(n, n))


def assert_matrix_equal(A: ls.CSRMatrix, expected):
    check_csr_arrays(A.crow_indices, A.col_indices, A.values, A.shape)   # canonical
    assert A.shape == expected.shape
    np.testing.assert_array_equal(A.to_dense().double().cpu().numpy(), expected.toarray())


@pytest.mark.parametrize("n", [1, 2, 7, 30])
def test_poisson_1d_is_eq_29(n, dtype, device):
    p = poisson_1d(n, dtype=dtype, device=device)
    assert p.A.dtype == dtype and p.A.device.type == device
    assert_matrix_equal(p.A, laplacian_1d(n))
    assert_matrix_equal(p.A, poisson((n,)))
    assert p.A.nnz == 3 * n - 2
    np.testing.assert_allclose(p.coordinates[:, 0].cpu().numpy(), np.arange(1, n + 1) / (n + 1))
    assert p.boundary.tolist() == [i in (0, n - 1) for i in range(n)]


@pytest.mark.parametrize("nx, ny", [(1, 1), (4, 4), (3, 5), (6, 2), (1, 7)])
def test_poisson_2d_is_eq_32(nx, ny, dtype, device):
    p = poisson_2d(nx, ny, dtype=dtype, device=device)
    expected = sp.kron(laplacian_1d(nx), sp.eye_array(ny)) + sp.kron(sp.eye_array(nx),
                                                                    laplacian_1d(ny))
    assert_matrix_equal(p.A, expected)
    assert_matrix_equal(p.A, poisson((nx, ny)))       # pyamg: the same ordering
    xy = p.coordinates.cpu().double().numpy()
    # unknown i * ny + j sits at ((i + 1) / (nx + 1), (j + 1) / (ny + 1))
    k = np.arange(nx * ny)
    np.testing.assert_allclose(xy[:, 0], (k // ny + 1) / (nx + 1), rtol=1e-6)
    np.testing.assert_allclose(xy[:, 1], (k % ny + 1) / (ny + 1), rtol=1e-6)
    # next to the boundary exactly where a row sum is positive (a neighbour was eliminated)
    row_sum = expected.sum(axis=1)
    assert p.boundary.cpu().numpy().tolist() == (row_sum > 0).tolist()


def test_poisson_square_default_and_grid_helpers():
    assert torch.equal(poisson_2d(5).A.to_dense(), poisson_2d(5, 5).A.to_dense())
    assert grid_coordinates(2, 3).shape == (6, 2)
    assert grid_boundary(1).tolist() == [True]
    assert grid_boundary(3, 1).tolist() == [True, True, True]


@pytest.mark.parametrize("bad, error", [(0, ValueError), (-3, ValueError), (2.5, TypeError),
                                        (True, TypeError), ("4", TypeError)])
def test_poisson_bad_sizes(bad, error):
    with pytest.raises(error, match=r"n: expected an integer"):
        poisson_1d(bad)
    with pytest.raises(error, match=r"nx: expected an integer"):
        poisson_2d(bad, 3)
    with pytest.raises(error, match=r"ny: expected an integer"):
        poisson_2d(3, bad)
    with pytest.raises(error, match=r"nx: expected an integer"):
        diffusion_2d(bad)


# ---------------------------------------------------------------------------- diffusion
def reference_diffusion(nx, ny, k):
    """Row by row, from the definition: k evaluated at each edge midpoint (unit square)."""
    hx, hy = 1 / (nx + 1), 1 / (ny + 1)
    A = np.zeros((nx * ny, nx * ny))
    for i in range(nx):
        for j in range(ny):
            x, y = (i + 1) * hx, (j + 1) * hy
            row = i * ny + j
            for di, dj in ((1, 0), (-1, 0), (0, 1), (0, -1)):
                ke = k(x + di * hx / 2, y + dj * hy / 2)
                A[row, row] += ke
                a, b = i + di, j + dj
                if 0 <= a < nx and 0 <= b < ny:
                    A[row, a * ny + b] -= ke
    return A


@pytest.mark.parametrize("nx, ny", [(4, 4), (5, 3), (1, 6)])
def test_diffusion_matches_definition(nx, ny):
    def k(x, y):
        return 1.0 + x + 2 * y * y
    p = diffusion_2d(nx, ny, k, dtype=torch.float64)
    np.testing.assert_allclose(p.A.to_dense().numpy(), reference_diffusion(nx, ny, k),
                               rtol=1e-14, atol=1e-14)


def test_diffusion_constant_coefficient_is_scaled_poisson(dtype):
    A = diffusion_2d(5, 4, 3.0, dtype=dtype).A
    assert torch.equal(A.to_dense(), 3.0 * poisson_2d(5, 4, dtype=dtype).A.to_dense())


def test_diffusion_cell_coefficients():
    nx, ny = 4, 3
    cells = np.ones((nx + 1, ny + 1))
    cells[: (nx + 1) // 2] = 100.0                     # a jump along x
    A = diffusion_2d(nx, ny, cells, dtype=torch.float64).A.to_dense().numpy()

    def k(x, y):  # an edge on the interface gets the mean of the two cells
        return np.where(np.isclose(y * (ny + 1) % 1, 0.5) & np.isclose(x, 2 / (nx + 1)),
                        50.5, np.where(x < 2 / (nx + 1) + 1e-12, 100.0, 1.0))
    np.testing.assert_allclose(A, reference_diffusion(nx, ny, k), rtol=1e-14)


@pytest.mark.parametrize("coefficient", ["lognormal", "jump"])
def test_random_coefficients_spd_and_seeded(coefficient):
    p = diffusion_2d(12, 10, coefficient, seed=3, dtype=torch.float64)
    A = p.A.to_dense().numpy()
    np.testing.assert_array_equal(A, A.T)
    assert np.linalg.eigvalsh(A).min() > 0
    again = diffusion_2d(12, 10, coefficient, seed=3, dtype=torch.float64).A.to_dense().numpy()
    other = diffusion_2d(12, 10, coefficient, seed=4, dtype=torch.float64).A.to_dense().numpy()
    np.testing.assert_array_equal(A, again)
    assert not np.array_equal(A, other)
    assert p.A.nnz == poisson_2d(12, 10).A.nnz


def test_coefficient_fields():
    x, y = np.random.default_rng(0).random((2, 20000))
    k = LognormalCoefficient(1, sigma=0.5, correlation_length=0.2)(x, y)
    g = np.log(k) / 0.5
    assert abs(g.mean()) < 0.6 and 0.3 < g.std() < 2.0   # roughly a unit-variance field
    jump = JumpCoefficient(2, num_regions=5, contrast=1e4)
    values = jump(x, y)
    assert set(np.unique(values)) == {1.0, 1e4}
    near = np.argmin(((np.c_[x, y][:, None] - jump.centres[None]) ** 2).sum(-1), axis=1)
    np.testing.assert_array_equal(values, jump.values[near])   # Voronoi regions
    assert jump(0.5, 0.5).shape == ()


@pytest.mark.parametrize("coefficient, error, message", [
    (0.0, ValueError, r"coefficient: expected positive values"),
    (-1.0, ValueError, r"coefficient: expected positive values"),
    (lambda x, y: x - 0.5, ValueError, r"coefficient: expected positive values"),
    (lambda x, y: np.full_like(x, np.nan), ValueError, r"coefficient: expected finite values"),
    (np.ones((3, 3)), ValueError, r"coefficient: expected one value per grid cell"),
    ("gaussian", ValueError, r"coefficient: expected 'lognormal', 'jump'"),
    (object(), TypeError, r"coefficient: expected a number"),
])
def test_diffusion_bad_coefficient(coefficient, error, message):
    with pytest.raises(error, match=message):
        diffusion_2d(4, 4, coefficient)


def test_field_parameter_errors():
    with pytest.raises(ValueError, match=r"correlation_length: expected a positive"):
        LognormalCoefficient(0, correlation_length=0.0)
    with pytest.raises(ValueError, match=r"sigma: expected a finite number >= 0"):
        LognormalCoefficient(0, sigma=-1.0)
    with pytest.raises(ValueError, match=r"contrast: expected a positive"):
        JumpCoefficient(0, contrast=0.0)
    with pytest.raises(ValueError, match=r"num_regions: expected an integer >= 1"):
        JumpCoefficient(0, num_regions=0)


# ---------------------------------------------------------------------------- pyamg stencils
def test_stencil_problem_matches_pyamg():
    S = np.array([[-1.0, -2.0, 0.0], [-1.0, 8.0, -1.0], [0.0, -2.0, -1.0]])
    p = stencil_problem(S, (5, 4), dtype=torch.float64)
    assert_matrix_equal(p.A, sp.csr_array(stencil_grid(S, (5, 4))))
    assert p.coordinates.shape == (20, 2)
    p3 = stencil_problem(np.ones((3, 3, 3)), (2, 3, 2), dtype=torch.float64)
    assert p3.coordinates is None and p3.A.shape == (12, 12)
    with pytest.raises(ValueError, match=r"stencil: expected an array with odd sizes"):
        stencil_problem(np.ones((2, 3)), (4, 4))
    with pytest.raises(ValueError, match=r"one axis per grid axis"):
        stencil_problem(np.ones((3, 3)), (4,))


@pytest.mark.parametrize("kind", ["FE", "FD"])
def test_anisotropic_diffusion_matches_pyamg(kind):
    p = anisotropic_diffusion(6, 5, epsilon=0.01, theta=np.pi / 5, type=kind,
                              dtype=torch.float64)
    S = diffusion_stencil_2d(epsilon=0.01, theta=np.pi / 5, type=kind)
    assert_matrix_equal(p.A, sp.csr_array(stencil_grid(S, (6, 5))))
    A = p.A.to_dense().numpy()
    np.testing.assert_allclose(A, A.T, atol=1e-15)
    assert np.linalg.eigvalsh(A).min() > 0
    with pytest.raises(ValueError, match=r"epsilon: expected a positive anisotropy"):
        anisotropic_diffusion(4, epsilon=0.0)
    with pytest.raises(ValueError, match=r"type: expected 'FE' or 'FD'"):
        anisotropic_diffusion(4, type="FV")
