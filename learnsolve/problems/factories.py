"""Ready-made factories ``(seed, index) -> Problem`` for :class:`ProblemSet`: distributions
of problems to train learned solvers over (random domains, random coefficients)."""
from __future__ import annotations

import numbers

import numpy as np
import torch

from . import mesh as meshes
from .decomposition import Partition
from .diffusion import JumpCoefficient, LognormalCoefficient, diffusion_2d
from .fem import fem_problem
from .gallery import anisotropic_diffusion
from .problem import Problem

__all__ = ["GEOMETRIES", "SPD_FAMILIES", "random_mesh_problem", "random_grid_problem",
           "random_anisotropic_problem", "random_spd_problem", "random_schwarz_problem",
           "floating_subdomains"]

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
    problem.info["family"] = f"FEM {geometry}"
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
    problem.info["family"] = coefficient if isinstance(coefficient, str) else "grid"
    if num_parts is not None:
        problem = problem.with_partition(num_parts, overlap)
    return problem


def random_anisotropic_problem(seed: int, index: int = 0, *, n: int = 32,
                               epsilon: tuple[float, float] = (1e-3, 1.0),
                               dtype: torch.dtype | None = None, device=None) -> Problem:
    """Rotated anisotropic diffusion (:func:`~learnsolve.problems.anisotropic_diffusion`,
    bilinear elements) on an ``n x n`` grid with a random strength and direction:
    ``epsilon`` log-uniform in the range, the angle uniform in ``[0, pi)``. Its
    matrices have positive off-diagonal entries and eight neighbours a node, which
    the five-point grids never show a learned preconditioner.

    Examples
    --------
    >>> from learnsolve.problems import ProblemSet, random_anisotropic_problem
    >>> problems = ProblemSet(random_anisotropic_problem, 3, seed=0)
    >>> len({round(p.info["epsilon"], 6) for p in problems}), problems[0].info["family"]
    (3, 'anisotropic')
    """
    low, high = (float(v) for v in epsilon)
    if not 0 < low <= high:
        raise ValueError(f"epsilon: expected 0 < low <= high, got {epsilon!r}")
    rng = np.random.default_rng([seed, 0xA2])
    eps = float(np.exp(rng.uniform(np.log(low), np.log(high))))
    theta = float(rng.uniform(0.0, np.pi))
    problem = anisotropic_diffusion(n, epsilon=eps, theta=theta, seed=seed % 2**63, dtype=dtype,
                                    device=device)
    problem.info.update(family="anisotropic", epsilon=eps, theta=theta)
    return problem


#: The families :func:`random_spd_problem` draws from.
SPD_FAMILIES = ("lognormal", "jump", "fem", "anisotropic")


def random_spd_problem(seed: int, index: int = 0, *, nodes: tuple[int, int] = (200, 1_000),
                       families: tuple[str, ...] = SPD_FAMILIES, geometry: str = "any",
                       dtype: torch.dtype | None = None, device=None) -> Problem:
    """An SPD problem of a family drawn from ``families`` (uniformly) with about a number
    of unknowns drawn log-uniformly from ``nodes``: the mixture a learned
    preconditioner meant for unseen matrices trains on.

    ``"lognormal"`` and ``"jump"``: diffusion on a square grid with that random
    coefficient (:func:`random_grid_problem`); ``"fem"``: P1 elements with a
    lognormal coefficient on a domain of ``geometry`` (one of
    :data:`GEOMETRIES`, ``"any"`` drawing one; :func:`random_mesh_problem`),
    so that the shapes a test holds out can be kept out; ``"anisotropic"``:
    :func:`random_anisotropic_problem`. ``info["family"]`` names what was
    drawn.

    Examples
    --------
    >>> from learnsolve.problems import ProblemSet, random_spd_problem
    >>> problems = ProblemSet(random_spd_problem, 8, seed=0)
    >>> sorted({p.info["family"].split()[0] for p in problems})
    ['FEM', 'anisotropic', 'jump', 'lognormal']
    >>> all(150 < p.num_nodes < 1_300 for p in problems)
    True
    """
    low, high = (int(v) for v in nodes)
    if not 1 <= low <= high:
        raise ValueError(f"nodes: expected 1 <= low <= high, got {nodes!r}")
    unknown = [f for f in families if f not in SPD_FAMILIES]
    if not families or unknown:
        raise ValueError(f"families: expected a non-empty subset of {SPD_FAMILIES}, got "
                         f"{families!r}")
    rng = np.random.default_rng([seed, 0x5D])
    family = families[int(rng.integers(len(families)))]
    target = int(round(np.exp(rng.uniform(np.log(low), np.log(high)))))
    options = dict(dtype=dtype, device=device)
    if family == "fem":
        area = float(random_mesh_problem(seed, h=0.25, geometry=geometry,
                                         **options).mesh.areas.sum())
        return random_mesh_problem(seed, h=meshes.mesh_size(target, area), geometry=geometry,
                                   coefficient="lognormal", **options)
    n = max(2, round(target ** 0.5))
    if family == "anisotropic":
        return random_anisotropic_problem(seed, n=n, **options)
    return random_grid_problem(seed, n=n, coefficient=family, **options)


