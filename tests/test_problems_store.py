"""ProblemSet.save / ProblemSet.load (learnsolve/problems/store.py): exact round trips of
every kind of problem, lazy and cache-free reading, parallel saving, refusal of unsafe,
corrupt or mismatched files, of a non-empty directory and of unsavable info."""
from __future__ import annotations

import dataclasses
import functools
import gc
import json
import os
import pickle
import weakref
from pathlib import Path

import numpy as np
import pytest
import torch

from learnsolve.core.csr import CSRMatrix
from learnsolve.problems import (ProblemSet, convection_diffusion_2d, disk, fem_problem,
                                 poisson_1d, poisson_2d, random_grid_problem,
                                 random_spd_problem, save_matrix)


def assert_same(x, y, where="problem"):
    """``x`` and ``y`` equal bit for bit, of the same types all the way down."""
    assert type(x) is type(y), f"{where}: {type(x).__name__} != {type(y).__name__}"
    if isinstance(x, torch.Tensor):
        assert (x.dtype, x.shape, x.device) == (y.dtype, y.shape, y.device), where
        assert torch.equal(x, y), where
    elif isinstance(x, np.ndarray):
        assert x.dtype == y.dtype and np.array_equal(x, y), where
    elif isinstance(x, (list, tuple)):
        assert len(x) == len(y), where
        for i, (a, b) in enumerate(zip(x, y)):
            assert_same(a, b, f"{where}[{i}]")
    elif isinstance(x, dict):
        assert list(x) == list(y), where
        for key in x:
            assert_same(x[key], y[key], f"{where}[{key!r}]")
    elif isinstance(x, CSRMatrix):
        for name in ("crow_indices", "col_indices", "values", "shape"):
            assert_same(getattr(x, name), getattr(y, name), f"{where}.{name}")
    elif dataclasses.is_dataclass(x):
        for f in dataclasses.fields(x):
            if f.init:
                assert_same(getattr(x, f.name), getattr(y, f.name), f"{where}.{f.name}")
    elif hasattr(x, "__dict__"):          # the coefficient fields: their whole state
        assert_same(vars(x), vars(y), where)
    else:
        assert x == y, where


def every_kind(dtype):
    """A problem of each kind the library makes, with b, solution, mesh, partition and
    info of every savable type between them."""
    fem = fem_problem(disk(0.3), f=1.0, dirichlet=lambda x, y: x, solution=lambda x, y: x * y,
                      dtype=dtype)
    grid = poisson_2d(6, dtype=dtype)
    extra = dataclasses.replace(
        poisson_1d(7, b=torch.arange(7.0), dtype=dtype), solution=torch.ones(7, 2, dtype=dtype),
        info={"nested": {"t": (1, (2.5, None)), "l": [True, "s", np.float32(0.25)]},
              "view": torch.arange(10)[2:5], "array": np.arange(6).reshape(2, 3)[:, ::-1],
              "empty": (), "int64": np.int64(-3), "big": 2**70})
    return [poisson_1d(5, dtype=dtype), grid, grid.with_partition(4, overlap=2),
            random_grid_problem(1, n=8, dtype=dtype),
            random_grid_problem(2, n=8, coefficient="jump", dtype=dtype),
            fem, fem.with_partition(3), random_spd_problem(3, nodes=(100, 200), dtype=dtype),
            random_spd_problem(5, nodes=(100, 200), families=("anisotropic",), dtype=dtype),
            convection_diffusion_2d(5, dtype=dtype), extra]


def _small(seed, index, dtype=torch.float64):
    """Module-level (picklable) factory of small problems of a few kinds."""
    return random_spd_problem(seed, nodes=(30, 60), families=("lognormal", "jump", "fem"),
                              dtype=dtype)


class _Reads:
    """``torch.load`` wrapped to record the files read."""

    def __init__(self, monkeypatch):
        self.files = []
        load = torch.load

        def counted(path, *args, **kwargs):
            self.files.append(Path(path).name)
            return load(path, *args, **kwargs)
        monkeypatch.setattr(torch, "load", counted)


def saved(tmp_path, count=6, name="set", factory=_small, **kwargs):
    return ProblemSet(factory, count, seed=4).save(tmp_path / name, **kwargs)


