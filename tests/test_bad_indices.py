"""Index arrays from outside (scipy, torch sparse tensors, check=False) are checked
before a kernel reads through them: an error naming the array, never a crash or a
silently wrong answer. The reproducers that crashed the interpreter run in a
subprocess, so that a regression fails one test instead of killing the suite."""
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import scipy.sparse as sp
import torch

import learnsolve as ls

CSR = ls.CSRMatrix


def run_isolated(code: str) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter (learnsolve imported as ls)."""
    prelude = "import numpy as np, scipy.sparse as sp, torch, learnsolve as ls\n"
    return subprocess.run([sys.executable, "-c", prelude + textwrap.dedent(code)],
                          capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("bad_column, use", [
    (10**7, "A @ torch.ones(3, dtype=torch.float64)"),
    (10**7, "A.T.to_dense()"),
    (10**7, "(A @ A).to_dense()"),
    (7, "A @ torch.ones(3, dtype=torch.float64)"),            # silent garbage before
])
def test_from_scipy_with_edited_indices_raises_not_crashes(bad_column, use):
    result = run_isolated(f"""
        S = sp.eye(3, format="csr"); S.indices[1] = {bad_column}
        try:
            A = ls.CSRMatrix.from_scipy(S)
        except ValueError as error:
            print("refused:", error)
        else:
            print("accepted:", {use})
    """)
    assert result.returncode == 0, f"crashed ({result.returncode}): {result.stderr[-2000:]}"
    assert "refused: matrix.indices: expected values in [0, 3)" in result.stdout, result.stdout


def test_check_false_with_a_column_out_of_range_raises_not_crashes():
    result = run_isolated("""
        try:
            A = ls.CSRMatrix(torch.tensor([0, 2, 3]), torch.tensor([0, 1, 1000000]),
                             torch.ones(3, dtype=torch.float64), (2, 2), check=False)
        except ValueError as error:
            print("refused:", error)
        else:
            print("accepted:", A @ torch.ones(2, dtype=torch.float64))
    """)
    assert result.returncode == 0, f"crashed ({result.returncode}): {result.stderr[-2000:]}"
    assert "refused: col_indices: expected values in [0, 2)" in result.stdout, result.stdout


# Every public operation on matrices whose columns are in range but unsorted or
# repeated within a row (what check=False lets through): wrong answers are the
# caller's promise broken, but nothing may read or write out of bounds.
FUZZ = """
from learnsolve.linalg import spsolve, spsolve_triangular
from learnsolve.solvers import GMRES, PCG
from learnsolve.solvers import IncompleteCholesky
operations = {
    "spmv": lambda A, x: (A.with_values(A.values.clone().requires_grad_()) @ x).sum().backward(),
    "spmm": lambda A, x: A @ torch.stack([x, x], 1),
    "rmatmul": lambda A, x: x @ A,
    "transpose": lambda A, x: A.T.to_dense(),
    "spgemm": lambda A, x: ((A @ A).to_dense(), A @ ls.eye(A.shape[0], dtype=A.dtype)),
    "spgemm_grad": lambda A, x: (A.with_values(A.values.clone().requires_grad_()) @ A)
        .values.sum().backward(),
    "add": lambda A, x: (A + A, A - ls.eye(A.shape[0], dtype=A.dtype)),
    "multiply": lambda A, x: A * A,
    "triangles": lambda A, x: (A.tril(), A.triu(-1), A.diagonal(), A.diagonal(1)),
    "sampled": lambda A, x: ls.sampled_matmul(A, torch.stack([x, x], 1), torch.stack([x, x], 1)),
    "trsv": lambda A, x: (spsolve_triangular(A, x, lower=True),
                          spsolve_triangular(A, x, lower=False, transpose=True)),
    "trsv_grad": lambda A, x: spsolve_triangular(
        A.with_values(A.values.clone().requires_grad_()), x, lower=True).sum().backward(),
    "ic0": lambda A, x: IncompleteCholesky().setup(A)(x),
    "spsolve": lambda A, x: spsolve(A, x),
    "pcg": lambda A, x: PCG(maxiter=5)(A, x),
    "gmres": lambda A, x: GMRES(maxiter=5)(A, x),
    "conversions": lambda A, x: (A.to_dense(), A.to_scipy() @ x.numpy(), A.to_torch()),
}
outcomes = {}
for seed in range(SEEDS):
    g = torch.Generator().manual_seed(seed)
    n = int(torch.randint(1, 7, (1,), generator=g))
    counts = torch.randint(0, 5, (n,), generator=g)
    crow = torch.cat([torch.zeros(1, dtype=torch.long), counts.cumsum(0)])
    col = torch.randint(0, n, (int(crow[-1]),), generator=g)
    A = ls.CSRMatrix(crow, col, torch.randn(col.shape[0], generator=g, dtype=torch.float64),
                     (n, n), check=False)
    x = torch.randn(n, generator=g, dtype=torch.float64)
    for name, operation in operations.items():
        try:
            operation(A, x)
            outcome = "ran"
        except Exception as error:  # any error will do: the point is no crash
            outcome = type(error).__name__
        outcomes.setdefault(name, set()).add(outcome)
