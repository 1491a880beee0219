"""Variable-coefficient diffusion ``-div(k grad u) = f`` on a grid, and random coefficient fields.

The grid discretisation is the vertex-centred finite-volume (5-point) scheme
with the coefficient on the edges of the grid: row ``(i, j)`` is
``sum_e k_e u_(i,j) - sum_e k_e u_(neighbour across e)`` over the four edges
``e`` at the node. With ``k = 1`` it is exactly eq. 32 (:func:`poisson_2d`):
same scaling (no ``1 / h^2``), same ordering, same Dirichlet elimination. The
matrix is symmetric, and positive definite for positive ``k``.

The random fields (:class:`LognormalCoefficient`, :class:`JumpCoefficient`)
are seeded callables ``k(x, y)``: the same field can be sampled on a grid
(at edge midpoints) or on a mesh (at triangle centroids, :func:`fem_problem`).
"""
from __future__ import annotations

import math
import numbers

import numpy as np
import torch

from ..core.construct import from_coo
from .fem import evaluate, _check_positive
from .poisson import grid_boundary, grid_coordinates
from ..core.validation import check_count, check_dtype
from .problem import Problem

__all__ = ["diffusion_2d", "edge_coefficients", "LognormalCoefficient", "JumpCoefficient",
           "lognormal_coefficient", "jump_coefficient"]

_CHUNK = 1 << 16  # points per block when evaluating a field (bounds the temporaries)


class LognormalCoefficient:
    """A log-normal random field ``k(x, y) = exp(mean + sigma g(x, y))``.

    ``g`` is a stationary Gaussian field of unit variance with covariance
    ``exp(-|x - y|^2 / (2 l^2))`` (``l = correlation_length``), approximated by
    ``num_modes`` random Fourier features ``sqrt(2 / M) sum cos(w_m . x + p_m)``,
    ``w_m ~ N(0, I / l^2)``, ``p_m ~ U(0, 2 pi)``, drawn from ``seed``.

    Examples
    --------
    >>> import numpy as np
    >>> from learnsolve.problems import LognormalCoefficient
    >>> k = LognormalCoefficient(seed=0, sigma=1.0)
    >>> x = np.linspace(0, 1, 5)
    >>> bool((k(x, x) > 0).all()), bool(np.array_equal(k(x, x), LognormalCoefficient(0)(x, x)))
    (True, True)
    """

    def __init__(self, seed: int = 0, *, sigma: float = 1.0, correlation_length: float = 0.1,
                 mean: float = 0.0, num_modes: int = 64):
        if not (sigma >= 0 and math.isfinite(sigma)):
            raise ValueError(f"sigma: expected a finite number >= 0, got {sigma!r}")
        if not (correlation_length > 0 and math.isfinite(correlation_length)):
            raise ValueError(f"correlation_length: expected a positive number, got "
                             f"{correlation_length!r}")
        self.seed, self.sigma, self.mean = seed, float(sigma), float(mean)
        self.correlation_length = float(correlation_length)
        self.num_modes = check_count(num_modes, "num_modes")
        rng = np.random.default_rng(seed)
        self._w = rng.standard_normal((2, self.num_modes)) / self.correlation_length
        self._phase = rng.uniform(0.0, 2 * np.pi, self.num_modes)

    def __call__(self, x, y) -> np.ndarray:
        x, y = np.broadcast_arrays(np.asarray(x, np.float64), np.asarray(y, np.float64))
        xy = np.stack([x.ravel(), y.ravel()], axis=1)
        g = np.empty(xy.shape[0])
        scale = math.sqrt(2.0 / self.num_modes)
        for s in range(0, xy.shape[0], _CHUNK):
            g[s:s + _CHUNK] = scale * np.cos(xy[s:s + _CHUNK] @ self._w + self._phase).sum(1)
        return np.exp(self.mean + self.sigma * g).reshape(x.shape)

    def __repr__(self) -> str:
        return (f"LognormalCoefficient(seed={self.seed}, sigma={self.sigma}, "
                f"correlation_length={self.correlation_length}, mean={self.mean})")


