"""Matrices from files (load_matrix, save_matrix, matrix_files, ProblemSet.from_files):
round trips, Matrix Market storage, every refusal, lazy sets."""
import gzip
import pickle

import numpy as np
import pytest
import scipy.sparse as sp
import torch

import learnsolve as ls
from learnsolve.problems import (Problem, ProblemSet, convection_diffusion_2d, files,
                                 load_matrix, matrix_files, poisson_1d, poisson_2d, save_matrix)

HEADER = "%%MatrixMarket matrix coordinate real general\n"


def write(path, text):
    path.write_text(text)
    return path


def same(A, B):
    """The same matrix to the bit: pattern, values, dtype."""
    return (A.shape == B.shape and A.dtype == B.dtype and
            torch.equal(A.crow_indices.cpu(), B.crow_indices.cpu()) and
            torch.equal(A.col_indices.cpu(), B.col_indices.cpu()) and
            torch.equal(A.values.cpu(), B.values.cpu()))


# ---------------------------------------------------------------------------- round trips
@pytest.mark.parametrize("suffix", [".npz", ".mtx", ".mtx.gz"])
def test_round_trip_exact(tmp_path, suffix):
    p = poisson_2d(5, dtype=torch.float64)
    A = p.A.with_values(p.A.values * (1 / 3))     # values that need all their digits
    path = save_matrix(A, tmp_path / f"m{suffix}")
    assert path == tmp_path / f"m{suffix}" and [f.name for f in tmp_path.iterdir()] == [path.name]
    q = load_matrix(path, dtype=torch.float64, symmetric=True)
    assert same(q.A, A)
    assert q.name == "m" and q.info == {"path": str(path), "format": suffix[1:4]}
    assert isinstance(q, Problem) and q.b is None and q.seed == 0
    if suffix == ".mtx.gz":
        assert path.read_bytes()[:2] == b"\x1f\x8b"          # gzipped


@pytest.mark.parametrize("suffix", [".npz", ".mtx"])
def test_round_trip_nonsymmetric_explicit_zeros_float32(tmp_path, suffix):
    p = convection_diffusion_2d(4, dtype=torch.float32)
    values = p.A.values.clone()
    values[1] = 0.0                                        # an explicit zero stays stored
    A = p.A.with_values(values)
    q = load_matrix(save_matrix(Problem(A), tmp_path / f"c{suffix}"), dtype=torch.float32)
    assert same(q.A, A)


def test_save_a_problem_and_errors(tmp_path):
    p = poisson_1d(4, dtype=torch.float64)
    assert same(load_matrix(save_matrix(p, tmp_path / "p.npz"), dtype=torch.float64).A, p.A)
    with pytest.raises(TypeError, match=r"problem_or_matrix: expected a Problem or a CSRMatrix"):
        save_matrix(p.A.to_scipy(), tmp_path / "q.npz")
    with pytest.raises(ValueError, match=r"expected a file name ending in \.mtx, \.mtx\.gz, \.npz"):
        save_matrix(p, tmp_path / "q.mat")


# ---------------------------------------------------------------------------- reading
def test_symmetric_storage_is_expanded(tmp_path):
    path = write(tmp_path / "lower.mtx",
                 "%%MatrixMarket matrix coordinate real symmetric\n% a comment\n"
                 "3 3 5\n1 1 4\n2 1 -1\n2 2 4\n3 2 -2.5\n3 3 4\n")
    A = load_matrix(path, dtype=torch.float64, symmetric=True).A
    expected = torch.tensor([[4, -1, 0], [-1, 4, -2.5], [0, -2.5, 4]], dtype=torch.float64)
    assert A.nnz == 7 and torch.equal(A.to_dense(), expected)


def test_duplicates_summed_and_columns_sorted(tmp_path):
    path = write(tmp_path / "dup.mtx",
                 HEADER + "2 2 5\n2 2 1\n1 2 3\n1 1 1\n1 1 2\n2 2 0.5\n")
    A = load_matrix(path, dtype=torch.float64).A
    assert torch.equal(A.crow_indices, torch.tensor([0, 2, 3]))
    assert torch.equal(A.col_indices, torch.tensor([0, 1, 1]))
    assert torch.equal(A.values, torch.tensor([3.0, 3.0, 1.5], dtype=torch.float64))