print(sorted((k, sorted(v)) for k, v in outcomes.items()))
"""


def test_unsorted_and_duplicate_columns_never_crash():
    result = run_isolated(FUZZ.replace("SEEDS", "60"))
    assert result.returncode == 0, f"crashed ({result.returncode}): {result.stderr[-2000:]}"


@pytest.mark.parametrize("fmt", ["csr", "csc", "bsr", "coo"])
def test_from_scipy_checks_each_format(fmt):
    S = sp.random_array((6, 6), density=0.4, format=fmt, rng=0) + sp.eye_array(6, format=fmt)
    S = S.asformat(fmt)
    name = {"csr": "matrix.indices", "csc": "matrix.indices", "bsr": "matrix.indices",
            "coo": "matrix.col"}[fmt]
    if fmt == "coo":
        S.coords[1][2] = 6
    else:
        S.indices[-1] = -1
    with pytest.raises(ValueError, match=rf"{name}: expected (values|indices) in \[0, 6\)"):
        CSR.from_scipy(S)


@pytest.mark.parametrize("fmt", ["csr", "csc"])
def test_from_scipy_checks_the_pointers(fmt):
    S = (sp.random_array((5, 5), density=0.5, rng=1) + sp.eye_array(5)).asformat(fmt)
    S.indptr[2] = S.indptr[3] + 1                                 # decreasing after row 2
    with pytest.raises(ValueError, match=r"matrix.indptr: expected a non-decreasing sequence"):
        CSR.from_scipy(S)
    S = sp.eye_array(3, format=fmt)
    S.indptr[-1] = 10                                              # past the stored entries
    with pytest.raises(ValueError, match=r"matrix.indptr: expected matrix.indptr\[-1\] == 3"):
        CSR.from_scipy(S)


def test_from_scipy_does_not_trust_a_stale_canonical_flag():
    """scipy keeps has_canonical_format after an in-place edit; the order is checked here."""
    S = sp.csr_array(np.array([[1.0, 2.0, 0.0], [0.0, 3.0, 4.0]]))
    assert S.has_canonical_format
    S.indices[:2] = [1, 1]                                          # row 0: a duplicate now
    A = CSR.from_scipy(S)
    assert A.col_indices.tolist() == [1, 1, 2] and A.values.tolist() == [3.0, 3.0, 4.0]


def test_from_scipy_copies_the_arrays():
    S = sp.csr_array(np.array([[1.0, 2.0], [0.0, 3.0]]))
    A = CSR.from_scipy(S)
    S.indices[0], S.indptr[1], S.data[0] = 7, 0, 99.0
    assert A.col_indices.tolist() == [0, 1, 1] and A.crow_indices.tolist() == [0, 2, 3]
    assert A.values.tolist() == [1.0, 2.0, 3.0]


@pytest.mark.parametrize("data_type", [np.float16, np.complex128, object])
def test_from_scipy_refuses_other_data(data_type):
    S = sp.eye_array(3, format="csr").astype(np.float64)
    S.data = S.data.astype(data_type)
    with pytest.raises(TypeError, match=r"matrix: expected real data \(float32, float64, "
                                        r"integer or boolean\), got"):
        CSR.from_scipy(S)


def test_from_torch_checks_unchecked_tensors():
    values = torch.ones(3, dtype=torch.float64)
    csr = torch.sparse_csr_tensor(torch.tensor([0, 2, 3]), torch.tensor([0, 5, 1]), values,
                                  (2, 2), check_invariants=False)
    with pytest.raises(ValueError, match=r"tensor.col_indices\(\): expected values in \[0, 2\)"):
        CSR.from_torch(csr)
    coo = torch.sparse_coo_tensor(torch.tensor([[0, 1, 9], [0, 1, 1]]), values, (2, 2),
                                  check_invariants=False)
    with pytest.raises(ValueError, match=r"tensor: expected row indices in \[0, 2\)"):
        CSR.from_torch(coo)
    unsorted = torch.sparse_csr_tensor(torch.tensor([0, 2, 3]), torch.tensor([1, 0, 1]), values,
                                       (2, 2), check_invariants=False)
    assert CSR.from_torch(unsorted).to_dense().tolist() == [[1.0, 1.0], [0.0, 1.0]]


def test_check_false_keeps_the_bounds_checks():
    values = torch.ones(3, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"crow_indices: expected a non-decreasing"):
        CSR(torch.tensor([0, 3, 1, 3]), torch.tensor([0, 1, 2]), values, (3, 3), check=False)
    with pytest.raises(ValueError, match=r"crow_indices: expected crow_indices\[-1\] == 3"):
        CSR(torch.tensor([0, 1, 2, 9]), torch.tensor([0, 1, 2]), values, (3, 3), check=False)
    with pytest.raises(ValueError, match=r"col_indices: expected values in \[0, 3\)"):
        CSR(torch.tensor([0, 1, 2, 3]), torch.tensor([0, -1, 2]), values, (3, 3), check=False)
    unsorted = CSR(torch.tensor([0, 2, 3]), torch.tensor([1, 0, 2]), values, (2, 3), check=False)
    assert unsorted.nnz == 3                                        # order left to the caller


def test_meta_arrays_are_refused_by_name():
    meta = dict(device="meta")
    with pytest.raises(ValueError, match=r"crow_indices: expected index arrays with data"):
        CSR(torch.tensor([0, 1], **meta), torch.tensor([0], **meta),
            torch.ones(1, dtype=torch.float64, **meta), (1, 1))


@pytest.mark.parametrize("call", [
    lambda A: A.diagonal(1.5), lambda A: A.diagonal(True), lambda A: A.tril(0.5),
    lambda A: A.triu("1"), lambda A: ls.diag(torch.ones(2), 1.5),
    lambda A: ls.diags([torch.ones(2)], 0.5), lambda A: ls.diags([torch.ones(2)], [1.5]),
])
def test_diagonal_offsets_must_be_integers(call):
    with pytest.raises(TypeError, match=r"(k|offsets): expected an integer"):
        call(ls.eye(3))


def test_integer_offsets_of_other_kinds_are_taken():
    A = ls.diags([-1.0, 2.0, -1.0], [-1, 0, 1], shape=(4, 4))
    assert torch.equal(A.diagonal(np.int64(1)), A.diagonal(1))
    assert torch.equal(A.tril(torch.tensor(-1)).to_dense(), A.tril(-1).to_dense())


def test_a_learned_factor_loaded_with_bad_indices_raises_not_crashes():
    """The pattern of a module's index buffers is checked again when a load changes them."""
    result = run_isolated("""
        from learnsolve.problems import poisson_2d
        from learnsolve.solvers import LowerFactor
        problem = poisson_2d(4, dtype=torch.float64)
        model = LowerFactor(problem)
        state = model.state_dict()
        state["col_indices"] = state["col_indices"].clone()
        state["col_indices"][5] = 10**7
        model.load_state_dict(state)
        try:
            model.setup(problem.A)(torch.ones(16, dtype=torch.float64))
        except ValueError as error:
            print("refused:", error)
        else:
            print("accepted")
    """)
    assert result.returncode == 0, f"crashed ({result.returncode}): {result.stderr[-2000:]}"
    assert "refused: col_indices: expected values in [0, 16)" in result.stdout, result.stdout


