"""CSRMatrix, Pattern and Problem pickle and deep-copy; a CSRBuffer carries a matrix
through nn.Module's to(), state_dict() and torch.save."""
import copy
import io
import pickle
from functools import partial

import pytest
import torch

import learnsolve as ls
from learnsolve.problems import (ProblemSet, diffusion_2d, poisson_1d, poisson_2d,
                                 random_grid_problem, random_mesh_problem)
from learnsolve.solvers import PCG
from learnsolve.solvers.factor import LowerFactor

from cases import DEVICES, make


def same_matrix(A: ls.CSRMatrix, B: ls.CSRMatrix) -> bool:
    return (A.shape == B.shape and A.dtype == B.dtype and torch.equal(A.crow_indices, B.crow_indices)
            and torch.equal(A.col_indices, B.col_indices) and torch.equal(A.values, B.values))


@pytest.mark.parametrize("round_trip", [lambda x: pickle.loads(pickle.dumps(x)), copy.deepcopy],
                         ids=["pickle", "deepcopy"])
def test_matrix_round_trips_and_rebuilds_its_caches(round_trip):
    S, A = make("square")
    A.T, A @ A                                                     # fill the caches
    B = round_trip(A)
    assert same_matrix(A, B) and B.pattern is not A.pattern
    assert not B.pattern._cache                                    # caches dropped ...
    assert same_matrix(B.T, A.T) and same_matrix(B @ B, A @ A)     # ... and rebuilt


def test_matrices_that_share_a_pattern_share_it_after_a_pickle():
    A = ls.eye(4, dtype=torch.float64)
    B, C = pickle.loads(pickle.dumps((A, 3 * A)))
    assert B.pattern is C.pattern and torch.equal(C.values, 3 * A.values)


def test_a_leaf_that_records_gradients_keeps_doing_so():
    A = ls.eye(3, dtype=torch.float64).requires_grad_()
    B = copy.deepcopy(A)
    (B @ torch.ones(3, dtype=torch.float64)).sum().backward()
    assert B.requires_grad and torch.equal(B.values.grad, torch.ones(3, dtype=torch.float64))


@pytest.mark.parametrize("make_problem", [
    lambda: poisson_1d(8, dtype=torch.float64),
    lambda: poisson_2d(4, dtype=torch.float64),
    lambda: diffusion_2d(6, seed=1, dtype=torch.float64),
    lambda: random_mesh_problem(3, h=0.3, num_parts=3, dtype=torch.float64),
], ids=["poisson_1d", "poisson_2d", "diffusion_2d", "fem"])
def test_problems_pickle_to_equal_problems(make_problem):
    problem = make_problem()
    copied = pickle.loads(pickle.dumps(problem))
    assert same_matrix(problem.A, copied.A) and copied.name == problem.name
    for field in ("b", "coordinates"):
        original = getattr(problem, field, None)
        if isinstance(original, torch.Tensor):
            assert torch.equal(original, getattr(copied, field))
    if getattr(problem, "partition", None) is not None:
        for before, after in zip(problem.partition.parts, copied.partition.parts, strict=True):
            assert torch.equal(before, after)


def test_problem_set_and_module_pickle():
    problems = ProblemSet(partial(random_grid_problem, n=6, dtype=torch.float64), 3, seed=2)
    for subset in (problems, problems[1:], problems.to(torch.float32)):
        copied = pickle.loads(pickle.dumps(subset))
        assert [p.name for p in copied] == [p.name for p in subset]
        assert all(same_matrix(p.A, q.A) for p, q in zip(copied, subset))
    model = PCG(M=LowerFactor(problems[0]))
    buffer = io.BytesIO()
    torch.save(model, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=False)
    assert torch.equal(loaded.M.values, model.M.values)


class Smoother(torch.nn.Module):
    def __init__(self, A):
        super().__init__()
        self.A = ls.CSRBuffer(A)

    def forward(self, x):
        return x - 0.25 * (self.A() @ x)


def test_csr_buffer_follows_dtype_and_state_dict():
    A = poisson_2d(4, dtype=torch.float32).A
    model = Smoother(A).double()
    assert model.A().dtype == torch.float64 and model.A.crow_indices.dtype == torch.int64
    assert sorted(model.state_dict()) == ["A.col_indices", "A.crow_indices", "A.values"]
    x = torch.randn(16, dtype=torch.float64)
    expected = x - 0.25 * (A.double() @ x)
    assert torch.allclose(model(x), expected)
    other = Smoother(2 * A).double()
    other.load_state_dict(model.state_dict())
    assert torch.allclose(other(x), expected)


@pytest.mark.parametrize("device", DEVICES)
def test_csr_buffer_moves_with_its_module(device):
    model = Smoother(poisson_1d(5, dtype=torch.float64).A).to(device)
    assert model.A().device.type == torch.device(device).type
    assert model(torch.ones(5, dtype=torch.float64, device=device)).device == model.A().device


def test_csr_buffer_caches_its_pattern_until_the_indices_change():
    holder = ls.CSRBuffer(poisson_1d(4, dtype=torch.float64).A)
    first = holder()
    assert holder().pattern is first.pattern
    holder.load_state_dict(holder.state_dict())                      # copies in place
    assert holder().pattern is not first.pattern
    bad = dict(holder.state_dict())
    bad["col_indices"] = bad["col_indices"].clone()
    bad["col_indices"][0] = 99
    holder.load_state_dict(bad)
    with pytest.raises(ValueError, match=r"col_indices: expected values in \[0, 4\)"):
        holder()


def test_learnable_csr_buffer_is_a_parameter():
    holder = ls.CSRBuffer(ls.eye(3, dtype=torch.float64), learnable=True)
    assert [name for name, _ in holder.named_parameters()] == ["values"]
    (holder() @ torch.ones(3, dtype=torch.float64)).sum().backward()
    assert torch.equal(holder.values.grad, torch.ones(3, dtype=torch.float64))
    with pytest.raises(TypeError, match=r"A: expected a CSRMatrix"):
        ls.CSRBuffer(torch.eye(3))
    with pytest.raises(TypeError, match=r"learnable: expected a bool"):
        ls.CSRBuffer(ls.eye(3), learnable="yes")
    frozen = pickle.loads(pickle.dumps(holder))
    assert same_matrix(frozen(), holder())
