"""pyamg's gallery as problems: the example matrices it ships (offline) and its stencils.

pyamg's examples have their Dirichlet nodes removed already, the free
degrees of freedom first: for a scalar problem, unknown ``i`` is vertex ``i``
and the vertices after the last unknown are the Dirichlet nodes. Where that
holds (one unknown per vertex), the problem gets the coordinates of its
unknowns, and for 2D triangle meshes the whole mesh too.
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch

from ..core.csr import CSRMatrix
from .mesh import Mesh
from .poisson import grid_boundary, grid_coordinates
from ..core.validation import check_count, check_dtype
from .problem import Problem

__all__ = ["EXAMPLES", "load_example", "stencil_problem", "anisotropic_diffusion"]

#: The real-valued examples of ``pyamg.gallery.load_example`` (``helmholtz_2D`` is complex).
EXAMPLES = ("airfoil", "bar", "knot", "local_disc_galerkin_diffusion", "recirc_flow",
            "unit_cube", "unit_square")


def load_example(name: str, *, seed: int = 0, dtype: torch.dtype | None = None,
                 device=None) -> Problem:
    """An example matrix of pyamg's gallery (shipped with pyamg, no download).

    Right-hand sides are random (the examples' ``B`` are near-null-space
    modes, not right-hand sides; they are kept in ``info["B"]``).
    ``info["symmetric"]`` says whether the matrix is symmetric
    (``recirc_flow`` is not), ``info["singular"]`` whether its rows sum to zero,
    constants in its kernel (``unit_square`` is a pure Neumann problem: no
    Dirichlet node was removed).

    Examples
    --------
    >>> from learnsolve.problems import load_example
    >>> p = load_example("airfoil")
    >>> p.num_nodes, p.mesh.num_nodes, p.coordinates.shape[1]
    (260, 322, 2)
    """
    if name not in EXAMPLES:
        raise ValueError(f"name: expected one of {', '.join(EXAMPLES)}, got {name!r}"
                         + (" (complex-valued, not supported)" if name == "helmholtz_2D"
                            else ""))
    from pyamg.gallery import load_example as pyamg_load
    dtype = check_dtype(dtype)
    data = pyamg_load(name)
    S = sp.csr_array(data["A"])
    n = S.shape[0]
    vertices = np.asarray(data.get("vertices")) if "vertices" in data else None
    elements = np.asarray(data.get("elements")) if "elements" in data else None
    coordinates = mesh = boundary = None
    if vertices is not None and n <= vertices.shape[0]:
        coordinates = torch.from_numpy(vertices[:n].astype(np.float64))
        if vertices.shape[1] == 2 and elements is not None and elements.shape[1] == 3:
            dirichlet = np.arange(vertices.shape[0]) >= n
            mesh = Mesh(vertices, elements.astype(np.int64), boundary=dirichlet, name=name)
            boundary = np.zeros(n, dtype=bool)
            tri = mesh.triangles
            touches = dirichlet[tri].any(axis=1)
            boundary[tri[touches][tri[touches] < n]] = True
            boundary = torch.from_numpy(boundary)
    scale = abs(S).max()
    symmetric = abs(S - S.T).max() <= 1e-12 * scale
    singular = np.abs(S.sum(axis=1)).max() <= 1e-12 * scale
    return Problem(CSRMatrix.from_scipy(S, dtype=dtype, device=device),
                   coordinates=coordinates, boundary=boundary, mesh=mesh,
                   name=f"pyamg example {name}", seed=seed,
                   info={"kind": "pyamg", "example": name, "symmetric": bool(symmetric),
                         "singular": bool(singular),
                         "B": np.asarray(data["B"])})


def stencil_problem(stencil, grid, *, seed: int = 0, name: str | None = None,
                    dtype: torch.dtype | None = None, device=None) -> Problem:
    """The matrix of a constant stencil on a grid, as ``pyamg.gallery.stencil_grid``.

    Zero Dirichlet boundary (the stencil is cut at the edges of the grid);
    axis ``a`` of ``stencil`` couples along axis ``a`` of ``grid``, and node
    ``(i, j)`` is unknown ``i * ny + j`` (the ordering of :func:`poisson_2d`).
    1D and 2D grids get coordinates on the unit interval / square.

    Examples
    --------
    >>> import numpy as np
    >>> from learnsolve.problems import stencil_problem, poisson_2d
    >>> S = np.array([[0, -1, 0], [-1, 4, -1], [0, -1, 0]])
    >>> import torch
    >>> torch.equal(stencil_problem(S, (4, 3)).A.to_dense(), poisson_2d(4, 3).A.to_dense())
    True
    """
    from pyamg.gallery import stencil_grid
    stencil = np.asarray(stencil, dtype=np.float64)
    grid = tuple(check_count(g, "grid") for g in grid)
    if stencil.ndim != len(grid) or any(s % 2 == 0 for s in stencil.shape):
        raise ValueError(f"stencil: expected an array with odd sizes and one axis per grid "
                         f"axis ({len(grid)}), got shape {stencil.shape}")
    dtype = check_dtype(dtype)
    S = sp.csr_array(stencil_grid(stencil, grid, format="csr"))
    coordinates = boundary = None
    if len(grid) in (1, 2):
        coordinates = grid_coordinates(*grid, dtype=dtype)
        boundary = grid_boundary(*grid)
    return Problem(CSRMatrix.from_scipy(S, dtype=dtype, device=device),
                   coordinates=coordinates, boundary=boundary,
                   name=name or f"stencil on a {' x '.join(map(str, grid))} grid", seed=seed,
                   info={"kind": "stencil", "grid": grid, "stencil": stencil})


def anisotropic_diffusion(nx: int, ny: int | None = None, *, epsilon: float = 0.01,
                          theta: float = 0.0, type: str = "FE", seed: int = 0,
                          dtype: torch.dtype | None = None, device=None) -> Problem:
    """Rotated anisotropic diffusion (``pyamg.gallery.diffusion_stencil_2d``) on a grid.

    The operator is ``-div(Q diag(1, epsilon) Q^T grad u)`` with ``Q`` the
    rotation by ``theta``, discretised by bilinear elements (``"FE"``) or
    finite differences (``"FD"``); symmetric positive definite.

    Examples
    --------
    >>> from learnsolve.problems import anisotropic_diffusion
    >>> anisotropic_diffusion(5, epsilon=0.1, theta=0.5).A.nnz
    169
    """
    from pyamg.gallery import diffusion_stencil_2d
    nx = check_count(nx, "nx")
    ny = nx if ny is None else check_count(ny, "ny")
    if not epsilon > 0:
        raise ValueError(f"epsilon: expected a positive anisotropy, got {epsilon!r}")
    if type not in ("FE", "FD"):
        raise ValueError(f"type: expected 'FE' or 'FD', got {type!r}")
    stencil = diffusion_stencil_2d(epsilon=epsilon, theta=theta, type=type)
    p = stencil_problem(stencil, (nx, ny), seed=seed, dtype=dtype, device=device,
                        name=f"anisotropic diffusion (eps {epsilon:g}, theta {theta:g}), "
                             f"{nx} x {ny}")
    p.info.update(epsilon=epsilon, theta=theta, type=type)
    return p
