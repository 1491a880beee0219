"""Linear (P1) finite elements for ``-div(k grad u) = f`` on a triangle mesh.

Everything is vectorised over the elements: the element stiffness matrices
of all triangles are computed with a few batched numpy operations, written as
coordinates and summed into a CSR matrix (duplicates summed); there is no
Python loop over elements or nodes.

Dirichlet nodes are eliminated: the system is over the free nodes only
(``mesh.free``, in increasing mesh index), so the matrix is symmetric positive
definite. A non-zero Dirichlet value ``g`` moves to the right-hand side,
``b = F_free - K_free,boundary g``.
"""
from __future__ import annotations

import math
import numbers
from typing import Callable

import numpy as np
import scipy.sparse as sp
import torch

from ..core.csr import CSRMatrix
from .mesh import Mesh
from ..core.validation import check_dtype
from .problem import Problem, as_tensor

__all__ = ["element_coefficient", "stiffness_matrix", "load_vector", "lumped_mass",
           "fem_problem", "discretisation_error"]

Coefficient = float | np.ndarray | Callable[[np.ndarray, np.ndarray], np.ndarray]


def _check_mesh(mesh) -> Mesh:
    if not isinstance(mesh, Mesh):
        raise TypeError(f"mesh: expected a learnsolve.problems.Mesh, got {type(mesh).__name__}")
    return mesh


def _check_positive(values: np.ndarray, name: str) -> np.ndarray:
    if not np.isfinite(values).all():
        raise ValueError(f"{name}: expected finite values, got {values[~np.isfinite(values)][0]}")
    if values.size and values.min() <= 0:
        raise ValueError(f"{name}: expected positive values (the problem must be elliptic), "
                         f"got a minimum of {values.min():g}")
    return values


def evaluate(fn, x: np.ndarray, y: np.ndarray, name: str) -> np.ndarray:
    """``fn(x, y)`` as a float64 array of the shape of ``x`` (a number is broadcast)."""
    if isinstance(fn, numbers.Real):
        return np.full(x.shape, float(fn))
    if not callable(fn):
        raise TypeError(f"{name}: expected a number or a callable f(x, y), got "
                        f"{type(fn).__name__}")
    out = np.asarray(fn(x, y), dtype=np.float64)
    if out.shape != x.shape:
        try:
            out = np.broadcast_to(out, x.shape).copy()
        except ValueError:
            raise ValueError(f"{name}: expected f(x, y) to return an array of shape {x.shape} "
                             f"(vectorised over the points), got {out.shape}") from None
    return out


def element_coefficient(coefficient: Coefficient, points: np.ndarray,
                        triangles: np.ndarray) -> np.ndarray:
    """The coefficient ``k`` on each triangle, checked positive and finite.

    ``coefficient`` is a number, an array with one value per triangle, or a
    callable ``k(x, y)`` evaluated (vectorised) at the centroids.

    Examples
    --------
    >>> import numpy as np
    >>> from learnsolve.problems.fem import element_coefficient
    >>> p = np.array([[0.0, 0.0], [3.0, 0.0], [0.0, 3.0]])
    >>> element_coefficient(lambda x, y: 1 + x + y, p, np.array([[0, 1, 2]]))
    array([3.])
    """
    t = triangles.shape[0]
    if isinstance(coefficient, (np.ndarray, torch.Tensor, list, tuple)):
        k = np.asarray(coefficient.detach().cpu() if isinstance(coefficient, torch.Tensor)
                       else coefficient, dtype=np.float64)
        if k.shape != (t,):
            raise ValueError(f"coefficient: expected one value per triangle, shape ({t},), got "
                             f"{k.shape}")
    else:
        centroid = points[triangles].mean(axis=1)
        k = evaluate(coefficient, centroid[:, 0], centroid[:, 1], "coefficient")
    return _check_positive(k, "coefficient")


