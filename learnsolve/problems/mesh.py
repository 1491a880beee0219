"""Triangular meshes of planar domains, generated with Triangle (through meshpy).

A :class:`Mesh` holds node coordinates, counter-clockwise triangles and the
nodes on the boundary of the domain (outer boundary and holes): the Dirichlet
nodes of the problems assembled on it. The geometries (:func:`disk`,
:func:`rectangle`, :func:`l_shape`, :func:`square_with_holes`,
:func:`random_polygon`, and any :func:`polygon`) take a target mesh size ``h``:
boundary edges are cut into pieces no longer than ``h`` and Triangle's quality
meshing (minimum angle 20 degrees) bounds the triangle area by that of the
equilateral triangle of side ``h`` (the longest edge comes out between about
``h`` and ``1.5 h``). Triangle's triangles then average about 64 %
of that bound, so a domain of area ``a`` gets about ``1.8 a / h**2`` nodes
(measured from a few hundred to a few hundred thousand nodes; see :func:`mesh_size`).
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from functools import cached_property
from typing import Sequence

import numpy as np

__all__ = ["Mesh", "disk", "rectangle", "l_shape", "square_with_holes", "random_polygon",
           "polygon", "mesh_size", "MAX_NODES", "NODE_DENSITY", "DEFAULT_HOLES"]

#: The largest node count a mesh function accepts (estimated from ``h`` before meshing).
MAX_NODES = 20_000_000
#: Nodes per unit area times h**2 of Triangle's quality meshes with the area bound used here.
NODE_DENSITY = 1.8


@dataclass(frozen=True, eq=False)
class Mesh:
    """A triangle mesh: nodes, counter-clockwise triangles and Dirichlet (boundary) nodes.

    Parameters
    ----------
    points : array (N, 2)
        Node coordinates (stored as float64).
    triangles : array (T, 3)
        Node indices of each triangle (stored as int64, reoriented counter-clockwise).
    boundary : array (N,) of bool, optional
        The Dirichlet nodes. Default: the nodes of the edges that belong to one
        triangle only (the whole boundary of the domain, holes included).
    name : str
        The geometry, for display.

    Examples
    --------
    >>> from learnsolve.problems import Mesh
    >>> m = Mesh([[0, 0], [1, 0], [1, 1], [0, 1], [0.5, 0.5]],
    ...          [[0, 1, 4], [1, 2, 4], [2, 3, 4], [3, 0, 4]])
    >>> m.num_nodes, m.num_triangles, m.free.tolist()
    (5, 4, [4])
    """

    points: np.ndarray
    triangles: np.ndarray
    boundary: np.ndarray | None = None
    name: str = ""

    def __post_init__(self):
        points = np.ascontiguousarray(self.points, dtype=np.float64)
        if points.ndim != 2 or points.shape[1] != 2:
            raise ValueError(f"points: expected an array of shape (N, 2), got {points.shape}")
        if not np.isfinite(points).all():
            raise ValueError("points: expected finite coordinates")
        triangles = np.asarray(self.triangles)
        if triangles.ndim != 2 or triangles.shape[1] != 3:
            raise ValueError(f"triangles: expected an array of shape (T, 3), got "
                             f"{triangles.shape}")
        if triangles.size and not np.issubdtype(triangles.dtype, np.integer):
            raise TypeError(f"triangles: expected integer node indices, got {triangles.dtype}")
        triangles = np.ascontiguousarray(triangles, dtype=np.int64)
        if triangles.size and (triangles.min() < 0 or triangles.max() >= len(points)):
            raise ValueError(f"triangles: expected node indices in [0, {len(points)}), got "
                             f"{triangles.min()}..{triangles.max()}")
        twice_area = _twice_signed_area(points, triangles)
        if (twice_area == 0).any():
            raise ValueError(f"triangles: {(twice_area == 0).sum()} degenerate triangles "
                             f"(zero area), e.g. triangle {np.flatnonzero(twice_area == 0)[0]}")
        flip = twice_area < 0
        if flip.any():
            triangles = triangles.copy()
            triangles[flip] = triangles[flip][:, [0, 2, 1]]
        if self.boundary is None:
            boundary = _topological_boundary(len(points), triangles)
        else:
            boundary = np.asarray(self.boundary)
            if boundary.dtype != np.bool_ or boundary.shape != (len(points),):
                raise ValueError(f"boundary: expected a boolean array of shape "
                                 f"({len(points)},), got {boundary.dtype} {boundary.shape}")
        for name, value in (("points", points), ("triangles", triangles),
                            ("boundary", boundary)):
            value.setflags(write=False)
            object.__setattr__(self, name, value)

    @property
    def num_nodes(self) -> int:
        return self.points.shape[0]

    @property
    def num_triangles(self) -> int:
        return self.triangles.shape[0]

    @cached_property
    def free(self) -> np.ndarray:
        """Indices of the free (non-Dirichlet) nodes: the unknowns, in this order."""
        free = np.flatnonzero(~self.boundary)
        free.setflags(write=False)
        return free

    @property
    def num_free(self) -> int:
        return self.free.shape[0]

    @cached_property
    def areas(self) -> np.ndarray:
        """The area of each triangle."""
        return 0.5 * _twice_signed_area(self.points, self.triangles)

    @cached_property
    def edges(self) -> np.ndarray:
        """The distinct edges ``(E, 2)``, lower node index first."""
        n = self.num_nodes
        key = np.unique(_all_edges(self.triangles) @ np.array([n, 1]))
        return np.c_[key // n, key % n]

    @cached_property
    def h(self) -> float:
        """The mesh size: the longest edge."""
        if not self.num_triangles:
            return 0.0
        p = self.points[self.triangles]
        return float(np.sqrt(((p - np.roll(p, 1, axis=1)) ** 2).sum(-1)).max())

    def __repr__(self) -> str:
        name = f"{self.name!r}, " if self.name else ""
        return (f"Mesh({name}nodes={self.num_nodes}, triangles={self.num_triangles}, "
                f"boundary nodes={int(self.boundary.sum())})")


def _twice_signed_area(points: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    p0, p1, p2 = (points[triangles[:, k]] for k in range(3))
    a, b = p1 - p0, p2 - p0
    return a[:, 0] * b[:, 1] - a[:, 1] * b[:, 0]


def _all_edges(triangles: np.ndarray) -> np.ndarray:
    e = triangles[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2)
    return np.sort(e, axis=1)


def _topological_boundary(num_nodes: int, triangles: np.ndarray) -> np.ndarray:
    """Nodes of the edges that lie in exactly one triangle."""
    e = _all_edges(triangles)
    key = e[:, 0] * num_nodes + e[:, 1]
    uniq, counts = np.unique(key, return_counts=True)
    single = uniq[counts == 1]
    boundary = np.zeros(num_nodes, dtype=bool)
    boundary[single // num_nodes] = True
    boundary[single % num_nodes] = True
    return boundary


# ---------------------------------------------------------------------------- meshing
def mesh_size(num_nodes: int, area: float) -> float:
    """The mesh size ``h`` that gives about ``num_nodes`` nodes on a domain of area ``area``:
    ``sqrt(NODE_DENSITY * area / num_nodes)`` (within about 10 %).

    Examples
    --------
    >>> import math
    >>> from learnsolve.problems import disk, mesh_size
    >>> 900 < disk(mesh_size(1000, math.pi)).num_nodes < 1100
    True
    """
    if not (isinstance(num_nodes, (int, np.integer)) and num_nodes >= 1):
        raise ValueError(f"num_nodes: expected a positive integer, got {num_nodes!r}")
    if not (area > 0 and math.isfinite(area)):
        raise ValueError(f"area: expected a positive finite number, got {area!r}")
    return math.sqrt(NODE_DENSITY * area / num_nodes)


def _check_h(h) -> float:
    try:
        h = float(h)
    except (TypeError, ValueError):
        raise TypeError(f"h: expected a positive number (the mesh size), got "
                        f"{type(h).__name__}") from None
    if not (h > 0 and math.isfinite(h)):
        raise ValueError(f"h: expected a positive finite mesh size, got {h}")
    return h


def _polygon_area(vertices: np.ndarray) -> float:
    x, y = vertices[:, 0], vertices[:, 1]
    return 0.5 * float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)))


def _check_polygon(vertices, name: str) -> np.ndarray:
    v = np.asarray(vertices, dtype=np.float64)
    if v.ndim != 2 or v.shape[1] != 2 or v.shape[0] < 3:
        raise ValueError(f"{name}: expected an array of at least 3 vertices of shape (m, 2), "
                         f"got shape {v.shape}")
    if not np.isfinite(v).all():
        raise ValueError(f"{name}: expected finite coordinates")
    if abs(_polygon_area(v)) == 0:
        raise ValueError(f"{name}: the polygon has zero area")
    return v


def _subdivide(loop: np.ndarray, h: float) -> np.ndarray:
    """The closed polygon ``loop`` with each edge cut into pieces of length <= h."""
    nxt = np.roll(loop, -1, axis=0)
    pieces = np.maximum(1, np.ceil(np.linalg.norm(nxt - loop, axis=1) / h - 1e-9)).astype(int)
    edge = np.repeat(np.arange(len(loop)), pieces)
    t = (np.arange(pieces.sum()) - np.repeat(np.cumsum(pieces) - pieces, pieces)) / pieces[edge]
    return loop[edge] + t[:, None] * (nxt[edge] - loop[edge])


def _inside_point(loop: np.ndarray) -> np.ndarray:
    """A point strictly inside a simple polygon, near the middle of its first edge."""
    a, b = loop[0], loop[1]
    tangent = b - a
    normal = np.array([-tangent[1], tangent[0]])  # left of the edge: inside for CCW
    if _polygon_area(loop) < 0:
        normal = -normal
    size = np.ptp(loop, axis=0).max()
    return (a + b) / 2 + 1e-6 * size * normal / np.linalg.norm(normal)


def _circle(center, radius: float, h: float) -> np.ndarray:
    m = max(8, math.ceil(2 * math.pi * radius / h))
    t = 2 * math.pi * np.arange(m) / m
    return np.asarray(center, dtype=np.float64) + radius * np.c_[np.cos(t), np.sin(t)]


def _triangulate(outer: np.ndarray, holes: Sequence[np.ndarray], h: float, name: str,
                 hole_points: Sequence[np.ndarray] | None = None) -> Mesh:
    """Mesh the region inside ``outer`` and outside each of ``holes`` (all closed polygons)."""
    import meshpy.triangle as triangle

    area = abs(_polygon_area(outer)) - sum(abs(_polygon_area(hole)) for hole in holes)
    estimate = NODE_DENSITY * area / (h * h)
    if estimate > MAX_NODES:
        raise ValueError(f"h: a mesh size of {h:g} would give about {estimate:.3g} nodes on this "
                         f"domain (more than MAX_NODES = {MAX_NODES}); expected a larger h")
    loops = [_subdivide(outer, h)] + [_subdivide(hole, h) for hole in holes]
    sizes = [len(loop) for loop in loops]
    starts = np.cumsum([0] + sizes[:-1])
    facets = np.concatenate([np.c_[s + np.arange(m), s + (np.arange(m) + 1) % m]
                             for s, m in zip(starts, sizes)])
    info = triangle.MeshInfo()
    info.set_points(np.concatenate(loops))
    info.set_facets(facets)
    if holes:
        points = hole_points if hole_points is not None else [_inside_point(h_) for h_ in holes]
        info.set_holes([tuple(p) for p in points])
    out = triangle.build(info, max_volume=h * h * math.sqrt(3) / 4, quality_meshing=True)
    # meshpy's arrays have no buffer interface: one flat pass each is the fastest read.
    points = np.fromiter(itertools.chain.from_iterable(out.points), np.float64,
                         count=2 * len(out.points)).reshape(-1, 2)
    tris = np.fromiter(itertools.chain.from_iterable(out.elements), np.int64,
                       count=3 * len(out.elements)).reshape(-1, 3)
    mesh = Mesh(points, tris, name=name)
    if mesh.num_free == 0:
        diameter = float(np.ptp(outer, axis=0).max())
        raise ValueError(f"h: a mesh size of {h:g} gives a mesh of the {name} (diameter "
                         f"{diameter:.3g}) with no interior node; expected a smaller h")
    return mesh


# ---------------------------------------------------------------------------- geometries
def polygon(vertices, h: float, *, holes: Sequence = (), name: str = "polygon") -> Mesh:
    """Mesh of a simple polygon, optionally with polygonal holes.

    Parameters
    ----------
    vertices : array (m, 2)
        The polygon's vertices in order (either orientation); it must be simple.
    h : float
        Target mesh size.
    holes : sequence of arrays (m_k, 2)
        Simple polygons inside ``vertices``, disjoint from each other.

    Examples
    --------
    >>> from learnsolve.problems import polygon
    >>> m = polygon([[0, 0], [2, 0], [0, 1]], 0.2)
    >>> bool(m.boundary.any()) and m.num_free > 0
    True
    """
    h = _check_h(h)
    outer = _check_polygon(vertices, "vertices")
    holes = [_check_polygon(hole, f"holes[{i}]") for i, hole in enumerate(holes)]
    return _triangulate(outer, holes, h, name)


def disk(h: float, *, radius: float = 1.0, center=(0.0, 0.0)) -> Mesh:
    """Mesh of the disk of ``radius`` around ``center``; boundary nodes lie on the circle.

    Examples
    --------
    >>> import numpy as np
    >>> from learnsolve.problems import disk
    >>> m = disk(0.2)
    >>> r = np.linalg.norm(m.points[m.boundary], axis=1)
    >>> bool(np.allclose(r, 1.0))
    True
    """
    h = _check_h(h)
    if not (radius > 0 and math.isfinite(radius)):
        raise ValueError(f"radius: expected a positive number, got {radius!r}")
    # chords of 2 pi r / m <= h: the circle is not cut further, all boundary nodes lie on it
    return _triangulate(_circle(center, radius, h), [], h, "disk")


def rectangle(h: float, *, width: float = 1.0, height: float = 1.0,
              origin=(0.0, 0.0)) -> Mesh:
    """Mesh of the rectangle ``[x0, x0 + width] x [y0, y0 + height]`` (unit square by default).

    Examples
    --------
    >>> from learnsolve.problems import rectangle
    >>> m = rectangle(0.25)
    >>> m.points.min(0).tolist(), m.points.max(0).tolist()
    ([0.0, 0.0], [1.0, 1.0])
    """
    h = _check_h(h)
    if not (width > 0 and height > 0):
        raise ValueError(f"width, height: expected positive numbers, got {width!r}, {height!r}")
    x0, y0 = origin
    v = np.array([[x0, y0], [x0 + width, y0], [x0 + width, y0 + height], [x0, y0 + height]])
    return _triangulate(v, [], h, "rectangle")


def l_shape(h: float) -> Mesh:
    """Mesh of the L-shaped domain ``(-1, 1)^2`` minus ``[0, 1) x (-1, 0]`` (area 3).

    Examples
    --------
    >>> from learnsolve.problems import l_shape
    >>> m = l_shape(0.3)
    >>> bool(((m.points[:, 0] > 1e-12) & (m.points[:, 1] < -1e-12)).any())
    False
    """
    h = _check_h(h)
    v = np.array([[-1.0, -1.0], [0.0, -1.0], [0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [-1.0, 1.0]])
    return _triangulate(v, [], h, "L-shape")


#: The holes of :func:`square_with_holes` by default: (center x, center y, radius).
DEFAULT_HOLES = ((0.3, 0.3, 0.12), (0.72, 0.35, 0.1), (0.45, 0.72, 0.15))


def square_with_holes(h: float, *, holes=DEFAULT_HOLES) -> Mesh:
    """Mesh of the unit square with circular holes ``(cx, cy, r)``.

    The holes must lie inside the square and be disjoint; their boundaries are
    Dirichlet boundary too.

    Examples
    --------
    >>> from learnsolve.problems import square_with_holes
    >>> m = square_with_holes(0.1, holes=[(0.5, 0.5, 0.2)])
    >>> import numpy as np
    >>> bool((np.linalg.norm(m.points - 0.5, axis=1) < 0.2 - 1e-9).any())
    False
    """
    h = _check_h(h)
    holes = np.asarray(holes, dtype=np.float64).reshape(-1, 3) if len(holes) else np.zeros((0, 3))
    cx, cy, r = holes.T
    if (r <= 0).any():
        raise ValueError(f"holes: expected positive radii, got {r.tolist()}")
    if ((cx - r <= 0) | (cx + r >= 1) | (cy - r <= 0) | (cy + r >= 1)).any():
        raise ValueError("holes: expected circles strictly inside the unit square")
    gap = np.hypot(cx[:, None] - cx[None], cy[:, None] - cy[None]) - (r[:, None] + r[None])
    np.fill_diagonal(gap, np.inf)
    if (gap <= 0).any():
        raise ValueError("holes: expected disjoint circles")
    square = np.array([[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]])
    loops = [_circle((x, y), rad, h) for x, y, rad in holes]
    return _triangulate(square, loops, h, "square with holes",
                        hole_points=[np.array([x, y]) for x, y, _ in holes])


def random_polygon(h: float, *, seed: int = 0, num_vertices: int = 10,
                   irregularity: float = 0.5, spikiness: float = 0.3) -> Mesh:
    """Mesh of a random star-shaped (hence simple) polygon around the origin.

    Vertex ``k`` sits at angle ``2 pi (k + u_k) / m`` with ``u_k`` uniform in
    ``[-irregularity / 2, irregularity / 2]`` and at radius ``1 + s_k`` with
    ``s_k`` uniform in ``[-spikiness, spikiness]``: the angles are sorted and
    the radii positive, so the polygon is simple.

    Parameters
    ----------
    h : float
        Target mesh size.
    seed : int
        Seed of the numpy generator; the same seed gives the same polygon.
    num_vertices : int, >= 3
    irregularity : float in [0, 1)
        Jitter of the angles (0: equal angles).
    spikiness : float in [0, 1)
        Jitter of the radii (0: a regular polygon).

    Examples
    --------
    >>> from learnsolve.problems import random_polygon
    >>> a, b = random_polygon(0.3, seed=1), random_polygon(0.3, seed=1)
    >>> bool((a.points == b.points).all())
    True
    """
    h = _check_h(h)
    if not (isinstance(num_vertices, (int, np.integer)) and num_vertices >= 3):
        raise ValueError(f"num_vertices: expected an integer >= 3, got {num_vertices!r}")
    if not 0 <= irregularity < 1:
        raise ValueError(f"irregularity: expected a number in [0, 1), got {irregularity!r}")
    if not 0 <= spikiness < 1:
        raise ValueError(f"spikiness: expected a number in [0, 1), got {spikiness!r}")
    rng = np.random.default_rng(seed)
    k = np.arange(num_vertices)
    angles = 2 * np.pi * (k + irregularity * rng.uniform(-0.5, 0.5, num_vertices)) / num_vertices
    radii = 1.0 + spikiness * rng.uniform(-1.0, 1.0, num_vertices)
    vertices = radii[:, None] * np.c_[np.cos(angles), np.sin(angles)]
    return _triangulate(vertices, [], h, "random polygon")
