"""The public Pattern: its named cached structure, clear_cache and CSRMatrix.from_pattern."""
import numpy as np
import pytest
import scipy.sparse as sp
from scipy.sparse.csgraph import reverse_cuthill_mckee
import torch

from learnsolve import CSRMatrix
from learnsolve.core.pattern import ORDERINGS, Pattern


def _matrix(dense):
    return CSRMatrix.from_dense(torch.tensor(dense, dtype=torch.float64))


def test_matrices_with_one_structure_share_its_pattern():
    A = _matrix([[2.0, -1.0], [0.0, 3.0]])
    assert A.with_values(A.values * 2).pattern is A.pattern
    assert (3 * A).pattern is A.pattern
    assert A.detach().pattern is A.pattern


def test_from_pattern_checks_the_values():
    A = _matrix([[2.0, -1.0], [0.0, 3.0]])
    B = CSRMatrix.from_pattern(A.pattern, torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64))
    assert B.pattern is A.pattern
    assert torch.equal(B.to_dense(), torch.tensor([[1.0, 2.0], [0.0, 3.0]], dtype=torch.float64))
    with pytest.raises(ValueError, match=r"values: expected a tensor of shape \(3,\)"):
        CSRMatrix.from_pattern(A.pattern, torch.ones(2))
    with pytest.raises(ValueError, match=r"values: expected a tensor of shape \(3,\)"):
        CSRMatrix.from_pattern(A.pattern, [1.0, 2.0, 3.0])
    if torch.cuda.is_available():
        with pytest.raises(ValueError, match="values: expected device"):
            CSRMatrix.from_pattern(A.pattern, torch.ones(3, device="cuda"))


def test_diagonal_positions_and_stores_diagonal():
    A = _matrix([[2.0, -1.0, 0.0], [0.0, 0.0, 1.0], [4.0, 0.0, 5.0]])   # row 1: no diagonal
    assert A.pattern.diagonal_positions().tolist() == [0, -1, 4]
    assert not A.pattern.stores_diagonal()
    B = _matrix([[1.0, 2.0], [0.0, 3.0]])
    assert B.pattern.diagonal_positions().tolist() == [0, 2]
    assert B.pattern.stores_diagonal()


def test_diagonal_is_the_identity_pattern_and_one_object():
    A = _matrix([[2.0, -1.0], [0.0, 3.0]])
    D = A.pattern.diagonal()
    assert D is A.pattern.diagonal()
    assert D.crow.tolist() == [0, 1, 2] and D.col.tolist() == [0, 1]


@pytest.mark.parametrize("dense, symmetric", [
    ([[1.0, 2.0], [3.0, 4.0]], True),
    ([[1.0, 2.0], [0.0, 4.0]], False),     # values never matter, only the structure
    ([[1.0, 0.0], [0.0, 4.0]], True),
])
def test_is_symmetric(dense, symmetric):
    assert _matrix(dense).pattern.is_symmetric() is symmetric


def test_triangular_levels_level_of_fill_and_ordering_are_cached():
    S = sp.random(30, 30, density=0.1, random_state=0, format="csr") + sp.eye(30)
    A = CSRMatrix.from_scipy((S + S.T).tocsr(), dtype=torch.float64)
    p = A.pattern
    assert p.triangular_levels(True) is p.triangular_levels(True)
    assert p.level_of_fill(1) is p.level_of_fill(1)
    assert p.ordering("rcm") is p.ordering("rcm")
    assert p.ordering(None) is None
    fill, positions = p.level_of_fill(0)
    assert torch.equal(fill.col, p.col) and torch.equal(positions, torch.arange(p.nnz))
    with pytest.raises(ValueError, match="ordering: expected one of"):
        p.ordering("amd")
    assert "rcm" in ORDERINGS


def test_clear_cache_drops_and_recomputes():
    A = _matrix([[2.0, -1.0], [-1.0, 3.0]])
    p = A.pattern
    row, (t, perm) = p.row(), p.transpose()
    product = p.product(p)
    p.clear_cache()
    assert p.row() is not row and torch.equal(p.row(), row)
    t2, perm2 = p.transpose()
    assert t2 is not t and torch.equal(t2.col, t.col) and torch.equal(perm2, perm)
    assert p.product(p) is not product


def test_cached_with_any_object_lives_as_long_as_it():
    import gc

    class Key:
        pass

    p = Pattern(torch.tensor([0, 1]), torch.tensor([0]), (1, 1))
    key = Key()
    calls = []
    assert p.cached_with(key, "k", lambda: calls.append(1) or 7) == 7
    assert p.cached_with(key, "k", lambda: calls.append(1) or 8) == 7
    assert len(calls) == 1
    del key
    gc.collect()
    assert len(p._pair_cache) == 0


def test_value_cache_callbacks_survive_the_module_teardown(monkeypatch):
    """At interpreter exit a module's globals can be gone (None) before the last
    tensors die: an entry's weakref callback must not need them (CI printed
    "Exception ignored ... 'NoneType' object has no attribute 'pop'")."""
    import gc
    import sys
    from learnsolve.core import cache
    raised = []
    monkeypatch.setattr(sys, "unraisablehook", raised.append)
    v = torch.ones(3)
    cache.values_cache(v, "teardown").get((v,), lambda: 1)
    entries = cache._BY_VALUES
    monkeypatch.setattr(cache, "_BY_VALUES", None)      # as at exit
    del v
    gc.collect()
    assert raised == []
    assert not any(name == "teardown" for _, name in entries)


def test_a_value_cache_entry_dies_with_its_tensor():
    import gc
    from learnsolve.core import cache
    v = torch.ones(3)
    cache.values_cache(v, "probe").get((v,), lambda: 1)
    key = (id(v), "probe")
    assert key in cache._BY_VALUES
    del v
    gc.collect()
    assert key not in cache._BY_VALUES


def test_the_rcm_ordering_of_a_batch_is_that_of_each_of_its_problems():
    """Each connected component is ordered as if alone (scipy's tie-breaks depend on the
    whole graph), the components in the order of their first unknowns."""
    import functools
    from learnsolve.problems import ProblemSet, random_spd_problem
    from learnsolve.problems.batch import batch_problems
    make = functools.partial(random_spd_problem, nodes=(200, 800), dtype=torch.float64)
    problems = list(ProblemSet(make, 6, seed=7))
    batch = batch_problems(problems)
    perm = batch.A.pattern.ordering("rcm")
    offsets = batch.info["offsets"]
    for p, start, end in zip(problems, offsets[:-1], offsets[1:]):
        assert torch.equal(perm[start:end] - start, p.A.pattern.ordering("rcm"))
    alone = problems[0].A.pattern.ordering("rcm").numpy()
    graph = sp.csr_matrix((np.ones(problems[0].A.nnz), problems[0].A.col_indices.numpy(),
                           problems[0].A.crow_indices.numpy()), shape=problems[0].A.shape)
    assert np.array_equal(alone, reverse_cuthill_mckee(graph, symmetric_mode=False))
    # A lone unknown stays where it is, between the components around it.
    A = CSRMatrix.from_dense(torch.tensor([[2.0, 1, 0, 0], [1, 2, 0, 0], [0, 0, 3, 0],
                                           [0, 0, 0, 4]]))
    assert A.pattern.ordering("rcm").tolist() == [1, 0, 2, 3]