@pytest.mark.parametrize("op, crow, col, message", [
    ("ic0", [0, 10**7], [0], "ic0: expected crow to start at 0 and end at the length of col"),
    ("ilu", [0, 10**7], [0], "ilu: expected crow to start at 0 and end at the length of col"),
    ("iluk_symbolic", [0, 10**7], [0], "iluk_symbolic: expected crow to start at 0"),
    ("ic0", [0, 2, 1, 3], [0, 0, 1], "ic0: expected non-decreasing crow, row 1"),
    ("ilu", [3, 2, 3], [0, 0, 1], "ilu: expected crow to start at 0"),
    ("ic0", [0, 1, 3], [0, 10**7, 1], "ic0: expected the columns of row 1 in"),
    ("ic0", [0, 1, 3], [0, -5, 1], "ic0: expected the columns of row 1 in"),
])
def test_the_factorisation_ops_check_what_they_index(op, crow, col, message):
    """The raw ops (reachable from Python as torch.ops.learnsolve.*) check the row
    pointers and ic0 the columns it uses as row indices: an error, not a crash."""
    result = run_isolated(f"""
        from learnsolve.core._ops import ops
        crow, col = torch.tensor({crow}), torch.tensor({col})
        args = (crow, col, 1) if {op!r} == "iluk_symbolic" else \\
            (crow, col, torch.ones(len({col}), dtype=torch.float64))
        try:
            getattr(ops, {op!r})(*args)
        except ValueError as error:
            print("refused:", error)
    """)
    assert result.returncode == 0, f"crashed ({result.returncode}): {result.stderr[-2000:]}"
    assert "refused: " + message in result.stdout, result.stdout