def floating_subdomains(problem: Problem, partition: Partition | None = None) -> int:
    """The subdomains whose core touches no physical (Dirichlet) boundary.

    After the Dirichlet nodes are eliminated, a node next to one keeps a
    positive row sum (its coupling to the eliminated node): a subdomain none of
    whose core rows has one "floats", its matrix block nearly singular (the
    pure Neumann problem), and only a coarse level reaches it in one step.
    """
    partition = problem.partition if partition is None else partition
    if partition is None:
        raise ValueError("partition: the problem has no partition; pass one")
    A = problem.A.detach()
    # above rounding (sqrt(eps) of the diagonal; a real coupling is a fraction of it)
    touches = A.row_sum() > torch.finfo(A.dtype).eps ** 0.5 * A.diagonal().abs()
    touching = torch.zeros(partition.num_parts, dtype=torch.bool, device=touches.device)
    touching[partition.membership.to(touches.device)[touches]] = True
    return int((~touching).sum())


def random_schwarz_problem(seed: int, index: int = 0, *, nodes: tuple[int, int] = (500, 2_000),
                           nodes_per_subdomain: tuple[int, int] = (40, 120),
                           geometry: str = "any", coefficient="constant", overlap: int = 1,
                           dtype: torch.dtype | None = None, device=None) -> Problem:
    """A partitioned P1 problem on a random domain, to train a Schwarz method on what
    held-out meshes will show: varied sizes and subdomain counts, cross points, and
    subdomains that touch no physical boundary.

    The number of unknowns is drawn log-uniformly from ``nodes`` and the nodes
    per subdomain uniformly from ``nodes_per_subdomain``; the mesh size that
    gives that many nodes comes from the domain's area (:func:`mesh_size`).
    ``info`` records ``"floating_subdomains"`` (:func:`floating_subdomains`).

    Parameters
    ----------
    seed, index
        As :func:`random_mesh_problem` (a :class:`ProblemSet` factory).
    nodes : (int, int)
        The range of the number of unknowns (within about 10 %).
    nodes_per_subdomain : (int, int)
        The range of the unknowns per subdomain (``num_parts = round(N / this)``,
        at least 2).
    geometry, coefficient, overlap, dtype, device
        As :func:`random_mesh_problem`.

    Examples
    --------
    >>> from learnsolve.problems import ProblemSet, random_schwarz_problem
    >>> problems = ProblemSet(random_schwarz_problem, 4, seed=0)
    >>> all(400 < p.num_nodes < 2_400 for p in problems)
    True
    >>> sum(p.info["floating_subdomains"] for p in problems) > 0
    True
    """
    low, high = (int(v) for v in nodes)
    lo_part, hi_part = (float(v) for v in nodes_per_subdomain)
    if not 1 <= low <= high:
        raise ValueError(f"nodes: expected 1 <= low <= high, got {nodes!r}")
    if not 1 <= lo_part <= hi_part:
        raise ValueError(f"nodes_per_subdomain: expected 1 <= low <= high, got "
                         f"{nodes_per_subdomain!r}")
    rng = np.random.default_rng([seed, 0x5C4])
    target = int(round(np.exp(rng.uniform(np.log(low), np.log(high)))))
    per_subdomain = rng.uniform(lo_part, hi_part)
    options = dict(geometry=geometry, coefficient=coefficient, dtype=dtype, device=device)
    area = float(random_mesh_problem(seed, h=0.25, **options).mesh.areas.sum())
    problem = random_mesh_problem(seed, h=meshes.mesh_size(target, area), **options)
    problem = problem.with_partition(max(2, round(problem.num_nodes / per_subdomain)), overlap)
    problem.info["floating_subdomains"] = floating_subdomains(problem)
    return problem
