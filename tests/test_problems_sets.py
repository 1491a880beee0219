"""Problem (right-hand sides, conversion, validation), ProblemSet (seeded, split, lazy),
pyamg's example matrices, and the plots."""
from functools import partial

import matplotlib
import numpy as np
import pytest
import scipy.sparse as sp
import torch
from matplotlib.figure import Figure

import learnsolve as ls
from learnsolve.problems import (EXAMPLES, Problem, ProblemSet, diffusion_2d, disk, fem_problem,
                                 load_example, plot_field, plot_mesh, plot_sparsity, poisson_1d,
                                 poisson_2d, random_grid_problem, random_mesh_problem)


# ---------------------------------------------------------------------------- Problem
def test_random_rhs_seeded_shapes_and_devices(dtype, device):
    p = poisson_2d(4, dtype=dtype, device=device)
    b = p.rhs()
    assert b.shape == (16,) and b.dtype == dtype and b.device.type == device
    B = p.rhs(3)
    assert B.shape == (16, 3)
    # the problem's own stream: continues between calls, restarts with reseed
    assert not torch.equal(p.rhs(), p.rhs())
    first = p.reseed().rhs(2)
    assert torch.equal(first, p.reseed().rhs(2))
    # the same numbers on every device and in every run
    g = torch.Generator().manual_seed(7)
    expected = torch.randn(16, 2, generator=g, dtype=dtype)
    assert torch.equal(p.random_rhs(2, seed=7).cpu(), expected)
    assert torch.equal(p.rhs(2, generator=torch.Generator().manual_seed(7)).cpu(), expected)
    assert torch.equal(poisson_2d(4, dtype=dtype, seed=11).rhs().cpu(),
                       poisson_2d(4, dtype=dtype, seed=11).rhs().cpu())
    u = p.random_rhs(4, seed=1, distribution="uniform", normalize=True)
    assert (u >= 0).all()
    torch.testing.assert_close(u.norm(dim=0), torch.ones(4, dtype=dtype, device=device))


def test_fixed_rhs():
    b = torch.arange(5.0, dtype=torch.float64)
    p = poisson_1d(5, b=b)                             # converted to the problem's dtype
    assert p.rhs().dtype == torch.get_default_dtype()
    assert torch.equal(p.rhs().double(), b)
    assert p.random_rhs(2).shape == (5, 2)               # random ones stay available
    with pytest.raises(ValueError, match=r"k: this problem has a fixed right-hand side"):
        p.rhs(2)
    with pytest.raises(ValueError, match=r"b: expected a float tensor of shape \(5,\) or "
                                         r"\(5, k\)"):
        poisson_1d(5, b=torch.ones(4))


def test_random_rhs_drawn_in_float32_for_speed_are_exact_in_float64():
    from learnsolve.train.sampling import draw_rhs, position_seed
    p = poisson_1d(50, dtype=torch.float64)
    raw = p.random_rhs(3, seed=5, draw_dtype=torch.float32)
    assert raw.dtype == torch.float64 and torch.equal(raw.float().double(), raw)
    assert not torch.equal(p.random_rhs(3, seed=5).float().double(), p.random_rhs(3, seed=5))
    (X,) = draw_rhs([p], 3, seed=0, positions=[4])      # the Trainer's vectors: float32 draws
    raw = p.random_rhs(3, seed=position_seed(0, 4), draw_dtype=torch.float32)
    torch.testing.assert_close(X, raw / raw.norm(dim=0), rtol=0, atol=0)
    with pytest.raises(TypeError, match="draw_dtype: expected torch.float32 or torch.float64"):
        p.random_rhs(draw_dtype=torch.float16)


def test_random_rhs_errors():
    p = poisson_1d(3)
    with pytest.raises(ValueError, match=r"k: expected an integer >= 1"):
        p.rhs(0)
    with pytest.raises(ValueError, match=r"distribution: expected 'normal' or 'uniform'"):
        p.random_rhs(distribution="cauchy")
    with pytest.raises(TypeError, match=r"generator: expected a torch.Generator"):
        p.random_rhs(generator=np.random.default_rng(0))
    with pytest.raises(ValueError, match=r"seed: expected an integer >= 0"):
        p.random_rhs(seed=-1)