# ---------------------------------------------------------------------------- round trips
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
def test_every_kind_round_trips_exactly(tmp_path, dtype):
    problems = every_kind(dtype)
    assert problems[-1].b is not None and problems[5].solution is not None
    assert problems[2].partition is not None and problems[5].mesh is not None
    loaded = ProblemSet.load(ProblemSet(problems, seed=9).save(tmp_path))
    assert len(loaded) == len(problems) and loaded.seed == 9
    for original, copy in zip(problems, loaded):
        assert_same(original, copy)
        assert copy.dtype == dtype


def test_loaded_problems_keep_seeds_and_streams(tmp_path):
    problems = ProblemSet(_small, 5, seed=11)
    subset = problems[[4, 1]]
    loaded = ProblemSet.load(subset.save(tmp_path))
    assert loaded.seed == 11 and loaded.indices == (4, 1)
    assert [loaded.seed_of(i) for i in range(2)] == [subset.seed_of(i) for i in range(2)]
    assert [p.name[-2:] for p in loaded] == ["#4", "#1"]
    original = problems[4]
    original.random_rhs()                         # the stream's state is not saved
    assert torch.equal(loaded[0].random_rhs(), original.reseed().random_rhs())


def test_any_set_saves(tmp_path):
    problems = ProblemSet(_small, 4, seed=2)
    paths = [save_matrix(poisson_1d(n), tmp_path / f"m{n}.npz") for n in (3, 4)]
    sets = {"factory": problems, "subset": problems[1:3], "moved": problems.to(torch.float32),
            "files": ProblemSet.from_files(paths, dtype=torch.float64), "list": ProblemSet(
                [poisson_1d(3)], seed=5)}
    for name, source in sets.items():
        loaded = ProblemSet.load(source.save(tmp_path / name))
        assert loaded.indices == source.indices and loaded.seed == source.seed
        for a, b in zip(source, loaded):
            assert_same(a, b, name)
    again = ProblemSet.load(ProblemSet.load(tmp_path / "moved").save(tmp_path / "again"))
    assert_same(list(again), list(sets["moved"]))


def test_save_does_not_fill_the_cache(tmp_path):
    problems = ProblemSet(_small, 3)
    problems.save(tmp_path)
    assert problems._cache == {}


def test_load_to_a_device(tmp_path):
    loaded = ProblemSet.load(saved(tmp_path, 2), device="cpu", cache=True)
    assert loaded[0].device == torch.device("cpu") and loaded[0] is loaded[0]


# ---------------------------------------------------------------------------- laziness
def test_load_reads_the_index_alone_and_views_read_nothing(tmp_path, monkeypatch):
    directory = saved(tmp_path, 6)
    reads = _Reads(monkeypatch)
    loaded = ProblemSet.load(directory)
    train, test = loaded.split(0.5)
    views = [loaded[1:4], loaded[[5, 0]], train, loaded.to(torch.float32), test[:1]]
    assert reads.files == [] and len(views[0]) == 3
    assert [p.num_nodes for p in loaded[[5, 0]]] == [loaded[5].num_nodes, loaded[0].num_nodes]
    assert reads.files == ["problem-000005.pt", "problem-000000.pt", "problem-000005.pt",
                           "problem-000000.pt"]


def test_a_subset_reads_only_its_files(tmp_path, monkeypatch):
    directory = saved(tmp_path, 6)
    for i in (0, 2, 3, 5):                        # another rank's shard, absent here
        (directory / f"problem-{i:06d}.pt").unlink()
    reads = _Reads(monkeypatch)
    shard = ProblemSet.load(directory)[1::3]
    assert [p.name[-2:] for p in shard] == ["#1", "#4"]
    assert reads.files == ["problem-000001.pt", "problem-000004.pt"]


def test_cache_false_keeps_nothing_and_cache_true_reads_once(tmp_path, monkeypatch):
    directory = saved(tmp_path, 2)
    reads = _Reads(monkeypatch)
    loaded = ProblemSet.load(directory)
    first = loaded[0]
    assert loaded[0] is not first and reads.files == ["problem-000000.pt"] * 2
    ref = weakref.ref(first)
    del first
    gc.collect()
    assert ref() is None
    cached = ProblemSet.load(directory, cache=True)
    assert cached[1] is cached[1] and cached[1:][0] is cached[1]
    assert reads.files.count("problem-000001.pt") == 1


