"""P1 finite elements: element matrices, symmetry and definiteness, row sums,
second-order convergence, coefficients, Dirichlet data, bad input."""
import math

import numpy as np
import pytest
import scipy.sparse.linalg as sla
import torch

from learnsolve.core.validation import check_csr_arrays
from learnsolve.problems import (JumpCoefficient, LognormalCoefficient, Mesh,
                                 discretisation_error, disk, fem_problem, l_shape, load_vector,
                                 lumped_mass, poisson_2d, random_polygon, rectangle,
                                 square_with_holes, stiffness_matrix)

PI = math.pi


def reference_stiffness(points, triangles, k):
    """Element by element, with the gradients from the inverse Jacobian."""
    n = len(points)
    K = np.zeros((n, n))
    for t, tri in enumerate(triangles):
        p = points[tri]
        J = np.array([p[1] - p[0], p[2] - p[0]]).T
        grads = np.linalg.solve(J.T, np.array([[-1.0, 1.0, 0.0], [-1.0, 0.0, 1.0]]))
        area = abs(np.linalg.det(J)) / 2
        K[np.ix_(tri, tri)] += k[t] * area * grads.T @ grads
    return K


def structured_mesh(n):
    """The unit square, (n + 2)^2 grid points, each cell cut along one diagonal."""
    x = np.linspace(0.0, 1.0, n + 2)
    X, Y = np.meshgrid(x, x, indexing="ij")
    idx = np.arange((n + 2) ** 2).reshape(n + 2, n + 2)
    a, b, c, d = idx[:-1, :-1].ravel(), idx[1:, :-1].ravel(), idx[1:, 1:].ravel(), \
        idx[:-1, 1:].ravel()
    tris = np.concatenate([np.c_[a, b, c], np.c_[a, c, d]])
    return Mesh(np.c_[X.ravel(), Y.ravel()], tris)


def test_element_matrices_match_reference():
    m = random_polygon(0.35, seed=2)
    k = np.random.default_rng(0).uniform(0.5, 2.0, m.num_triangles)
    K = stiffness_matrix(m.points, m.triangles, k)
    np.testing.assert_allclose(K.toarray(), reference_stiffness(m.points, m.triangles, k),
                               rtol=1e-12, atol=1e-12)


def test_structured_mesh_gives_the_5_point_laplacian(dtype):
    """On right triangles the P1 stiffness matrix of the Laplacian is eq. 32 exactly
    (the couplings along the diagonals cancel to stored zeros)."""
    n = 6
    p = fem_problem(structured_mesh(n), dtype=dtype)
    np.testing.assert_allclose(p.A.to_dense().double().numpy(),
                               poisson_2d(n, dtype=torch.float64).A.to_dense().numpy(),
                               atol=1e-6 if dtype == torch.float32 else 1e-14)
    torch.testing.assert_close(p.coordinates, poisson_2d(n, dtype=dtype).coordinates)
    assert torch.equal(p.boundary, poisson_2d(n).boundary)


@pytest.mark.parametrize("make", [lambda: disk(0.15), lambda: l_shape(0.2),
                                  lambda: square_with_holes(0.08),
                                  lambda: random_polygon(0.15, seed=7)])
def test_fem_matrix_symmetric_positive_definite_row_sums(make):
    mesh = make()
    k = LognormalCoefficient(1, sigma=1.0, correlation_length=0.3)
    p = fem_problem(mesh, k, dtype=torch.float64)
    A = p.A
    check_csr_arrays(A.crow_indices, A.col_indices, A.values, A.shape)
    assert A.shape == (mesh.num_free, mesh.num_free)
    D = A.to_dense().numpy()
    np.testing.assert_array_equal(D, D.T)                           # exactly symmetric
    np.linalg.cholesky(D)                                          # positive definite
    # pattern: the graph of the free nodes of the mesh (plus the diagonal)
    e = mesh.edges
    index = np.full(mesh.num_nodes, -1)
    index[mesh.free] = np.arange(mesh.num_free)
    e = index[e]
    e = e[(e >= 0).all(axis=1)]
    assert A.nnz == mesh.num_free + 2 * len(e)
    # rows of nodes with no Dirichlet neighbour sum to zero; the others carry the eliminated
    # couplings (nonzero unless they cancel exactly, which a quality mesh does not do)
    row_sum = D.sum(axis=1)
    near = p.boundary.numpy()
    scale = np.abs(np.diag(D))
    assert (np.abs(row_sum[~near]) <= 1e-12 * scale[~near]).all()
    assert (np.abs(row_sum[near]) > 1e-12 * scale[near]).all()
    assert row_sum.sum() > 0                                       # 1^T A 1 > 0
    assert near.any() and (~near).any()
    # the coordinates are the free nodes', the mesh is kept whole
    np.testing.assert_array_equal(p.coordinates.numpy(), mesh.points[mesh.free])
    assert p.mesh is mesh


def test_full_stiffness_rows_sum_to_zero_and_constants_in_kernel():
    m = disk(0.2)
    K = stiffness_matrix(m.points, m.triangles, JumpCoefficient(0, bounds=((-1, 1), (-1, 1))))
    assert abs(K @ np.ones(m.num_nodes)).max() < 1e-12 * abs(K.diagonal()).max()
    assert abs(K - K.T).max() == 0


def solve(problem):
    return sla.spsolve(problem.A.to_scipy().tocsc(), problem.b.numpy())


