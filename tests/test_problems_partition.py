"""Partitions for restricted additive Schwarz: cover, connectivity, exactly delta layers of
overlap, boundary flags, restriction operators, local matrices, and RAS itself."""
import numpy as np
import pytest
import scipy.sparse as sp
import torch
from scipy.sparse import csgraph

import learnsolve as ls
from learnsolve.problems import (Partition, adjacency, disk, fem_problem, load_example,
                                 partition, poisson_1d, poisson_2d, polygon, random_polygon,
                                 square_with_holes)
from learnsolve.problems.decomposition import _rcb


def connected(G, nodes) -> bool:
    nodes = np.asarray(nodes)
    return csgraph.connected_components(G[nodes][:, nodes], directed=False)[0] == 1


def check_partition(P: Partition, G, num_parts: int, overlap: int):
    n = G.shape[0]
    assert P.num_parts == num_parts and P.overlap == overlap and P.num_nodes == n
    membership = P.membership.cpu().numpy()
    # the cores cover every node exactly once and agree with membership
    cores = [c.cpu().numpy() for c in P.parts]
    assert np.array_equal(np.sort(np.concatenate(cores)), np.arange(n))
    for i, core in enumerate(cores):
        assert core.size > 0 and np.array_equal(core, np.sort(core))
        assert (membership[core] == i).all()
        assert connected(G, core), f"subdomain {i} is not connected"
    for i in range(num_parts):
        nodes = P.overlapped[i].cpu().numpy()
        assert np.array_equal(nodes, np.unique(nodes))
        # independent multi-source BFS: D_i^delta = {v : dist(v, D_i) <= delta}
        dist = csgraph.dijkstra(G, unweighted=True, indices=cores[i], min_only=True)
        assert np.array_equal(nodes, np.flatnonzero(dist <= overlap))
        assert np.array_equal(P.distance[i].cpu().numpy(), dist[nodes].astype(int))
        assert np.array_equal(P.core_mask[i].cpu().numpy(), membership[nodes] == i)
        # boundary: a neighbour outside D_i^delta
        outside = np.ones(n, bool)
        outside[nodes] = False
        has_outside = (G[nodes] @ outside.astype(np.int64)) > 0
        assert np.array_equal(P.boundary[i].cpu().numpy(), has_outside)
        assert connected(G, nodes)


@pytest.mark.parametrize("num_parts", [1, 2, 3, 7, 16])
@pytest.mark.parametrize("overlap", [0, 1, 3])
def test_rcb_on_mesh(num_parts, overlap):
    p = fem_problem(random_polygon(0.08, seed=3))
    P = partition(p, num_parts, overlap)
    check_partition(P, adjacency(p), num_parts, overlap)
    assert P.imbalance < 1.15


@pytest.mark.parametrize("num_parts", [2, 5, 8])
@pytest.mark.parametrize("overlap", [0, 2])
def test_graph_bisection_without_coordinates(num_parts, overlap):
    p = load_example("bar")                              # elasticity, no coordinates
    assert p.coordinates is None
    P = partition(p, num_parts, overlap)                 # auto -> bfs
    check_partition(P, adjacency(p), num_parts, overlap)
    assert P.imbalance < 1.5


def test_bfs_bisection_on_mesh_and_grid():
    for p, parts in ((fem_problem(square_with_holes(0.06)), 6), (poisson_2d(15), 4)):
        P = partition(p, parts, 1, method="bfs")
        check_partition(P, adjacency(p), parts, 1)
        assert P.imbalance < 1.3


def test_repair_makes_disconnected_pieces_connected():
    """On a C shape, the median cut across the arms leaves the arms' tips in two pieces;
    the repair gives one of them to the other subdomain."""
    c_shape = [[0, 0], [4, 0], [4, 1], [1, 1], [1, 2], [4, 2], [4, 3], [0, 3]]  # cut: x = 1.75
    p = fem_problem(polygon(c_shape, 0.15))
    G = adjacency(p)
    raw = _rcb(p.coordinates.double().numpy(), 2)
    assert not connected(G, np.flatnonzero(raw == 1))     # the cut does split an arm
    P = partition(p, 2, 1, method="rcb")
    check_partition(P, G, 2, 1)
    assert (P.membership.numpy() != raw).sum() > 0


