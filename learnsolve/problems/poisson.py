"""The finite-difference Poisson problems of the paper: eq. 29 (1D) and eq. 32 (2D).

Scaling: as in the paper, the matrices carry no ``1 / h^2`` factor. Eq. 29 is
the 1D Laplacian with Dirichlet boundary on ``(0, N + 1)``, grid spacing 1
("the domain is selected to cancel any constant scaling of the matrix"); it is
``h^2`` times the Laplacian on ``(0, 1)`` with ``h = 1 / (N + 1)``. Eq. 32 is
likewise the 5-point Laplacian on ``(0, Nx + 1) x (0, Ny + 1)`` with unit
spacing. The Dirichlet nodes are eliminated: the unknowns are the interior
grid points, node ``(i, j)`` (``i`` along x) being unknown ``i * ny + j``.

Coordinates are given on the unit interval / square, ``x_i = (i + 1) / (nx + 1)``,
``y_j = (j + 1) / (ny + 1)``, for plotting, partitioning and coefficient fields.
"""
from __future__ import annotations

import torch

from ..core.construct import diags, eye, kron
from ..core.validation import check_count, check_dtype
from .problem import Problem

__all__ = ["poisson_1d", "poisson_2d", "grid_coordinates", "grid_boundary"]


def grid_coordinates(nx: int, ny: int | None = None, *, dtype=torch.float64) -> torch.Tensor:
    """Coordinates of the interior points of a grid on the unit interval or square.

    Shape ``(nx, 1)`` for 1D (``ny`` None), ``(nx * ny, 2)`` for 2D, ordered as
    the unknowns (``i * ny + j``).

    Examples
    --------
    >>> from learnsolve.problems import grid_coordinates
    >>> grid_coordinates(3).flatten().tolist()
    [0.25, 0.5, 0.75]
    """
    x = torch.arange(1, nx + 1, dtype=torch.float64) / (nx + 1)
    if ny is None:
        return x[:, None].to(dtype)
    y = torch.arange(1, ny + 1, dtype=torch.float64) / (ny + 1)
    X, Y = torch.meshgrid(x, y, indexing="ij")
    return torch.stack([X.reshape(-1), Y.reshape(-1)], dim=1).to(dtype)


def grid_boundary(nx: int, ny: int | None = None) -> torch.Tensor:
    """The unknowns of a grid that touch the Dirichlet boundary (first or last in a direction).

    Examples
    --------
    >>> from learnsolve.problems import grid_boundary
    >>> grid_boundary(3, 3).view(3, 3).int().tolist()
    [[1, 1, 1], [1, 0, 1], [1, 1, 1]]
    """
    def edge(m):
        e = torch.zeros(m, dtype=torch.bool)
        e[0] = e[-1] = True
        return e
    if ny is None:
        return edge(nx)
    return (edge(nx)[:, None] | edge(ny)[None, :]).reshape(-1)


def _laplacian_1d(n: int, dtype, device):
    return diags([-1.0, 2.0, -1.0], [-1, 0, 1], shape=(n, n), dtype=dtype, device=device)


def poisson_1d(n: int, *, b=None, seed: int = 0, dtype: torch.dtype | None = None,
               device=None) -> Problem:
    """The matrix ``A_N = tridiag(-1, 2, -1)`` of paper eq. 29 (``N = n`` interior points).

    Parameters
    ----------
    n : int, >= 1
        Number of unknowns.
    b : Tensor (n,) or (n, k), optional
        A fixed right-hand side; by default random ones are drawn (see
        :meth:`Problem.rhs`).
    seed : int
        Seed of the random right-hand sides.

    Examples
    --------
    >>> from learnsolve.problems import poisson_1d
    >>> poisson_1d(3).A.to_dense()
    tensor([[ 2., -1.,  0.],
            [-1.,  2., -1.],
            [ 0., -1.,  2.]])
    """
    n = check_count(n, "n")
    dtype = check_dtype(dtype)
    return Problem(_laplacian_1d(n, dtype, device), b=b,
                   coordinates=grid_coordinates(n, dtype=dtype).to(device),
                   boundary=grid_boundary(n).to(device), name=f"1D Poisson, N = {n}",
                   seed=seed, info={"kind": "poisson", "grid": (n,), "h": 1.0 / (n + 1)})


def poisson_2d(nx: int, ny: int | None = None, *, b=None, seed: int = 0,
               dtype: torch.dtype | None = None, device=None) -> Problem:
    """``A = A_nx (x) I_ny + I_nx (x) A_ny`` of paper eq. 32: the 5-point Laplacian.

    Built with :func:`learnsolve.kron` from eq. 29. ``ny`` defaults to ``nx``.

    Examples
    --------
    >>> from learnsolve.problems import poisson_2d
    >>> p = poisson_2d(3, 2)
    >>> p.A.shape, p.A.nnz, p.A.diagonal().tolist()[:2]
    ((6, 6), 20, [4.0, 4.0])
    """
    nx = check_count(nx, "nx")
    ny = nx if ny is None else check_count(ny, "ny")
    dtype = check_dtype(dtype)
    Ax, Ay = _laplacian_1d(nx, dtype, device), _laplacian_1d(ny, dtype, device)
    A = kron(Ax, eye(ny, dtype=dtype, device=device)) + kron(eye(nx, dtype=dtype, device=device),
                                                             Ay)
    return Problem(A, b=b, coordinates=grid_coordinates(nx, ny, dtype=dtype).to(device),
                   boundary=grid_boundary(nx, ny).to(device),
                   name=f"2D Poisson, {nx} x {ny}", seed=seed,
                   info={"kind": "poisson", "grid": (nx, ny),
                         "h": (1.0 / (nx + 1), 1.0 / (ny + 1))})