def _element_stiffness(points: np.ndarray, triangles: np.ndarray, k: np.ndarray):
    """Row and column node indices and values of all element matrices (T * 9 entries).

    With ``e_i`` the edge opposite vertex i, ``grad(phi_i) . grad(phi_j) =
    e_i . e_j / (4 area^2)``, so ``K_ij = k e_i . e_j / (4 area)``.
    """
    p = points[triangles]                           # (T, 3, 2)
    e = np.roll(p, -1, axis=1) - np.roll(p, 1, axis=1)   # e_i = p_{i+2} - p_{i+1}, up to sign
    twice_area = e[:, 1, 0] * e[:, 2, 1] - e[:, 1, 1] * e[:, 2, 0]
    local = np.einsum("tid,tjd->tij", e, e) * (k / (2.0 * np.abs(twice_area)))[:, None, None]
    rows = np.repeat(triangles, 3, axis=1).ravel()
    cols = np.tile(triangles, (1, 3)).ravel()
    return rows, cols, local.ravel()


def stiffness_matrix(points, triangles, coefficient: Coefficient = 1.0) -> sp.csr_array:
    """The P1 stiffness matrix of ``-div(k grad u)`` over all nodes (no boundary condition).

    Its rows sum to zero (constants are in its kernel) and it is symmetric
    positive semi-definite.

    Examples
    --------
    >>> from learnsolve.problems import rectangle
    >>> from learnsolve.problems.fem import stiffness_matrix
    >>> m = rectangle(0.5)
    >>> K = stiffness_matrix(m.points, m.triangles)
    >>> bool(abs(K.sum(axis=1)).max() < 1e-12)
    True
    """
    points, triangles = np.asarray(points, np.float64), np.asarray(triangles, np.int64)
    k = element_coefficient(coefficient, points, triangles)
    rows, cols, vals = _element_stiffness(points, triangles, k)
    n = points.shape[0]
    K = sp.csr_array((vals, (rows, cols)), shape=(n, n))
    K.sum_duplicates()
    return K


def lumped_mass(points, triangles) -> np.ndarray:
    """The row sums of the P1 mass matrix: a third of the area of each node's triangles."""
    points, triangles = np.asarray(points, np.float64), np.asarray(triangles, np.int64)
    area = 0.5 * np.abs(_twice_area(points, triangles))
    return np.bincount(triangles.ravel(), np.repeat(area / 3.0, 3), minlength=len(points))


def _twice_area(points, triangles):
    p0, p1, p2 = (points[triangles[:, k]] for k in range(3))
    a, b = p1 - p0, p2 - p0
    return a[:, 0] * b[:, 1] - a[:, 1] * b[:, 0]


def load_vector(points, triangles, f) -> np.ndarray:
    """The load vector ``F_i = integral of f phi_i``, by the edge-midpoint rule.

    The rule ``integral over T of g = area / 3 * (g(m_01) + g(m_12) + g(m_20))``
    (edge midpoints ``m``) is exact for quadratics, so ``f phi_i`` is integrated
    with error ``O(h^2)`` per unit area, which keeps the scheme second order:
    ``F_i = sum over T of area / 6 * (f(m_ij) + f(m_ik))``.

    Examples
    --------
    >>> import numpy as np
    >>> from learnsolve.problems import rectangle
    >>> from learnsolve.problems.fem import load_vector
    >>> m = rectangle(0.3)
    >>> float(np.round(load_vector(m.points, m.triangles, 1.0).sum(), 12))  # the area
    1.0
    """
    points, triangles = np.asarray(points, np.float64), np.asarray(triangles, np.int64)
    p = points[triangles]
    mid = 0.5 * (p + np.roll(p, -1, axis=1))       # mid[:, i] on edge (i, i+1)
    fm = evaluate(f, mid[..., 0], mid[..., 1], "f")  # (T, 3)
    area = 0.5 * np.abs(_twice_area(points, triangles))
    # node i touches edges (i, i+1) and (i-1, i): midpoints i and i-1
    contrib = (area / 6.0)[:, None] * (fm + np.roll(fm, 1, axis=1))
    return np.bincount(triangles.ravel(), contrib.ravel(), minlength=len(points))