def test_problem_to(device):
    p = fem_problem(disk(0.3), f=1.0, solution=lambda x, y: x, dtype=torch.float64)
    p = p.with_partition(2)
    q = p.to(device, torch.float32)
    assert q.A.dtype == q.b.dtype == q.coordinates.dtype == q.solution.dtype == torch.float32
    for t in (q.A.values, q.b, q.coordinates, q.solution, q.boundary,
              q.partition.membership, q.partition.overlapped[1]):
        assert t.device.type == device
    assert q.mesh is p.mesh and q.name == p.name and q.boundary.dtype == torch.bool
    assert p.A.dtype == torch.float64                  # the original is unchanged
    assert "fixed b" in repr(p) and "partition=2 parts" in repr(p)


def test_problem_validation():
    A = ls.eye(3)
    with pytest.raises(TypeError, match=r"A: expected a CSRMatrix"):
        Problem(np.eye(3))
    with pytest.raises(ValueError, match=r"A: expected a square matrix"):
        Problem(ls.eye(3, 2))
    with pytest.raises(ValueError, match=r"coordinates: expected a float tensor of shape "
                                         r"\(3, d\)"):
        Problem(A, coordinates=torch.zeros(2, 2))
    with pytest.raises(ValueError, match=r"boundary: expected a bool tensor of shape \(3,\)"):
        Problem(A, boundary=torch.zeros(3))
    with pytest.raises(ValueError, match=r"mesh: expected 3 free nodes"):
        Problem(A, mesh=disk(0.5))
    with pytest.raises(TypeError, match=r"mesh: expected a Mesh"):
        Problem(A, mesh="disk")
    with pytest.raises(ValueError, match=r"partition: expected a partition of 3 nodes"):
        Problem(A, partition=poisson_1d(4).with_partition(2).partition)
    with pytest.raises(ValueError, match=r"problem: expected a problem with a mesh"):
        poisson_1d(3).mesh_values(torch.zeros(3))


# ---------------------------------------------------------------------------- ProblemSet
def small_factory(seed, index):
    return diffusion_2d(4 + index % 3, coefficient="lognormal", seed=seed % 1000,
                        dtype=torch.float64)


def test_problem_set_reproducible_and_lazy():
    calls = []

    def factory(seed, index):
        calls.append(index)
        return small_factory(seed, index)
    s = ProblemSet(factory, 6, seed=3)
    assert len(s) == 6 and calls == []                       # nothing made yet
    a = s[4]
    assert calls == [4] and s[4] is a                        # made once, cached
    again = ProblemSet(small_factory, 10, seed=3)[4]         # same problem, any count
    assert torch.equal(again.A.values, a.A.values)
    other = ProblemSet(small_factory, 6, seed=4)[4]
    assert not torch.equal(other.A.values, a.A.values)
    assert [p.num_nodes for p in s] == [16, 25, 36, 16, 25, 36]
    assert s.seed_of(1) != s.seed_of(2)
    uncached = ProblemSet(factory, 2, cache=False)
    assert uncached[0] is not uncached[0]


def test_factory_problems_are_named_apart():
    s = ProblemSet(small_factory, 4, seed=0)
    assert [p.name for p in s] == [f"2D diffusion, {n} x {n}, #{i}"
                                   for i, n in enumerate((4, 5, 6, 4))]
    assert s[2:][1].name.endswith(", #3")                      # the index in the whole set
    assert s.to(torch.float32)[3].name == s[3].name
    shared = poisson_1d(3)                                     # a factory that reuses a problem
    t = ProblemSet(lambda seed, i: shared, 2)
    assert [p.name for p in t] == ["1D Poisson, N = 3, #0", "1D Poisson, N = 3, #1"]
    assert shared.name == "1D Poisson, N = 3" and t[0] is not shared
    assert ProblemSet(lambda seed, i: Problem(ls.eye(3)), 1)[0].name == "problem, #0"
    given = [poisson_1d(3), poisson_1d(3)]
    assert [p.name for p in ProblemSet(given)] == ["1D Poisson, N = 3"] * 2   # kept as given


def test_problem_set_split_and_indexing():
    s = ProblemSet(small_factory, 10, seed=1)
    train, test = s.split(0.3)
    assert (len(train), len(test)) == (7, 3)
    assert sorted(train.indices + test.indices) == list(range(10))
    assert s.split(0.3)[1].indices == test.indices             # deterministic
    assert ProblemSet(small_factory, 10, seed=2).split(0.3)[1].indices != test.indices
    assert train[0] is s[train.indices[0]]                   # subsets share the cache
    assert s.split(0.2, shuffle=False)[1].indices == (8, 9)
    assert s[2:5].indices == (2, 3, 4) and s[[1, 1, 0]].indices == (1, 1, 0)
    assert s.split(0.0)[1].indices == () and len(s.split(1.0)[0]) == 0
    with pytest.raises(IndexError):
        s[10]
    with pytest.raises(ValueError, match=r"test_fraction: expected a number in \[0, 1\]"):
        s.split(1.5)
    with pytest.raises(TypeError, match=r"index: expected an integer"):
        s[1.0]