def test_integer_and_dense_files(tmp_path):
    path = write(tmp_path / "int.mtx",
                 "%%MatrixMarket matrix coordinate integer general\n2 2 2\n1 1 3\n2 2 5\n")
    A = load_matrix(path, dtype=torch.float32).A
    assert A.dtype == torch.float32 and torch.equal(A.values, torch.tensor([3.0, 5.0]))
    path = write(tmp_path / "dense.mtx",
                 "%%MatrixMarket matrix array real general\n2 2\n2\n-1\n0\n2\n")  # column-major
    A = load_matrix(path, dtype=torch.float64).A
    assert torch.equal(A.to_dense(), torch.tensor([[2.0, 0.0], [-1.0, 2.0]],
                                                  dtype=torch.float64))
    sp.save_npz(tmp_path / "int.npz", sp.coo_array(np.array([[1, 0], [2, 3]])))
    A = load_matrix(tmp_path / "int.npz", dtype=torch.float64).A
    assert torch.equal(A.to_dense(), torch.tensor([[1.0, 0], [2, 3]], dtype=torch.float64))


def test_npz_any_scipy_format(tmp_path):
    dense = np.array([[4.0, 1.0, 0.0], [0.0, 4.0, 1.0], [1.0, 0.0, 4.0]])
    for fmt in ("csr", "csc", "coo", "bsr", "dia"):
        sp.save_npz(tmp_path / f"{fmt}.npz", sp.csr_matrix(dense).asformat(fmt))
        A = load_matrix(tmp_path / f"{fmt}.npz", dtype=torch.float64).A
        assert torch.equal(A.to_dense(), torch.from_numpy(dense)), fmt
        assert A.nnz == 6


def test_dtype_device_name_seed_info(tmp_path, dtype, device):
    path = save_matrix(poisson_2d(3, dtype=torch.float64), tmp_path / "grid.mtx.gz")
    p = load_matrix(path, dtype=dtype, device=device, seed=5)
    assert p.dtype == dtype and p.device.type == device and p.A.device.type == device
    assert p.name == "grid" and p.seed == 5
    assert p.info == {"path": str(path), "format": "mtx"}
    assert torch.equal(p.rhs(2).cpu(), poisson_2d(3, dtype=dtype, seed=5).rhs(2).cpu())
    assert load_matrix(str(path), name="mine").name == "mine"
    default = load_matrix(path)
    assert default.dtype == torch.get_default_dtype()
    with pytest.raises(TypeError, match=r"dtype: expected float32 or float64"):
        load_matrix(path, dtype=torch.int64)
    with pytest.raises(TypeError, match=r"symmetric: expected None or a bool"):
        load_matrix(path, symmetric="yes")
    with pytest.raises(ValueError, match=r"seed: expected an integer >= 0"):
        load_matrix(path, seed=-1)


# ---------------------------------------------------------------------------- refusals
def test_missing_file_and_unknown_suffix(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nothere\.mtx: expected a matrix file, but "
                                                r"there is no such file"):
        load_matrix(tmp_path / "nothere.mtx")
    write(tmp_path / "m.txt", HEADER + "1 1 1\n1 1 1\n")
    with pytest.raises(ValueError, match=r"m\.txt: expected a file name ending in \.mtx, "
                                         r"\.mtx\.gz, \.npz, got 'm\.txt'"):
        load_matrix(tmp_path / "m.txt")
    for name in ("m.mat", "m.gz", ".mtx"):
        with pytest.raises(ValueError, match=r"expected a file name ending in"):
            load_matrix(tmp_path / name)
    (tmp_path / "dir.mtx").mkdir()
    with pytest.raises(ValueError, match=r"dir\.mtx: expected a matrix file, got a directory"):
        load_matrix(tmp_path / "dir.mtx")
    with pytest.raises(TypeError, match=r"path: expected a str or a path, got int"):
        load_matrix(3)