def test_poisson_1d_by_hand():
    P = partition(poisson_1d(10), 3, overlap=2, method="bfs")
    assert [c.tolist() for c in P.parts] == [[0, 1, 2], [3, 4, 5, 6], [7, 8, 9]]
    assert P.overlapped[1].tolist() == [1, 2, 3, 4, 5, 6, 7, 8]
    assert P.distance[1].tolist() == [2, 1, 0, 0, 0, 0, 1, 2]
    assert P.boundary_nodes(1).tolist() == [1, 8]
    assert P.boundary_nodes(0).tolist() == [4]
    d = P.boundary_indicator(torch.float64)
    assert d.tolist() == [0, 1, 0, 0, 1, 1, 0, 0, 1, 0]


def test_every_node_its_own_subdomain_and_one_subdomain():
    p = poisson_2d(3)
    P = partition(p, 9, overlap=1)
    check_partition(P, adjacency(p), 9, 1)
    P = partition(p, 1, overlap=2)
    assert P.overlapped[0].tolist() == list(range(9)) and not P.boundary[0].any()


def test_restrictions_partition_of_unity(dtype):
    p = fem_problem(disk(0.2), dtype=dtype)
    P = partition(p, 4, overlap=2)
    n = p.num_nodes
    total = torch.zeros(n, n, dtype=dtype)
    for i in range(P.num_parts):
        R, Rt = P.restriction(i, dtype=dtype), P.restricted_restriction(i, dtype=dtype)
        assert R.shape == Rt.shape == (P.overlapped[i].numel(), n)
        Rd, Rtd = R.to_dense(), Rt.to_dense()
        assert torch.equal(Rd.sum(1), torch.ones(R.shape[0], dtype=dtype))
        assert torch.equal(Rtd.sum(1), P.core_mask[i].to(dtype))      # extension rows empty
        assert torch.equal(Rtd, Rd * P.core_mask[i].to(dtype)[:, None])
        total += Rtd.T @ Rd
    assert torch.equal(total, torch.eye(n, dtype=dtype))              # sum R~^T R = I


def test_local_matrices_are_differentiable_gathers():
    p = fem_problem(disk(0.25), dtype=torch.float64)
    P = partition(p, 3, overlap=1)
    values = p.A.values.clone().requires_grad_()
    A = p.A.with_values(values)
    locals_ = P.local_matrices(A)
    dense = A.to_dense().detach()
    loss = 0
    for i, Ai in enumerate(locals_):
        idx = P.overlapped[i]
        assert torch.equal(Ai.to_dense().detach(), dense[idx][:, idx])
        R = P.restriction(i, dtype=torch.float64).to_dense()
        assert torch.allclose(Ai.to_dense().detach(), R @ dense @ R.T)
        loss = loss + Ai.values.sum()
    loss.backward()
    # each stored entry of A counted once per subdomain whose overlap holds its row and column
    expected = torch.zeros_like(values)
    rows, cols = A.row_indices(), A.col_indices
    for idx in P.overlapped:
        mask = torch.zeros(p.num_nodes, dtype=torch.bool)
        mask[idx] = True
        expected += (mask[rows] & mask[cols]).double()
    assert torch.equal(values.grad, expected)


def test_local_matrices_structure_is_computed_once_per_pattern():
    p = fem_problem(disk(0.25), dtype=torch.float64)
    P = partition(p, 3, overlap=1)
    first = P.local_matrices(p.A)
    again = P.local_matrices(p.A.with_values(2 * p.A.values))
    for A1, A2 in zip(first, again):
        assert A2.pattern is A1.pattern
        assert torch.equal(A2.values, 2 * A1.values)


def ras_spectral_radius(p, parts, overlap):
    """rho(I - M A) of RAS, M = sum_i R~_i^T A_i^{-1} R_i (paper eq. 44)."""
    P = partition(p, parts, overlap)
    A = p.A.to_dense().double().numpy()
    n = A.shape[0]
    M = np.zeros((n, n))
    for i, Ai in enumerate(P.local_matrices(p.A)):
        R = P.restriction(i, dtype=torch.float64).to_dense().numpy()
        Rt = P.restricted_restriction(i, dtype=torch.float64).to_dense().numpy()
        M += Rt.T @ np.linalg.solve(Ai.to_dense().double().numpy(), R)
    return np.abs(np.linalg.eigvals(np.eye(n) - M @ A)).max()