# ---------------------------------------------------------------------------- parallel save
def test_parallel_save_writes_the_same_files(tmp_path):
    one = saved(tmp_path, 5, "one")
    two = saved(tmp_path, 5, "two", functools.partial(_small, dtype=torch.float64), workers=2)
    assert sorted(os.listdir(one)) == sorted(os.listdir(two))
    for name in os.listdir(one):
        assert (one / name).read_bytes() == (two / name).read_bytes(), name


def test_parallel_save_needs_a_picklable_factory(tmp_path):
    problems = ProblemSet(lambda seed, index: poisson_1d(3), 2)
    with pytest.raises(TypeError, match="workers: .*module-level function"):
        problems.save(tmp_path, workers=2)
    assert not (tmp_path / "index.json").exists()
    assert ProblemSet.load(problems.save(tmp_path / "serial"))[1].num_nodes == 3


# ---------------------------------------------------------------------------- refusals
class _Planted:
    """What a hostile file could hold: an object whose unpickling runs code."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (str(self.marker),))


@pytest.mark.parametrize("how", ["torch.save", "pickle"])
def test_a_file_holding_objects_is_refused_not_run(tmp_path, how):
    directory = saved(tmp_path, 2)
    marker = tmp_path / "ran"
    path = directory / "problem-000001.pt"
    planted = {"format": "learnsolve-problem", "version": 1, "problem": _Planted(marker)}
    if how == "pickle":
        path.write_bytes(pickle.dumps(planted))
    else:
        torch.save(planted, path)
    loaded = ProblemSet.load(directory)
    with pytest.raises(ValueError, match=r"problem-000001\.pt: .*weights_only"):
        loaded[1]
    assert not marker.exists() and loaded[0].num_nodes > 0


def _rewrite_index(directory: Path, change) -> None:
    index = json.loads((directory / "index.json").read_text())
    change(index)
    (directory / "index.json").write_text(json.dumps(index))


@pytest.mark.parametrize("change, match", [
    (lambda ix: ix["problems"][0].update(num_nodes=3), r"problem-000000\.pt: expected num_nodes"),
    (lambda ix: ix["problems"][0].update(nnz=1), r"problem-000000\.pt: expected nnz 1"),
    (lambda ix: ix["problems"][0].update(dtype="float32"), r"000000\.pt: expected dtype 'float32"),
    (lambda ix: ix["problems"][0].update(file="problem-000001.pt"), r"000001\.pt: expected name"),
])
def test_a_file_that_does_not_match_the_index(tmp_path, change, match):
    directory = saved(tmp_path, 2)
    _rewrite_index(directory, change)
    with pytest.raises(ValueError, match=match):
        ProblemSet.load(directory)[0]


@pytest.mark.parametrize("change, match", [
    (lambda ix: ix.update(format="other"), "expected the index of a problem set"),
    (lambda ix: ix.update(version=2), "expected format version 1, got 2"),
    (lambda ix: ix.update(count=3), "list of 'count' entries"),
    (lambda ix: ix["problems"][1].update(file="../problem-000001.pt"), r"problems\[1\]: .*file"),
    (lambda ix: ix["problems"][1].pop("nnz"), r"problems\[1\]: expected a dict with the keys"),
])
def test_a_bad_index_is_refused_when_loading(tmp_path, change, match):
    directory = saved(tmp_path, 2)
    _rewrite_index(directory, change)
    with pytest.raises(ValueError, match=r"index\.json: .*" + match):
        ProblemSet.load(directory)


def test_missing_corrupt_or_foreign_files(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"index\.json: expected the index"):
        ProblemSet.load(tmp_path)
    directory = saved(tmp_path, 4)
    data = (directory / "problem-000000.pt").read_bytes()
    (directory / "problem-000000.pt").write_bytes(data[:len(data) // 2])
    (directory / "problem-000001.pt").unlink()
    torch.save({"format": "learnsolve-problem", "version": 2, "problem": None},
               directory / "problem-000002.pt")
    torch.save({"format": "learnsolve-problem", "version": 1, "problem": {"type": "object",
                "class": "Evil", "arguments": {}}}, directory / "problem-000003.pt")
    loaded = ProblemSet.load(directory)
    with pytest.raises(ValueError, match=r"problem-000000\.pt: expected a problem file"):
        loaded[0]
    with pytest.raises(FileNotFoundError, match=r"problem-000001\.pt: expected a problem file"):
        loaded[1]
    with pytest.raises(ValueError, match=r"problem-000002\.pt: expected format version 1"):
        loaded[2]
    with pytest.raises(ValueError, match=r"problem-000003\.pt: problem: expected an object of"):
        loaded[3]


def test_invalid_content_is_refused_by_the_constructors(tmp_path):
    directory = saved(tmp_path, 1)
    path = directory / "problem-000000.pt"
    record = torch.load(path, weights_only=True)
    record["problem"]["arguments"]["A"]["arguments"]["col_indices"][0] = 10**6
    torch.save(record, path)
    with pytest.raises(ValueError, match=r"problem\.A: expected the arguments of a valid "
                                         r"CSRMatrix, but col_indices"):
        ProblemSet.load(directory)[0]


def test_a_directory_in_use_is_refused_unless_overwrite(tmp_path):
    directory = saved(tmp_path, 3)
    with pytest.raises(FileExistsError, match="directory: .*pass overwrite=True"):
        ProblemSet([poisson_1d(3)]).save(directory)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="overwrite=True"):
        ProblemSet([poisson_1d(3)]).save(tmp_path / "other")
    ProblemSet([poisson_1d(3)]).save(directory, overwrite=True)
    assert sorted(os.listdir(directory)) == ["index.json", "problem-000000.pt"]
    assert [p.num_nodes for p in ProblemSet.load(directory)] == [3]
    ProblemSet([poisson_1d(3)]).save(tmp_path / "other", overwrite=True)
    assert (tmp_path / "other" / "notes.txt").read_text() == "mine"
    with pytest.raises(TypeError, match="overwrite: expected a bool"):
        ProblemSet([poisson_1d(3)]).save(directory, overwrite=1)
    with pytest.raises(ValueError, match="workers: expected an integer >= 1"):
        ProblemSet([poisson_1d(3)]).save(directory, workers=0, overwrite=True)


def test_an_interrupted_save_leaves_no_index(tmp_path):
    def failing(seed, index):
        if index == 2:
            raise RuntimeError("interrupted")
        return poisson_1d(3)
    with pytest.raises(RuntimeError, match="interrupted"):
        ProblemSet(failing, 4).save(tmp_path)
    assert sorted(os.listdir(tmp_path)) == ["problem-000000.pt", "problem-000001.pt"]
    with pytest.raises(FileNotFoundError, match="index.json"):
        ProblemSet.load(tmp_path)


@pytest.mark.parametrize("info, match", [
    ({"f": np.sin}, r"problems\[0\]\.info\['f'\]: cannot save a value of type ufunc"),
    ({"a": [1, object()]}, r"problems\[0\]\.info\['a'\]\[1\]: cannot save a value of type "
                           r"object \(expected None"),
    ({"d": {1: 2}}, r"problems\[0\]\.info\['d'\]: cannot save a dict key of type int"),
    ({"s": torch.eye(2).to_sparse()}, r"info\['s'\]: cannot save a tensor of layout"),
    ({"o": np.array(["a"], dtype=object)}, r"info\['o'\]: cannot save a numpy array of dtype"),
])
def test_unsavable_info_is_a_type_error_naming_the_entry(tmp_path, info, match):
    problem = dataclasses.replace(poisson_1d(3), info=info)
    with pytest.raises(TypeError, match=match):
        ProblemSet([problem]).save(tmp_path)
    assert not (tmp_path / "index.json").exists()



def _unsavable_second(seed, index):
    problem = poisson_1d(3)
    return dataclasses.replace(problem, info={"f": np.sin} if index == 1 else {})


def test_an_error_in_a_worker_reaches_the_caller(tmp_path):
    with pytest.raises(TypeError, match=r"problems\[1\]\.info\['f'\]: cannot save"):
        ProblemSet(_unsavable_second, 4).save(tmp_path, workers=2)
    assert not (tmp_path / "index.json").exists()