class JumpCoefficient:
    """A piecewise-constant field jumping between regions: 1 or ``contrast`` on each cell of
    the Voronoi diagram of ``num_regions`` random centres in ``bounds``.

    Both values occur when ``num_regions >= 2``.

    Examples
    --------
    >>> import numpy as np
    >>> from learnsolve.problems import JumpCoefficient
    >>> k = JumpCoefficient(seed=0, num_regions=4, contrast=1e3)
    >>> sorted(set(k(*np.random.default_rng(0).random((2, 1000))).tolist()))
    [1.0, 1000.0]
    """

    def __init__(self, seed: int = 0, *, num_regions: int = 8, contrast: float = 100.0,
                 bounds=((0.0, 1.0), (0.0, 1.0))):
        self.seed = seed
        self.num_regions = check_count(num_regions, "num_regions")
        if not (contrast > 0 and math.isfinite(contrast)):
            raise ValueError(f"contrast: expected a positive number, got {contrast!r}")
        self.contrast = float(contrast)
        (x0, x1), (y0, y1) = bounds
        self.bounds = ((float(x0), float(x1)), (float(y0), float(y1)))
        rng = np.random.default_rng(seed)
        self.centres = np.c_[rng.uniform(x0, x1, num_regions), rng.uniform(y0, y1, num_regions)]
        high = rng.random(num_regions) < 0.5
        if num_regions >= 2:
            high[:2] = [False, True]
            high = rng.permutation(high)
        self.values = np.where(high, self.contrast, 1.0)

    def __call__(self, x, y) -> np.ndarray:
        x, y = np.broadcast_arrays(np.asarray(x, np.float64), np.asarray(y, np.float64))
        xy = np.stack([x.ravel(), y.ravel()], axis=1)
        region = np.empty(xy.shape[0], dtype=np.int64)
        for s in range(0, xy.shape[0], _CHUNK):
            d = ((xy[s:s + _CHUNK, None, :] - self.centres[None]) ** 2).sum(-1)
            region[s:s + _CHUNK] = d.argmin(1)
        return self.values[region].reshape(x.shape)

    def __repr__(self) -> str:
        return (f"JumpCoefficient(seed={self.seed}, num_regions={self.num_regions}, "
                f"contrast={self.contrast})")


def lognormal_coefficient(seed: int = 0, **kwargs) -> LognormalCoefficient:
    """Shorthand for :class:`LognormalCoefficient`."""
    return LognormalCoefficient(seed, **kwargs)


def jump_coefficient(seed: int = 0, **kwargs) -> JumpCoefficient:
    """Shorthand for :class:`JumpCoefficient`."""
    return JumpCoefficient(seed, **kwargs)


def edge_coefficients(nx: int, ny: int, coefficient) -> tuple[np.ndarray, np.ndarray]:
    """The coefficient on the x-edges ``(nx + 1, ny)`` and y-edges ``(nx, ny + 1)`` of the grid.

    x-edge ``(i, j)`` joins grid nodes ``(i, j + 1)`` and ``(i + 1, j + 1)`` of the
    full grid (boundary included, ``0..nx + 1``); y-edge ``(i, j)`` joins
    ``(i + 1, j)`` and ``(i + 1, j + 1)``. ``coefficient`` is a number, a callable
    ``k(x, y)`` on the unit square (evaluated at the edge midpoints), or an
    array ``(nx + 1, ny + 1)`` of values on the grid cells (an edge gets the mean
    of the two cells beside it).
    """
    if isinstance(coefficient, (np.ndarray, torch.Tensor, list, tuple)):
        c = np.asarray(coefficient.detach().cpu() if isinstance(coefficient, torch.Tensor)
                       else coefficient, dtype=np.float64)
        if c.shape != (nx + 1, ny + 1):
            raise ValueError(f"coefficient: expected one value per grid cell, shape "
                             f"{(nx + 1, ny + 1)}, got {c.shape}")
        _check_positive(c, "coefficient")
        return 0.5 * (c[:, :-1] + c[:, 1:]), 0.5 * (c[:-1, :] + c[1:, :])
    hx, hy = 1.0 / (nx + 1), 1.0 / (ny + 1)
    X, Y = np.meshgrid((np.arange(nx + 1) + 0.5) * hx, np.arange(1, ny + 1) * hy, indexing="ij")
    kx = evaluate(coefficient, X, Y, "coefficient")
    X, Y = np.meshgrid(np.arange(1, nx + 1) * hx, (np.arange(ny + 1) + 0.5) * hy, indexing="ij")
    ky = evaluate(coefficient, X, Y, "coefficient")
    return _check_positive(kx, "coefficient"), _check_positive(ky, "coefficient")


