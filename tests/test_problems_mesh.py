"""Meshes from meshpy (Triangle): geometry, boundary flags, size control, bad input."""
import math

import numpy as np
import pytest

from learnsolve.problems import (Mesh, disk, l_shape, mesh_size, polygon, random_polygon,
                                 rectangle, square_with_holes)
from learnsolve.problems.mesh import DEFAULT_HOLES, MAX_NODES

GEOMETRIES = {
    "disk": (disk, math.pi),
    "rectangle": (rectangle, 1.0),
    "l_shape": (l_shape, 3.0),
    "square_with_holes": (square_with_holes,
                          1.0 - math.pi * sum(r * r for _, _, r in DEFAULT_HOLES)),
}


def edge_counts(mesh):
    e = np.sort(mesh.triangles[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2), axis=1)
    _, inverse, counts = np.unique(e, axis=0, return_inverse=True, return_counts=True)
    return e, counts[inverse.ravel()]


def check_mesh(mesh):
    """A valid conforming triangulation: CCW, every node used, edges in 1 or 2 triangles,
    boundary flags = nodes of the edges in one triangle, area = sum of triangle areas."""
    assert (mesh.areas > 0).all()
    assert np.array_equal(np.unique(mesh.triangles), np.arange(mesh.num_nodes))
    e, counts = edge_counts(mesh)
    assert set(np.unique(counts)) <= {1, 2}
    on_boundary = np.zeros(mesh.num_nodes, bool)
    on_boundary[e[counts == 1].ravel()] = True
    assert np.array_equal(on_boundary, mesh.boundary)
    assert np.array_equal(mesh.free, np.flatnonzero(~mesh.boundary))
    # Euler: V - E + F = 2 - (number of holes) for a connected planar mesh (F without outside)
    return mesh.num_nodes - len(mesh.edges) + mesh.num_triangles


@pytest.mark.parametrize("name", list(GEOMETRIES))
def test_geometry_is_a_valid_mesh_of_the_domain(name):
    make, area = GEOMETRIES[name]
    mesh = make(0.1)
    euler = check_mesh(mesh)
    holes = len(DEFAULT_HOLES) if name == "square_with_holes" else 0
    assert euler == 1 - holes
    # the area is the domain's up to the polygonal approximation of circles, O(h^2)
    assert mesh.areas.sum() == pytest.approx(area, rel=0.02)
    # h bounds the triangle areas (and boundary edges); the longest edge stays near it
    assert 0.5 * 0.1 < mesh.h < 1.6 * 0.1 and mesh.num_free > 0
    assert mesh.name and repr(mesh).startswith("Mesh(")


def test_domains_contain_their_points():
    m = disk(0.1, radius=2.0, center=(1.0, -1.0))
    r = np.linalg.norm(m.points - [1.0, -1.0], axis=1)
    assert r.max() <= 2.0 + 1e-12
    np.testing.assert_allclose(r[m.boundary], 2.0, rtol=1e-12)  # boundary on the circle
    assert (r[~m.boundary] < 2.0 - 1e-3).all()
    m = l_shape(0.1)
    assert not ((m.points[:, 0] > 1e-12) & (m.points[:, 1] < -1e-12)).any()
    m = square_with_holes(0.05)
    for cx, cy, r in DEFAULT_HOLES:
        d = np.hypot(m.points[:, 0] - cx, m.points[:, 1] - cy)
        assert d.min() >= r * math.cos(math.pi / 8) - 1e-12  # no node inside a hole
        assert m.boundary[d < r + 1e-9].all()                # the hole's rim is boundary


@pytest.mark.parametrize("num_nodes", [300, 3000, 30000])
def test_mesh_size_controls_node_count(num_nodes):
    for name in ("disk", "l_shape"):
        make, area = GEOMETRIES[name]
        n = make(mesh_size(num_nodes, area)).num_nodes
        assert 0.85 * num_nodes < n < 1.2 * num_nodes, (name, n)


def test_random_polygon_is_seeded_and_simple():
    a, b, c = (random_polygon(0.1, seed=s) for s in (5, 5, 6))
    assert np.array_equal(a.points, b.points) and np.array_equal(a.triangles, b.triangles)
    assert a.num_nodes != c.num_nodes or not np.array_equal(a.points, c.points)
    for seed in range(5):
        m = random_polygon(0.15, seed=seed, num_vertices=7, irregularity=0.9, spikiness=0.9)
        assert check_mesh(m) == 1                    # one simple polygon, no hole
        r = np.linalg.norm(m.points, axis=1)
        assert r.max() <= 1.9 + 1e-9


