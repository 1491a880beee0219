"""convection_diffusion_2d: the upwind matrix against its stencil, an M-matrix, errors."""
import numpy as np
import pytest
import torch

from learnsolve.problems import convection_diffusion_2d, poisson_2d, recirculating_wind
from learnsolve.solvers import GMRES, IncompleteLU


def test_without_wind_it_is_epsilon_times_poisson():
    A = convection_diffusion_2d(5, 4, epsilon=0.3, wind=(0.0, 0.0), dtype=torch.float64).A
    h2 = (1 / 6) * (1 / 5)
    P = poisson_2d(5, 4, dtype=torch.float64).A.to_dense()
    # -eps (u_E - 2u + u_W) / hx^2 - eps (...) / hy^2, times hx hy
    hx, hy = 1 / 6, 1 / 5
    expected = torch.zeros(20, 20, dtype=torch.float64)
    index = np.arange(20).reshape(5, 4)
    for i in range(5):
        for j in range(4):
            k = index[i, j]
            expected[k, k] = 0.3 * h2 * (2 / hx ** 2 + 2 / hy ** 2)
            for di, dj, h in ((1, 0, hx), (-1, 0, hx), (0, 1, hy), (0, -1, hy)):
                if 0 <= i + di < 5 and 0 <= j + dj < 4:
                    expected[k, index[i + di, j + dj]] = -0.3 * h2 / h ** 2
    torch.testing.assert_close(A.to_dense(), expected)
    assert torch.equal(P != 0, A.to_dense() != 0)


def test_constant_wind_is_upwinded():
    A = convection_diffusion_2d(4, epsilon=0.1, wind=(2.0, -1.0), dtype=torch.float64)
    D = A.A.to_dense()
    h = 1 / 5
    k, west, east, south, north = 5, 1, 9, 4, 6   # node (1, 1) of a 4 x 4 grid
    assert D[k, west] == pytest.approx(-(0.1 + 2.0 * h))        # the wind blows from the west
    assert D[k, east] == pytest.approx(-0.1)
    assert D[k, north] == pytest.approx(-(0.1 + 1.0 * h))       # and from the north (wy < 0)
    assert D[k, south] == pytest.approx(-0.1)
    assert D[k, k] == pytest.approx(0.4 + 3.0 * h)


def test_recirculating_problem_is_a_nonsymmetric_m_matrix():
    p = convection_diffusion_2d(12, epsilon=0.01, dtype=torch.float64)
    D = p.A.to_dense()
    off = D - torch.diag(torch.diag(D))
    assert (off <= 0).all() and (torch.diag(D) > 0).all()
    assert (D.sum(dim=1) >= -1e-14).all()                      # weakly diagonally dominant
    assert (D - D.T).abs().max() > 1e-3
    x, y = np.meshgrid(np.linspace(0, 1, 5), np.linspace(0, 1, 5))
    wx, wy = recirculating_wind(x, y)
    # no flow through the walls: wx = 0 at x = 0, 1 and wy = 0 at y = 0, 1
    np.testing.assert_allclose(wx[:, [0, -1]], 0.0, atol=1e-15)
    np.testing.assert_allclose(wy[[0, -1]], 0.0, atol=1e-15)
    assert np.abs(wx).max() > 0.5 and np.abs(wy).max() > 0.5
    b = p.random_rhs(seed=0)
    assert GMRES(M=IncompleteLU(), rtol=1e-8)(p.A, b).converged


def test_errors_name_the_argument():
    with pytest.raises(ValueError, match="epsilon"):
        convection_diffusion_2d(4, epsilon=0.0)
    with pytest.raises(ValueError, match="wind"):
        convection_diffusion_2d(4, wind="swirl")
    with pytest.raises(TypeError, match="wind"):
        convection_diffusion_2d(4, wind=object())
    with pytest.raises(ValueError, match="wind: expected finite"):
        convection_diffusion_2d(4, wind=(np.inf, 0.0))