def diffusion_2d(nx: int, ny: int | None = None, coefficient=1.0, *, b=None, seed: int = 0,
                 dtype: torch.dtype | None = None, device=None) -> Problem:
    """The 5-point finite-volume matrix of ``-div(k grad u)`` on an ``nx x ny`` interior grid.

    Parameters
    ----------
    nx, ny : int
        Interior grid points in x and y (``ny`` defaults to ``nx``).
    coefficient : number, callable k(x, y), array (nx + 1, ny + 1), or "lognormal" / "jump"
        The diffusion coefficient (positive): see :func:`edge_coefficients`.
        ``"lognormal"`` and ``"jump"`` draw a :class:`LognormalCoefficient` /
        :class:`JumpCoefficient` with ``seed``.
    b : Tensor, optional
        A fixed right-hand side (default: random ones).
    seed : int
        Seed of the random coefficient and of the random right-hand sides.

    Examples
    --------
    >>> import torch
    >>> from learnsolve.problems import diffusion_2d, poisson_2d
    >>> torch.equal(diffusion_2d(4, 3).A.to_dense(), poisson_2d(4, 3).A.to_dense())
    True
    >>> p = diffusion_2d(8, coefficient="jump", seed=1)
    >>> bool(torch.allclose(p.A.to_dense(), p.A.to_dense().T))
    True
    """
    nx = check_count(nx, "nx")
    ny = nx if ny is None else check_count(ny, "ny")
    dtype = check_dtype(dtype)
    if isinstance(coefficient, str):
        makers = {"lognormal": LognormalCoefficient, "jump": JumpCoefficient}
        if coefficient not in makers:
            raise ValueError(f"coefficient: expected 'lognormal', 'jump', a number, a callable "
                             f"or an array, got {coefficient!r}")
        coefficient = makers[coefficient](seed)
    elif not (isinstance(coefficient, numbers.Real) or callable(coefficient) or
              isinstance(coefficient, (np.ndarray, torch.Tensor, list, tuple))):
        raise TypeError(f"coefficient: expected a number, a callable, an array or a name, got "
                        f"{type(coefficient).__name__}")
    kx, ky = edge_coefficients(nx, ny, coefficient)
    index = np.arange(nx * ny).reshape(nx, ny)
    diag = kx[:-1] + kx[1:] + ky[:, :-1] + ky[:, 1:]
    rows = [index.ravel(), index[:-1].ravel(), index[1:].ravel(),
            index[:, :-1].ravel(), index[:, 1:].ravel()]
    cols = [index.ravel(), index[1:].ravel(), index[:-1].ravel(),
            index[:, 1:].ravel(), index[:, :-1].ravel()]
    vals = [diag.ravel(), -kx[1:-1].ravel(), -kx[1:-1].ravel(),
            -ky[:, 1:-1].ravel(), -ky[:, 1:-1].ravel()]
    return grid_problem(rows, cols, vals, nx, ny, b=b, seed=seed, dtype=dtype, device=device,
                        name=f"2D diffusion, {nx} x {ny}",
                        info={"kind": "diffusion", "grid": (nx, ny), "coefficient": coefficient,
                              "h": (1.0 / (nx + 1), 1.0 / (ny + 1))})


def grid_problem(rows, cols, vals, nx: int, ny: int, *, b, seed: int, dtype: torch.dtype,
                 device, name: str, info: dict) -> Problem:
    """The Problem of a matrix on an ``nx x ny`` interior grid given as lists of COO
    arrays (duplicates summed), with the grid's coordinates and boundary flags."""
    A = from_coo(torch.from_numpy(np.concatenate(rows)), torch.from_numpy(np.concatenate(cols)),
                 torch.from_numpy(np.concatenate(vals)).to(dtype), (nx * ny, nx * ny))
    return Problem(A if device is None else A.to(device), b=b,
                   coordinates=grid_coordinates(nx, ny, dtype=dtype).to(device),
                   boundary=grid_boundary(nx, ny).to(device), name=name, seed=seed, info=info)
