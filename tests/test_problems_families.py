"""Random problem families for learning across problems: reproducible by seed, the sizes
and families asked for, SPD, named in info["family"]."""
import functools

import numpy as np
import pytest
import torch

from learnsolve.problems import (SPD_FAMILIES, ProblemSet, random_anisotropic_problem,
                                 random_grid_problem, random_mesh_problem, random_spd_problem)
from learnsolve.solvers import check_spd

F64 = torch.float64


def test_the_mixture_draws_every_family_at_the_sizes_asked():
    problems = ProblemSet(functools.partial(random_spd_problem, nodes=(100, 400), dtype=F64), 16,
                          seed=3)
    families = {p.info["family"] for p in problems}
    assert {f.split()[0] for f in families} == {"FEM", "anisotropic", "jump", "lognormal"}
    for p in problems:
        assert 70 < p.num_nodes < 520, (p.info["family"], p.num_nodes)
        check_spd(p.A)


def test_a_seed_gives_the_same_problem():
    for factory in (random_spd_problem, random_anisotropic_problem,
                    functools.partial(random_grid_problem, n=8, coefficient="jump"),
                    functools.partial(random_mesh_problem, h=0.3, geometry="any")):
        a, b, c = factory(5, dtype=F64), factory(5, dtype=F64), factory(6, dtype=F64)
        assert torch.equal(a.A.values, b.A.values) and torch.equal(a.A.col_indices,
                                                                   b.A.col_indices)
        assert a.A.nnz != c.A.nnz or not torch.equal(a.A.values, c.A.values)


def test_anisotropic_problems_vary_in_strength_and_direction():
    problems = ProblemSet(functools.partial(random_anisotropic_problem, n=6,
                                            epsilon=(1e-2, 1e-1), dtype=F64), 6, seed=0)
    eps = np.array([p.info["epsilon"] for p in problems])
    theta = np.array([p.info["theta"] for p in problems])
    assert ((1e-2 <= eps) & (eps <= 1e-1)).all() and len(set(eps)) == 6
    assert ((0 <= theta) & (theta < np.pi)).all()
    A = problems[0].A
    off = A.values[A.col_indices != A.row_indices()]
    assert A.shape == (36, 36) and bool((off > 0).any())      # what five-point grids lack


def test_families_are_named():
    assert random_grid_problem(0, n=4, coefficient="lognormal").info["family"] == "lognormal"
    assert random_mesh_problem(0, h=0.4, geometry="disk").info["family"] == "FEM disk"
    assert random_spd_problem(1, families=("anisotropic",), nodes=(50, 60)).info["family"] == \
        "anisotropic"


@pytest.mark.parametrize("options, message", [
    (dict(nodes=(10, 5)), "nodes: expected 1 <= low <= high"),
    (dict(families=("poisson",)), "families: expected a non-empty subset"),
    (dict(families=()), "families: expected a non-empty subset"),
])
def test_bad_input(options, message):
    with pytest.raises(ValueError, match=message):
        random_spd_problem(0, **options)
    assert set(SPD_FAMILIES) == {"lognormal", "jump", "fem", "anisotropic"}
    with pytest.raises(ValueError, match="epsilon: expected 0 < low <= high"):
        random_anisotropic_problem(0, epsilon=(0.0, 1.0))