def observed_order(make, **kwargs):
    """Slope of log(error) against log(h_eff), h_eff = N^(-1/2) (robust on unstructured
    meshes); errors in the lumped-mass discrete L2 norm."""
    hs, errors = [], []
    for h in (0.1, 0.05, 0.025):
        p = fem_problem(make(h), dtype=torch.float64, **kwargs)
        errors.append(discretisation_error(p, solve(p)))
        hs.append(p.mesh.num_nodes ** -0.5)
    return np.polyfit(np.log(hs), np.log(errors), 1)[0], errors


def test_second_order_convergence_unit_square():
    order, errors = observed_order(
        rectangle, f=lambda x, y: 2 * PI ** 2 * np.sin(PI * x) * np.sin(PI * y),
        solution=lambda x, y: np.sin(PI * x) * np.sin(PI * y))
    assert order > 1.85, (order, errors)
    assert errors[-1] < 1e-3


def test_second_order_convergence_disk_nonzero_dirichlet():
    def u(x, y):
        return np.exp(x) * np.cos(2 * y) + x * y

    def f(x, y):  # -laplacian(u)
        return 3 * np.exp(x) * np.cos(2 * y)
    order, errors = observed_order(disk, f=f, dirichlet=u, solution=u)
    assert order > 1.85, (order, errors)


def test_second_order_convergence_l_shape_variable_coefficient():
    def k(x, y):
        return 1 + x * x + y * y

    def u(x, y):
        return np.sin(PI * x) * np.sin(PI * y)

    def f(x, y):  # -div(k grad u)
        return -(2 * x * PI * np.cos(PI * x) * np.sin(PI * y) +
                 2 * y * PI * np.sin(PI * x) * np.cos(PI * y)) + k(x, y) * 2 * PI ** 2 * u(x, y)
    order, errors = observed_order(l_shape, coefficient=k, f=f, dirichlet=u, solution=u)
    assert order > 1.85, (order, errors)


def test_load_vector_and_mass():
    m = l_shape(0.2)
    np.testing.assert_allclose(lumped_mass(m.points, m.triangles).sum(), 3.0, rtol=1e-12)
    # integral of a linear f is exact: sum_i F_i = integral of f (the phi_i sum to 1)
    F = load_vector(m.points, m.triangles, lambda x, y: 2 + x - 3 * y)
    # the L-shape is three unit squares, centred at (-1/2, -1/2), (-1/2, 1/2), (1/2, 1/2)
    exact = sum(2 + cx - 3 * cy for cx, cy in [(-0.5, -0.5), (-0.5, 0.5), (0.5, 0.5)])
    np.testing.assert_allclose(F.sum(), exact, rtol=1e-12)
    # for a linear f the rule is exact for f phi_i: F = M f(nodes), M the consistent mass
    # matrix, area / 12 * [[2, 1, 1], [1, 2, 1], [1, 1, 2]] per triangle
    m = random_polygon(0.3, seed=4)
    M = np.zeros((m.num_nodes, m.num_nodes))
    local = np.ones((3, 3)) + np.eye(3)
    for tri, area in zip(m.triangles, m.areas):
        M[np.ix_(tri, tri)] += area / 12 * local
    x, y = m.points.T
    np.testing.assert_allclose(load_vector(m.points, m.triangles, lambda x, y: 1 + 2 * x - 3 * y),
                               M @ (1 + 2 * x - 3 * y), rtol=1e-12, atol=1e-15)
    # and each F_i of a constant f is f times the lumped mass
    np.testing.assert_allclose(load_vector(m.points, m.triangles, 2.5),
                               2.5 * lumped_mass(m.points, m.triangles), rtol=1e-12)


def test_dirichlet_data_and_plain_problem():
    m = disk(0.2)
    plain = fem_problem(m, dtype=torch.float64)
    assert plain.b is None and plain.solution is None
    assert plain.rhs().shape == (m.num_free,)                        # random
    # u = 1 on the boundary, f = 0: the discrete solution is exactly 1 (constants harmonic)
    p = fem_problem(m, dirichlet=1.0, dtype=torch.float64)
    np.testing.assert_allclose(solve(p), 1.0, rtol=1e-12)
    values = p.mesh_values(torch.from_numpy(solve(p)))
    np.testing.assert_allclose(values, 1.0, rtol=1e-12)
    # linear u is reproduced exactly by P1 (f = 0)
    p = fem_problem(m, dirichlet=lambda x, y: 2 * x - y + 3, dtype=torch.float64)
    x, y = p.coordinates.numpy().T
    np.testing.assert_allclose(solve(p), 2 * x - y + 3, rtol=1e-12)


@pytest.mark.parametrize("coefficient, error, message", [
    (0.0, ValueError, r"coefficient: expected positive values"),
    (-2.0, ValueError, r"coefficient: expected positive values"),
    (lambda x, y: x, ValueError, r"coefficient: expected positive values"),
    (lambda x, y: np.ones(3), ValueError, r"coefficient: expected f\(x, y\) to return"),
    (np.ones(5), ValueError, r"coefficient: expected one value per triangle"),
    ("lognormal", TypeError, r"coefficient: expected a number or a callable"),
    (float("inf"), ValueError, r"coefficient: expected finite values"),
])
def test_bad_coefficient(coefficient, error, message):
    with pytest.raises(error, match=message):
        fem_problem(disk(0.3), coefficient)


def test_bad_mesh_and_source():
    with pytest.raises(TypeError, match=r"mesh: expected a learnsolve.problems.Mesh"):
        fem_problem(np.zeros((3, 2)))
    with pytest.raises(TypeError, match=r"f: expected a number or a callable"):
        fem_problem(disk(0.3), f="one")