@pytest.mark.parametrize("text, message", [
    (HEADER + "2 3 1\n1 1 1\n", r"expected a square matrix, got shape \(2, 3\)"),
    (HEADER + "0 0 0\n", r"expected a matrix with at least one row, got shape \(0, 0\)"),
    (HEADER + "2 2 2\n1 1 1\n2 2 nan\n", r"expected finite values, got nan at \(i, j\) = "
                                         r"\(1, 1\)"),
    (HEADER + "2 2 2\n1 1 -inf\n2 2 1\n", r"expected finite values, got -inf at \(i, j\) = "
                                          r"\(0, 0\)"),
    ("%%MatrixMarket matrix coordinate complex general\n1 1 1\n1 1 1 2\n",
     r"expected a real matrix, got a complex Matrix Market matrix"),
    ("%%MatrixMarket matrix coordinate pattern general\n2 2 2\n1 1\n2 2\n",
     r"expected a matrix with values, got a pattern-only Matrix Market matrix \(no values"),
    ("not a matrix\n", r"expected a Matrix Market file, but .*banner"),
    (HEADER + "3 3 4\n1 1 1\n", r"expected a Matrix Market file, but .*[Tt]runcated"),
    (HEADER + "2 2 1\n3 1 1\n", r"expected a Matrix Market file, but .*out of bounds"),
])
def test_mtx_refusals(tmp_path, text, message):
    path = write(tmp_path / "bad.mtx", text)
    with pytest.raises(ValueError, match=r"bad\.mtx: " + message):
        load_matrix(path)


def test_float64_beyond_float32_range(tmp_path):
    path = write(tmp_path / "big.mtx", HEADER + "1 1 1\n1 1 1e300\n")
    assert float(load_matrix(path, dtype=torch.float64).A.values[0]) == 1e300
    with pytest.raises(ValueError, match=r"big\.mtx: expected finite values, got inf at "
                                         r"\(i, j\) = \(0, 0\) \(beyond the range of "
                                         r"torch\.float32\)"):
        load_matrix(path, dtype=torch.float32)


def test_npz_refusals(tmp_path):
    # an object array: would need unpickling, refused before anything runs
    np.savez(tmp_path / "obj.npz", format=np.array([object()], dtype=object))
    with pytest.raises(ValueError, match=r"obj\.npz: expected a sparse matrix written by "
                                         r"scipy\.sparse\.save_npz, but .*allow_pickle"):
        load_matrix(tmp_path / "obj.npz")
    with open(tmp_path / "pickled.npz", "wb") as file:     # a bare pickle named .npz
        pickle.dump({"format": "csr"}, file)
    with pytest.raises(ValueError, match=r"pickled\.npz: expected a sparse matrix .* pickled"):
        load_matrix(tmp_path / "pickled.npz")
    np.savez(tmp_path / "dense.npz", a=np.eye(2))
    with pytest.raises(ValueError, match=r"dense\.npz: expected a sparse matrix written by "
                                         r"scipy\.sparse\.save_npz, but .*does not contain"):
        load_matrix(tmp_path / "dense.npz")
    (tmp_path / "junk.npz").write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(ValueError, match=r"junk\.npz: expected a sparse matrix"):
        load_matrix(tmp_path / "junk.npz")
    sp.save_npz(tmp_path / "complex.npz", sp.csr_array(np.array([[1j, 0], [0, 1]])))
    with pytest.raises(ValueError, match=r"complex\.npz: expected a real matrix, got complex "
                                         r"values \(complex128\)"):
        load_matrix(tmp_path / "complex.npz")
    sp.save_npz(tmp_path / "rect.npz", sp.csr_array(np.ones((2, 3))))
    with pytest.raises(ValueError, match=r"rect\.npz: expected a square matrix, got shape "
                                         r"\(2, 3\)"):
        load_matrix(tmp_path / "rect.npz")
    bad = sp.csr_array(np.eye(2))
    bad.indices[1] = 7                                       # an index out of range
    sp.save_npz(tmp_path / "index.npz", bad)
    with pytest.raises(ValueError, match=r"index\.npz: expected a valid sparse matrix, but "
                                         r"matrix\.indices"):
        load_matrix(tmp_path / "index.npz")
    sp.save_npz(tmp_path / "inf.npz", sp.csr_array(np.diag([1.0, np.inf])))
    with pytest.raises(ValueError, match=r"inf\.npz: expected finite values, got inf at "
                                         r"\(i, j\) = \(1, 1\)$"):
        load_matrix(tmp_path / "inf.npz")