def test_polygon_with_polygonal_hole():
    outer = [[0, 0], [4, 0], [4, 3], [0, 3]]
    hole = [[1, 1], [1, 2], [3, 2], [3, 1]]              # clockwise: orientation is free
    m = polygon(outer, 0.2, holes=[hole])
    assert check_mesh(m) == 0
    assert m.areas.sum() == pytest.approx(12 - 2)
    inside = (m.points[:, 0] > 1 + 1e-9) & (m.points[:, 0] < 3 - 1e-9) & \
        (m.points[:, 1] > 1 + 1e-9) & (m.points[:, 1] < 2 - 1e-9)
    assert not inside.any()


def test_mesh_class_orients_and_validates():
    pts = [[0, 0], [1, 0], [0, 1], [1, 1]]
    m = Mesh(pts, [[0, 2, 1], [1, 2, 3]])                   # first triangle clockwise
    assert (m.areas > 0).all() and m.boundary.all() and m.num_free == 0
    assert not m.points.flags.writeable
    with pytest.raises(ValueError, match=r"points: expected an array of shape \(N, 2\)"):
        Mesh(np.zeros((3, 3)), [[0, 1, 2]])
    with pytest.raises(ValueError, match=r"triangles: expected node indices in \[0, 4\)"):
        Mesh(pts, [[0, 1, 4]])
    with pytest.raises(TypeError, match=r"triangles: expected integer node indices"):
        Mesh(pts, [[0.0, 1.0, 2.0]])
    with pytest.raises(ValueError, match=r"degenerate triangles"):
        Mesh([[0, 0], [1, 1], [2, 2]], [[0, 1, 2]])
    with pytest.raises(ValueError, match=r"boundary: expected a boolean array of shape \(4,\)"):
        Mesh(pts, [[0, 1, 2]], boundary=np.zeros(3, bool))


@pytest.mark.parametrize("make", [disk, rectangle, l_shape,
                                  lambda h: polygon([[0, 0], [1, 0], [0, 1]], h)])
def test_coarse_mesh_without_interior_node_is_refused(make):
    with pytest.raises(ValueError, match=r"h: a mesh size of .* gives a mesh .* with no "
                                         r"interior node; expected a smaller h"):
        make(50.0)


@pytest.mark.parametrize("h, error, message", [
    (0.0, ValueError, r"h: expected a positive finite mesh size"),
    (-0.1, ValueError, r"h: expected a positive finite mesh size"),
    (float("nan"), ValueError, r"h: expected a positive finite mesh size"),
    ("fine", TypeError, r"h: expected a positive number"),
    (1e-5, ValueError, r"h: a mesh size of 1e-05 would give about .* nodes"),
])
def test_bad_mesh_size(h, error, message):
    with pytest.raises(error, match=message):
        disk(h)
    assert MAX_NODES >= 1_000_000


def test_bad_geometry_parameters():
    with pytest.raises(ValueError, match=r"holes: expected circles strictly inside"):
        square_with_holes(0.1, holes=[(0.1, 0.5, 0.2)])
    with pytest.raises(ValueError, match=r"holes: expected disjoint circles"):
        square_with_holes(0.1, holes=[(0.4, 0.5, 0.15), (0.6, 0.5, 0.15)])
    with pytest.raises(ValueError, match=r"holes: expected positive radii"):
        square_with_holes(0.1, holes=[(0.5, 0.5, 0.0)])
    with pytest.raises(ValueError, match=r"radius: expected a positive number"):
        disk(0.1, radius=-1.0)
    with pytest.raises(ValueError, match=r"num_vertices: expected an integer >= 3"):
        random_polygon(0.1, num_vertices=2)
    with pytest.raises(ValueError, match=r"vertices: expected an array of at least 3"):
        polygon([[0, 0], [1, 1]], 0.1)
    with pytest.raises(ValueError, match=r"vertices: the polygon has zero area"):
        polygon([[0, 0], [1, 1], [2, 2]], 0.1)
    with pytest.raises(ValueError, match=r"num_nodes: expected a positive integer"):
        mesh_size(0, 1.0)
    assert square_with_holes(0.2, holes=[]).num_free > 0