def test_problem_set_from_list_and_to(device):
    problems = [poisson_1d(n) for n in (3, 4, 5)]
    s = ProblemSet(problems)
    assert s[1] is problems[1] and len(s) == 3
    moved = s.to(device, torch.float64)
    assert all(p.device.type == device and p.dtype == torch.float64 for p in moved)
    assert s[0].dtype == torch.get_default_dtype()
    with pytest.raises(TypeError, match=r"source: expected a factory or a sequence of Problem"):
        ProblemSet([1, 2])
    with pytest.raises(ValueError, match=r"count: expected the number of problems"):
        ProblemSet(small_factory)
    with pytest.raises(ValueError, match=r"count: expected None or 3"):
        ProblemSet(problems, 2)
    with pytest.raises(TypeError, match=r"factory: expected it to return a Problem"):
        ProblemSet(lambda seed, i: None, 1)[0]


def test_ready_made_factories():
    s = ProblemSet(partial(random_mesh_problem, h=0.25, geometry="any", coefficient="lognormal",
                           num_parts=3, overlap=1), 5, seed=0)
    geometries = {p.mesh.name for p in s}
    assert len(geometries) >= 2
    assert all(p.partition.num_parts == 3 for p in s)
    assert torch.equal(s[2].A.values, random_mesh_problem(s.seed_of(2), 2, h=0.25,
                                                          geometry="any",
                                                          coefficient="lognormal").A.values)
    g = ProblemSet(partial(random_grid_problem, n=6, coefficient="jump"), 3, seed=1)
    assert len({float(p.A.values.max()) for p in g}) >= 1 and g[0].num_nodes == 36
    with pytest.raises(ValueError, match=r"geometry: expected one of"):
        random_mesh_problem(0, geometry="torus")
    with pytest.raises(ValueError, match=r"coefficient: expected 'constant', 'lognormal'"):
        random_mesh_problem(0, coefficient="smooth")


# ---------------------------------------------------------------------------- pyamg examples
@pytest.mark.parametrize("name", EXAMPLES)
def test_pyamg_examples(name):
    from pyamg.gallery import load_example as pyamg_load
    p = load_example(name, dtype=torch.float64)
    expected = sp.csr_array(pyamg_load(name)["A"])
    np.testing.assert_array_equal(p.A.to_dense().numpy(), expected.toarray())
    if p.coordinates is not None:
        vertices = pyamg_load(name)["vertices"]
        np.testing.assert_array_equal(p.coordinates.numpy(), vertices[:p.num_nodes])
    if p.mesh is not None:
        assert p.mesh.num_free == p.num_nodes
        # unknowns next to a Dirichlet vertex: those of the triangles that touch one
        tri = p.mesh.triangles
        touches = (tri >= p.num_nodes).any(axis=1)
        expected_near = np.zeros(p.num_nodes, bool)
        expected_near[tri[touches][tri[touches] < p.num_nodes]] = True
        assert np.array_equal(p.boundary.numpy(), expected_near)
        assert expected_near.any() == (p.mesh.num_nodes > p.num_nodes)
    assert p.info["symmetric"] == (name != "recirc_flow")
    assert p.info["singular"] == (name == "unit_square")
    P = p.with_partition(3, 1).partition
    assert P.num_parts == 3


def test_pyamg_example_errors():
    with pytest.raises(ValueError, match=r"complex-valued, not supported"):
        load_example("helmholtz_2D")
    with pytest.raises(ValueError, match=r"name: expected one of airfoil"):
        load_example("nope")


# ---------------------------------------------------------------------------- plots
@pytest.fixture
def no_new_pyplot_figures():
    import matplotlib.pyplot as plt
    before = plt.get_fignums()
    yield
    assert plt.get_fignums() == before                  # nothing registered with pyplot