def test_gz_that_is_not_gzipped(tmp_path):
    path = write(tmp_path / "plain.mtx.gz", HEADER + "1 1 1\n1 1 1\n")
    with pytest.raises(ValueError, match=r"plain\.mtx\.gz: expected a Matrix Market file, "
                                         r"but .*gzip"):
        load_matrix(path)


def test_symmetric_check(tmp_path):
    expected = r"expected a symmetric positive definite matrix, but "
    path = write(tmp_path / "nonsym.mtx", HEADER + "2 2 4\n1 1 2\n1 2 -1\n2 1 -1.5\n2 2 2\n")
    assert load_matrix(path).num_nodes == 2                 # no check asked for
    with pytest.raises(ValueError, match=r"nonsym\.mtx: " + expected + r"its values are not "
                                         r"symmetric: the largest asymmetry \|a_ij - a_ji\| is "
                                         r"5\.000e-01 at \(i, j\) = \(0, 1\)"):
        load_matrix(path, symmetric=True)
    path = write(tmp_path / "pattern.mtx", HEADER + "2 2 3\n1 1 2\n1 2 0\n2 2 2\n")
    with pytest.raises(ValueError, match=expected + r"its pattern is not symmetric: entry "
                                                    r"\(0, 1\) is stored and \(1, 0\) is not"):
        load_matrix(path, symmetric=True)
    path = write(tmp_path / "zero.mtx", "%%MatrixMarket matrix coordinate real symmetric\n"
                                        "2 2 3\n1 1 2\n2 1 -1\n2 2 0\n")
    with pytest.raises(ValueError, match=r"zero\.mtx: " + expected + r"the diagonal entry at "
                                                                     r"row 1 is 0 \(<= 0\)"):
        load_matrix(path, symmetric=True)
    path = write(tmp_path / "missing.mtx", "%%MatrixMarket matrix coordinate real symmetric\n"
                                           "2 2 2\n1 1 2\n2 1 -1\n")
    with pytest.raises(ValueError, match=expected + r"the diagonal entry at row 1 is 0"):
        load_matrix(path, symmetric=True)
    path = write(tmp_path / "negative.mtx", HEADER + "1 1 1\n1 1 -2\n")
    with pytest.raises(ValueError, match=expected + r"the diagonal entry at row 0 is -2"):
        load_matrix(path, symmetric=True)
    # asymmetry within rounding passes, in the dtype asked for
    eps = np.finfo(np.float64).eps
    path = write(tmp_path / "rounding.mtx",
                 HEADER + f"2 2 4\n1 1 4\n1 2 {float(-1 + 8 * eps)!r}\n2 1 -1\n2 2 4\n")
    assert load_matrix(path, dtype=torch.float64, symmetric=True).A.nnz == 4
    path = write(tmp_path / "float32.mtx", HEADER + "2 2 4\n1 1 4\n1 2 -1.0000001\n2 1 -1\n"
                                                    "2 2 4\n")
    assert load_matrix(path, dtype=torch.float32, symmetric=True).A.nnz == 4
    with pytest.raises(ValueError, match=r"the largest asymmetry"):
        load_matrix(path, dtype=torch.float64, symmetric=True)


# ---------------------------------------------------------------------------- sets of files
@pytest.fixture
def matrix_dir(tmp_path):
    for n in range(2, 7):
        save_matrix(poisson_1d(n, dtype=torch.float64), tmp_path / f"p{n}.mtx")
    save_matrix(poisson_2d(3, dtype=torch.float64), tmp_path / "grid.npz")
    (tmp_path / "sub").mkdir()
    save_matrix(poisson_1d(2), tmp_path / "sub" / "deep.mtx")
    return tmp_path


def test_matrix_files(matrix_dir):
    assert [p.name for p in matrix_files(matrix_dir)] == [f"p{n}.mtx" for n in range(2, 7)]
    assert [p.name for p in matrix_files(str(matrix_dir), "*.npz")] == ["grid.npz"]
    assert [p.name for p in matrix_files(matrix_dir, "**/d*.mtx")] == ["deep.mtx"]
    assert matrix_files(matrix_dir, "*.mtx.gz") == []
    with pytest.raises(FileNotFoundError, match=r"nothere: expected a directory"):
        matrix_files(matrix_dir / "nothere")
    with pytest.raises(NotADirectoryError, match=r"p2\.mtx: expected a directory"):
        matrix_files(matrix_dir / "p2.mtx")