def fem_problem(mesh: Mesh, coefficient: Coefficient = 1.0, f=None, *, dirichlet=None,
                solution=None, seed: int = 0, name: str | None = None,
                dtype: torch.dtype | None = None, device=None) -> Problem:
    """The P1 finite-element problem ``-div(k grad u) = f`` on ``mesh``, ``u = g`` on its boundary.

    Parameters
    ----------
    mesh : Mesh
        The mesh; ``mesh.boundary`` are the Dirichlet nodes.
    coefficient : number, array (T,) or callable k(x, y)
        The diffusion coefficient, per triangle (a callable is evaluated at
        the centroids; see also :func:`lognormal_coefficient`,
        :func:`jump_coefficient`). Must be positive.
    f : number or callable f(x, y), optional
        The source. With neither ``f`` nor ``dirichlet`` the problem has no
        fixed right-hand side and :meth:`Problem.rhs` draws random ones.
    dirichlet : number or callable g(x, y), optional
        The boundary values (default 0).
    solution : callable u(x, y), optional
        The exact solution, if known: stored at the free nodes as
        ``problem.solution`` (to measure discretisation errors).
    seed : int
        Seed of the problem's random right-hand sides.

    Returns
    -------
    Problem
        Matrix over the free nodes (Dirichlet nodes eliminated; symmetric
        positive definite, pattern = the mesh graph of the free nodes, every
        edge stored even where its value cancels), ``coordinates`` of the
        free nodes, ``boundary`` = the free nodes next to the Dirichlet
        boundary, and the whole mesh.

    Examples
    --------
    >>> import torch
    >>> from learnsolve.problems import disk, fem_problem
    >>> p = fem_problem(disk(0.2), f=1.0, dtype=torch.float64)
    >>> p.A.shape[0] == p.mesh.num_free and p.b.shape == (p.num_nodes,)
    True
    """
    mesh = _check_mesh(mesh)
    points, triangles = mesh.points, mesh.triangles
    k = element_coefficient(coefficient, points, triangles)
    rows, cols, vals = _element_stiffness(points, triangles, k)
    free = mesh.free
    n = free.shape[0]
    index = np.full(mesh.num_nodes, -1, dtype=np.int64)
    index[free] = np.arange(n)
    r, c = index[rows], index[cols]
    keep = (r >= 0) & (c >= 0)
    K = sp.csr_array((vals[keep], (r[keep], c[keep])), shape=(n, n))
    K.sum_duplicates()
    # entries coupling a free row to a Dirichlet column
    cross = (r >= 0) & (c < 0)
    near_boundary = np.zeros(n, dtype=bool)
    near_boundary[r[cross]] = True

    b = None
    g_boundary = None
    if f is not None or dirichlet is not None:
        F = load_vector(points, triangles, 0.0 if f is None else f)[free]
        if dirichlet is not None:
            g = np.zeros(mesh.num_nodes)
            bnd = mesh.boundary
            g[bnd] = evaluate(dirichlet, points[bnd, 0], points[bnd, 1], "dirichlet")
            g_boundary = g[bnd]
            F = F - np.bincount(r[cross], vals[cross] * g[cols[cross]], minlength=n)
        b = F
    exact = None
    if solution is not None:
        exact = evaluate(solution, points[free, 0], points[free, 1], "solution")
    dtype = check_dtype(dtype)
    info = {"kind": "fem", "geometry": mesh.name, "h": mesh.h,
            "num_triangles": mesh.num_triangles}
    if g_boundary is not None:
        info["dirichlet_values"] = g_boundary
    return Problem(
        CSRMatrix.from_scipy(K, dtype=dtype, device=device),
        b=None if b is None else as_tensor(b, dtype, device),
        coordinates=as_tensor(points[free], dtype, device),
        boundary=torch.from_numpy(near_boundary).to(device),
        mesh=mesh, solution=None if exact is None else as_tensor(exact, dtype, device),
        name=name or f"P1 FEM on {mesh.name or 'a mesh'} ({n} unknowns)", seed=seed, info=info)


def discretisation_error(problem: Problem, x) -> float:
    """The discrete L2 error ``sqrt(sum_i m_i (x_i - u_i)^2)`` (lumped mass ``m``) of ``x``.

    Needs a problem with a mesh and a known ``solution``.
    """
    if problem.mesh is None or problem.solution is None:
        raise ValueError("problem: expected a mesh problem with a known solution")
    mass = lumped_mass(problem.mesh.points, problem.mesh.triangles)[problem.mesh.free]
    err = np.asarray(torch.as_tensor(x).detach().cpu(), np.float64) - \
        problem.solution.detach().cpu().double().numpy()
    return math.sqrt(float((mass * err * err).sum()))