def test_plot_mesh(no_new_pyplot_figures):
    p = fem_problem(disk(0.2)).with_partition(4, overlap=1)
    fig = plot_mesh(p)
    assert isinstance(fig, Figure)
    ax = fig.axes[0]
    assert len(ax.collections[0].get_paths()) == p.mesh.num_triangles
    colours = np.asarray(ax.collections[0].get_array())
    assert set(np.unique(colours.compressed() if np.ma.isMaskedArray(colours) else colours)) \
        <= set(range(4))
    assert len(np.unique(colours)) >= 4
    plain = plot_mesh(p.mesh)
    assert len(plain.axes[0].collections[0].get_paths()) == p.mesh.num_triangles
    grid = plot_mesh(poisson_2d(5).with_partition(2))
    assert len(grid.axes[0].collections[0].get_offsets()) == 25
    with pytest.raises(ValueError, match=r"problem: expected a Mesh, or a Problem with a mesh"):
        plot_mesh(poisson_1d(4))
    fig.savefig(__import__("io").BytesIO(), format="png")   # renders without a display
    assert matplotlib.get_backend() is not None


def test_plot_field(no_new_pyplot_figures):
    p = fem_problem(disk(0.25), dirichlet=1.0)
    fig = plot_field(p, torch.ones(p.num_nodes))
    coll = fig.axes[0].collections[0]
    assert np.allclose(coll.get_array(), 1.0) and len(fig.axes) == 2   # field and colour bar
    fig = plot_field(p, np.zeros(p.mesh.num_nodes), colorbar=False)
    assert len(fig.axes) == 1
    fig = plot_field(poisson_2d(6, 3), torch.arange(18.0))
    image = fig.axes[0].images[0].get_array()
    assert image.shape == (3, 6) and image[2, 1] == 1 * 3 + 2             # unknown i * ny + j
    fig = plot_field(poisson_1d(7), torch.arange(7.0))
    assert len(fig.axes[0].lines[0].get_xdata()) == 7
    with pytest.raises(ValueError, match=r"values: expected shape \(18,\)"):
        plot_field(poisson_2d(6, 3), torch.zeros(5))
    with pytest.raises(TypeError, match=r"problem: expected a Problem"):
        plot_field(disk(0.3), np.zeros(3))


def test_plot_sparsity(no_new_pyplot_figures):
    p = poisson_2d(5)
    for A in (p, p.A, p.A.to_scipy()):
        fig = plot_sparsity(A)
        line = fig.axes[0].lines[0]
        assert len(line.get_xdata()) == p.A.nnz
        assert sorted(zip(line.get_ydata(), line.get_xdata())) == sorted(
            zip(p.A.row_indices().tolist(), p.A.col_indices.tolist()))
    import matplotlib.pyplot as plt
    fig0, ax = plt.subplots()
    try:
        assert plot_sparsity(p, ax=ax) is fig0                 # draws on the given axes
    finally:
        plt.close(fig0)
    with pytest.raises(TypeError, match=r"A: expected a CSRMatrix, a Problem or a scipy"):
        plot_sparsity(np.eye(3))


def test_random_schwarz_problems_vary_and_have_floating_subdomains():
    from learnsolve.problems import floating_subdomains, random_schwarz_problem
    problems = ProblemSet(partial(random_schwarz_problem, dtype=torch.float64), 8, seed=0)
    sizes = [p.num_nodes for p in problems]
    parts = [p.partition.num_parts for p in problems]
    assert all(400 < n < 2_400 for n in sizes) and len(set(parts)) >= 5
    assert all(40 * 0.8 <= n / s <= 120 * 1.2 for n, s in zip(sizes, parts))
    floating = [p.info["floating_subdomains"] for p in problems]
    assert sum(f > 0 for f in floating) >= 3 and 0 in floating
    # A subdomain floats when no core node couples to an eliminated Dirichlet node.
    p = problems[int(np.argmax(floating))]
    touches = p.A.row_sum() > 1e-8 * p.A.diagonal()
    expected = sum(not bool(touches[p.partition.membership == i].any())
                   for i in range(p.partition.num_parts))
    assert floating_subdomains(p) == expected == max(floating)
    assert floating_subdomains(p.to(torch.float32)) == expected     # rounding is not coupling
    with pytest.raises(ValueError, match=r"nodes: expected 1 <= low <= high"):
        random_schwarz_problem(0, nodes=(2_000, 500))
    with pytest.raises(ValueError, match=r"partition: the problem has no partition"):
        floating_subdomains(poisson_1d(5))