def test_from_files_is_lazy(matrix_dir, monkeypatch):
    calls = []
    load = files.load_matrix

    def counting(path, **kwargs):
        calls.append(path.name)
        return load(path, **kwargs)

    monkeypatch.setattr(files, "load_matrix", counting)
    paths = matrix_files(matrix_dir) + [matrix_dir / "grid.npz"]
    problems = ProblemSet.from_files(paths, dtype=torch.float64, symmetric=True)
    assert calls == [] and len(problems) == 6
    train, test = problems.split(0.5)
    assert calls == [] and (len(train), len(test)) == (3, 3)
    assert sorted(train.indices + test.indices) == list(range(6))
    p = problems[2]
    assert calls == ["p4.mtx"]
    assert problems[2] is p and calls == ["p4.mtx"]             # cached
    q = load(paths[2], dtype=torch.float64)
    assert same(p.A, q.A) and p.name == q.name == "p4" and p.info == q.info
    assert p.seed == problems.seed_of(2)
    view = train if 2 in train.indices else test           # a subset shares the cache
    assert view[view.indices.index(2)] is p and calls == ["p4.mtx"]
    assert [x.name for x in problems] == ["p2", "p3", "p4", "p5", "p6", "grid"]
    assert sorted(calls) == sorted(path.name for path in paths)   # each file read once
    assert len(list(train) + list(test)) == 6 and len(calls) == 6   # nothing read again
    uncached = ProblemSet.from_files(paths[:2], cache=False)
    uncached[0], uncached[0]
    assert calls[-2:] == ["p2.mtx", "p2.mtx"]


def test_from_files_options_seed_and_pickle(matrix_dir):
    paths = matrix_files(matrix_dir)
    problems = ProblemSet.from_files(paths, dtype=torch.float32, seed=3)
    assert all(p.dtype == torch.float32 for p in problems)
    assert [p.seed for p in problems] == [problems.seed_of(i) for i in range(len(paths))]
    assert len({p.seed for p in problems}) == len(paths)
    assert ProblemSet.from_files(paths, seed=3)[1].seed == problems[1].seed
    again = pickle.loads(pickle.dumps(ProblemSet.from_files(paths, dtype=torch.float64)))
    assert same(again[0].A, load_matrix(paths[0], dtype=torch.float64).A)
    moved = problems.to(torch.float64)
    assert moved[0].dtype == torch.float64
    assert len(ProblemSet.from_files([])) == 0


def test_from_files_refusals(matrix_dir):
    with pytest.raises(FileNotFoundError, match=r"nothere\.mtx: expected a matrix file"):
        ProblemSet.from_files([matrix_dir / "p2.mtx", matrix_dir / "nothere.mtx"])
    with pytest.raises(ValueError, match=r"expected a file name ending in"):
        ProblemSet.from_files([matrix_dir / "sub"])
    with pytest.raises(TypeError, match=r"paths: expected a sequence of files, got one path"):
        ProblemSet.from_files(matrix_dir)
    with pytest.raises(TypeError, match=r"dtype: expected float32 or float64"):
        ProblemSet.from_files(matrix_files(matrix_dir), dtype=torch.float16)
    # what only reading finds is found when the problem is read
    write(matrix_dir / "nonsym.mtx", HEADER + "2 2 2\n1 2 1\n2 2 1\n")
    problems = ProblemSet.from_files([matrix_dir / "nonsym.mtx"], symmetric=True)
    with pytest.raises(ValueError, match=r"nonsym\.mtx: expected a symmetric positive"):
        problems[0]


def test_gzip_written_by_hand_and_top_level_names(tmp_path):
    path = tmp_path / "hand.mtx.gz"
    with gzip.open(path, "wt") as file:
        file.write(HEADER + "1 1 1\n1 1 2.5\n")
    assert float(load_matrix(path, dtype=torch.float64).A.values[0]) == 2.5
    assert ls.problems.load_matrix is load_matrix and "matrix_files" in ls.problems.__all__
