"""Convection-diffusion on a grid: a nonsymmetric M-matrix, the test problem of ILU and GMRES."""
from __future__ import annotations

import numbers

import numpy as np
import torch

from .diffusion import grid_problem
from ..core.validation import check_count, check_dtype
from .problem import Problem

__all__ = ["convection_diffusion_2d", "recirculating_wind"]


def recirculating_wind(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The recirculating flow of Elman, Silvester and Wathen (*Finite Elements and
    Fast Iterative Solvers*, example 3.1.4) mapped to the unit square:
    ``w = (2 Y (1 - X^2), -2 X (1 - Y^2))`` with ``X = 2x - 1``, ``Y = 2y - 1``."""
    X, Y = 2 * x - 1, 2 * y - 1
    return 2 * Y * (1 - X ** 2), -2 * X * (1 - Y ** 2)


def convection_diffusion_2d(nx: int, ny: int | None = None, *, epsilon: float = 0.01,
                            wind="recirculating", b=None, seed: int = 0,
                            dtype: torch.dtype | None = None, device=None) -> Problem:
    """The upwind finite-difference matrix of ``-epsilon Δu + w·∇u`` on the unit square.

    An ``nx x ny`` interior grid (``h = 1/(nx+1)``, ``1/(ny+1)``), zero Dirichlet
    boundary; the diffusion by the 5-point stencil, the convection by first-order
    upwind differences (the neighbour the wind comes from), all scaled by ``hx
    hy`` (no ``1/h^2``, as the other finite-difference matrices). It is a
    nonsymmetric M-matrix, weakly diagonally dominant, so ILU(k) exists; the
    smaller ``epsilon`` (the larger the mesh Péclet number ``|w| h / (2
    epsilon)``), the less symmetric it is.

    Parameters
    ----------
    nx, ny : int
        Interior grid points in x and y (``ny`` defaults to ``nx``).
    epsilon : float
        The diffusion, positive.
    wind : "recirculating", (wx, wy) or callable
        :func:`recirculating_wind`, a constant wind, or ``w(x, y) -> (wx, wy)``
        on arrays of coordinates.
    b, seed, dtype, device
        As :func:`~learnsolve.problems.diffusion_2d`.

    Examples
    --------
    >>> import torch
    >>> from learnsolve.problems import convection_diffusion_2d
    >>> A = convection_diffusion_2d(8, epsilon=0.01, dtype=torch.float64).A
    >>> D = A.to_dense()
    >>> bool((D - D.T).abs().max() > 0), bool((D.sum(1) >= -1e-12).all())
    (True, True)
    """
    nx = check_count(nx, "nx")
    ny = nx if ny is None else check_count(ny, "ny")
    dtype = check_dtype(dtype)
    if isinstance(epsilon, bool) or not isinstance(epsilon, numbers.Real) or \
            not 0 < epsilon < float("inf"):
        raise ValueError(f"epsilon: expected a positive number, got {epsilon!r}")
    hx, hy = 1.0 / (nx + 1), 1.0 / (ny + 1)
    x, y = np.meshgrid(hx * np.arange(1, nx + 1), hy * np.arange(1, ny + 1), indexing="ij")
    if isinstance(wind, str):
        if wind != "recirculating":
            raise ValueError(f"wind: expected 'recirculating', (wx, wy) or a callable, got "
                             f"{wind!r}")
        wx, wy = recirculating_wind(x, y)
    elif callable(wind):
        wx, wy = (np.broadcast_to(np.asarray(w, dtype=np.float64), x.shape)
                  for w in wind(x, y))
    else:
        try:
            wx, wy = (np.full(x.shape, float(w)) for w in wind)
        except (TypeError, ValueError) as error:
            raise TypeError(f"wind: expected 'recirculating', a pair of numbers or a callable, "
                            f"got {wind!r}") from error
    if not (np.isfinite(wx).all() and np.isfinite(wy).all()):
        raise ValueError("wind: expected finite values")
    index = np.arange(nx * ny).reshape(nx, ny)
    ex, ey = epsilon / hx ** 2, epsilon / hy ** 2
    # Each neighbour: (rows, cols, coupling); the wind from the west adds to the
    # west neighbour's coupling, the wind from the east to the east one's.
    west = (index[1:], index[:-1], ex + np.maximum(wx[1:], 0) / hx)
    east = (index[:-1], index[1:], ex + np.maximum(-wx[:-1], 0) / hx)
    south = (index[:, 1:], index[:, :-1], ey + np.maximum(wy[:, 1:], 0) / hy)
    north = (index[:, :-1], index[:, 1:], ey + np.maximum(-wy[:, :-1], 0) / hy)
    diagonal = 2 * ex + 2 * ey + np.abs(wx) / hx + np.abs(wy) / hy
    rows = [index.ravel()] + [r.ravel() for r, _, _ in (west, east, south, north)]
    cols = [index.ravel()] + [c.ravel() for _, c, _ in (west, east, south, north)]
    # Scaled by hx hy: no 1/h^2, as the other finite-difference matrices.
    vals = [hx * hy * diagonal.ravel()] + [-hx * hy * v.ravel()
                                           for _, _, v in (west, east, south, north)]
    return grid_problem(rows, cols, vals, nx, ny, b=b, seed=seed, dtype=dtype, device=device,
                        name=f"2D convection-diffusion, {nx} x {ny}, epsilon {epsilon:g}",
                        info={"kind": "convection-diffusion", "grid": (nx, ny),
                              "epsilon": epsilon, "symmetric": False, "h": (hx, hy)})