def test_restricted_additive_schwarz_converges_and_overlap_helps():
    p = poisson_2d(12, dtype=torch.float64)
    rho = [ras_spectral_radius(p, 4, overlap) for overlap in (0, 1, 2)]
    assert all(r < 1 for r in rho)
    assert rho[0] > rho[1] > rho[2]


def test_from_membership_and_errors():
    p = poisson_1d(6)
    P = Partition.from_membership(p.A, torch.tensor([0, 0, 1, 1, 2, 2]), overlap=1)
    assert P.overlapped[1].tolist() == [1, 2, 3, 4]
    with pytest.raises(ValueError, match=r"membership: expected subdomain ids 0..S-1, each used"):
        Partition.from_membership(p.A, [0, 0, 2, 2, 2, 2])
    with pytest.raises(ValueError, match=r"membership: expected an integer array of shape"):
        Partition.from_membership(p.A, [0, 1])
    with pytest.raises(ValueError, match=r"num_parts: expected at most 6 subdomains"):
        partition(p, 7)
    with pytest.raises(ValueError, match=r"num_parts: expected an integer >= 1"):
        partition(p, 0)
    with pytest.raises(ValueError, match=r"overlap: expected an integer >= 0"):
        partition(p, 2, -1)
    with pytest.raises(ValueError, match=r"method: expected 'auto', 'rcb' or 'bfs'"):
        partition(p, 2, method="metis")
    with pytest.raises(ValueError, match=r"coordinates: method 'rcb' needs node coordinates"):
        partition(p.A, 2, method="rcb")
    with pytest.raises(ValueError, match=r"coordinates: expected shape \(6, d\)"):
        partition(p.A, 2, coordinates=np.zeros((5, 2)))
    with pytest.raises(ValueError, match=r"coordinates: expected finite values"):
        partition(p.A, 2, coordinates=np.full((6, 1), np.nan))
    with pytest.raises(TypeError, match=r"A: expected a CSRMatrix, a Problem or a scipy"):
        partition(np.eye(3), 2)
    with pytest.raises(ValueError, match=r"A: expected a square matrix"):
        partition(ls.CSRMatrix.from_dense(torch.ones(2, 3)), 1)


def test_scipy_input_and_problem_attachment(device):
    S = sp.csr_array(poisson_2d(6).A.to_scipy())
    P = partition(S, 3, 1)
    check_partition(P, adjacency(S), 3, 1)
    p = poisson_2d(6, device=device).with_partition(3, overlap=1)
    assert p.partition.membership.device.type == device
    assert p.partition.overlapped[0].device.type == device
    assert p.to("cpu").partition.device.type == "cpu"


@pytest.mark.parametrize("method", ["bfs", "rcb"])
def test_disconnected_graph_still_covers_every_node(method):
    """Two decoupled 1D chains and isolated nodes: no subdomain can be connected across
    components, but every node gets exactly one subdomain and the overlap stays exact."""
    A = sp.block_diag([poisson_1d(7).A.to_scipy(), sp.eye_array(3),
                       poisson_1d(5).A.to_scipy()]).tocsr()
    coordinates = np.c_[np.arange(15.0), np.zeros(15)]
    P = partition(A, 4, 1, method=method, coordinates=coordinates)
    G = adjacency(A)
    assert np.array_equal(np.sort(torch.cat(P.parts).numpy()), np.arange(15))
    for i in range(4):
        dist = csgraph.dijkstra(G, unweighted=True, indices=P.parts[i].numpy(), min_only=True)
        assert np.array_equal(P.overlapped[i].numpy(), np.flatnonzero(dist <= 1))
    P = partition(ls.eye(6), 3, 2)                                 # no edges at all
    assert P.sizes == [2, 2, 2] and all(not b.any() for b in P.boundary)
