"""Ready-made factories ``(seed, index) -> Problem`` for :class:`ProblemSet`: distributions
of problems to train learned solvers over (random domains, random coefficients)."""
from __future__ import annotations

import numbers

import numpy as np
import torch

from . import mesh as meshes
from .diffusion import JumpCoefficient, LognormalCoefficient, diffusion_2d
from .fem import fem_problem
from .problem import Problem

__all__ = ["GEOMETRIES", "random_mesh_problem", "random_grid_problem"]

#: The geometries :func:`random_mesh_problem` knows (``"any"`` draws one of them).
GEOMETRIES = ("random_polygon", "disk", "l_shape", "square_with_holes", "rectangle")


def _coefficient(kind, seed: int, points: np.ndarray):
    if isinstance(kind, numbers.Real) or callable(kind):
        return kind
    lo, hi = points.min(axis=0), points.max(axis=0)
    if kind == "constant":
        return 1.0
    if kind == "lognormal":
        return LognormalCoefficient(seed, correlation_length=0.1 * float((hi - lo).max()))
    if kind == "jump":
        return JumpCoefficient(seed, bounds=tuple(zip(lo.tolist(), hi.tolist())))
    raise ValueError(f"coefficient: expected 'constant', 'lognormal', 'jump', a number or a "
                     f"callable, got {kind!r}")


def random_mesh_problem(seed: int, index: int = 0, *, h: float = 0.1,
                        geometry: str = "random_polygon", coefficient="constant",
                        num_parts: int | None = None, overlap: int = 1,
                        dtype: torch.dtype | None = None, device=None) -> Problem:
    """A P1 finite-element problem on a random domain, optionally partitioned.

    Fits :class:`ProblemSet` (``functools.partial`` to fix the options).

    Parameters
    ----------
    seed : int
        Seeds the geometry (random polygon, or the choice for ``"any"``), the
        coefficient field and the right-hand sides.
    index : int
        Unused (the set's index of the problem; the seed already depends on it).
    h : float
        Mesh size.
    geometry : one of GEOMETRIES or "any"
    coefficient : "constant", "lognormal", "jump", a number or a callable k(x, y)
    num_parts, overlap : int, optional
        Attach a :func:`partition` with these.

    Examples
    --------
    >>> from functools import partial
    >>> from learnsolve.problems import ProblemSet, random_mesh_problem
    >>> problems = ProblemSet(partial(random_mesh_problem, h=0.3, coefficient="jump",
    ...                               num_parts=2), 4, seed=1)
    >>> [p.partition.num_parts for p in problems]
    [2, 2, 2, 2]
    """
    rng = np.random.default_rng(seed)
    if geometry == "any":
        geometry = GEOMETRIES[int(rng.integers(len(GEOMETRIES)))]
    if geometry not in GEOMETRIES:
        raise ValueError(f"geometry: expected one of {', '.join(GEOMETRIES)} or 'any', got "
                         f"{geometry!r}")
    if geometry == "random_polygon":
        mesh = meshes.random_polygon(h, seed=int(rng.integers(2**63)))
    else:
        mesh = getattr(meshes, geometry)(h)
    k = _coefficient(coefficient, int(rng.integers(2**63)), mesh.points)
    problem = fem_problem(mesh, k, seed=seed % 2**63, dtype=dtype, device=device)
    problem.info["coefficient"] = k
    if num_parts is not None:
        problem = problem.with_partition(num_parts, overlap)
    return problem


def random_grid_problem(seed: int, index: int = 0, *, n: int = 32, coefficient="lognormal",
                        num_parts: int | None = None, overlap: int = 1,
                        dtype: torch.dtype | None = None, device=None) -> Problem:
    """A variable-coefficient diffusion problem on an ``n x n`` grid (:func:`diffusion_2d`)
    with a random coefficient, optionally partitioned.

    Examples
    --------
    >>> from learnsolve.problems import ProblemSet, random_grid_problem
    >>> problems = ProblemSet(random_grid_problem, 3, seed=0)
    >>> len({float(p.A.values.max()) for p in problems})
    3
    """
    rng = np.random.default_rng(seed)
    k = _coefficient(coefficient, int(rng.integers(2**63)), np.array([[0.0, 0.0], [1.0, 1.0]]))
    problem = diffusion_2d(n, n, k, seed=seed % 2**63, dtype=dtype, device=device)
    if num_parts is not None:
        problem = problem.with_partition(num_parts, overlap)
    return problem
