"""What PCG and GMRES take as A (and M): scipy sparse matrices, LinearOperators, torch
sparse and dense tensors, callables, each against the CSRMatrix; gradients through
them; bad operands; and the checks of the solvers' settings (rtol, atol, maxiter)."""
import numpy as np
import pytest
import scipy.sparse as sp
import scipy.sparse.linalg as sla
import torch

import learnsolve as ls
from learnsolve.problems import poisson_1d, poisson_2d
from learnsolve.solvers import GMRES, PCG, Heavyball, IncompleteCholesky, Jacobi
from learnsolve.solvers.base import Operator, as_operator, check_system

from cases import DEVICES, randn

F64 = torch.float64
KINDS = ["scipy_csr_array", "scipy_coo_matrix", "torch_coo", "torch_csr", "dense",
         "linear_operator", "callable"]
MATRIX_FREE = ["dense", "linear_operator", "callable"]


def poisson(m=8, dtype=F64):
    return poisson_2d(m, dtype=dtype).A


def convection_diffusion(m=6, c=2.0):
    """Nonsymmetric: the 2D Poisson matrix plus an upwind first difference."""
    P = poisson(m).to_scipy()
    D = sp.diags_array([-1.0, 1.0], offsets=[-1, 0], shape=(m, m))
    return ls.CSRMatrix.from_scipy(sp.csr_array(P + c * sp.kron(sp.eye_array(m), D)))


def given_as(A, kind):
    """``A`` (a CSRMatrix) as the input ``kind``."""
    S = A.to_scipy()
    return {"scipy_csr_array": lambda: S,
            "scipy_coo_matrix": lambda: sp.coo_matrix(S),
            "torch_coo": lambda: A.to_torch().to_sparse_coo(),
            "torch_csr": lambda: A.to_torch(),
            "dense": lambda: A.to_dense(),
            "linear_operator": lambda: sla.aslinearoperator(S),
            "callable": lambda: (lambda x: A @ x)}[kind]()


#: name -> a fresh solver (keyword arguments: its M)
SOLVERS = {"pcg": lambda **kwargs: PCG(rtol=1e-10, **kwargs),
           "gmres": lambda **kwargs: GMRES(restart=10, rtol=1e-10, **kwargs)}


def assert_same_solve(solution, reference):
    assert solution.status == reference.status == "converged"
    assert solution.iterations == reference.iterations
    assert solution.x.dtype == reference.x.dtype
    tol = dict(rtol=1e-10, atol=1e-12) if reference.x.dtype == F64 else dict(rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(solution.x, reference.x, **tol)
    torch.testing.assert_close(solution.residuals, reference.residuals, **tol)


# ---------------------------------------------------------------------------- forward


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("solver", SOLVERS)
@pytest.mark.parametrize("columns", [None, 3])
def test_each_input_solves_like_the_csr_matrix(device, kind, solver, columns):
    A = poisson().to(device)
    shape = (64,) if columns is None else (64, columns)
    b = randn(*shape, seed=1, device=device)
    solve = SOLVERS[solver]()
    assert_same_solve(solve(given_as(A, kind), b), solve(A, b))


@pytest.mark.parametrize("kind", ["scipy_csr_array", "linear_operator"])
def test_scipy_and_linear_operators_take_the_dtype_of_b(kind):
    A = poisson()                                   # float64 data
    b = randn(64, seed=2).float()
    solution = PCG(rtol=1e-4)(given_as(A, kind), b)
    assert solution.x.dtype == torch.float32
    assert_same_solve(solution, PCG(rtol=1e-4)(A.float(), b))


def test_scipy_matrix_converted_once_per_solve(monkeypatch):
    from learnsolve.core import construct
    calls = []
    original = construct.from_scipy
    monkeypatch.setattr(construct, "from_scipy",
                        lambda *args, **kwargs: calls.append(1) or original(*args, **kwargs))
    A = poisson()
    solution = GMRES(restart=5, rtol=1e-10)(A.to_scipy(), randn(64, seed=3))
    assert solution.converged and solution.iterations > 10
    assert len(calls) == 1


@pytest.mark.parametrize("columns", [None, 2])
def test_linear_operator_one_product_per_iteration_blocks_through_matmat(columns):
    A = poisson()
    S = A.to_scipy()
    counts = {"matvec": 0, "matmat": 0}

    def counted(name):
        def product(x):
            counts[name] += 1
            return S @ x
        return product

    L = sla.LinearOperator(S.shape, matvec=counted("matvec"), matmat=counted("matmat"),
                           dtype=np.float64)
    b = randn(64, seed=4) if columns is None else randn(64, columns, seed=4)
    solution = PCG(rtol=1e-8)(L, b)
    assert solution.converged
    used = "matvec" if columns is None else "matmat"
    assert counts == {"matvec": 0, "matmat": 0, used: solution.iterations}


@pytest.mark.parametrize("kind", MATRIX_FREE)
@pytest.mark.parametrize("M", ["csr", "scipy", "linear_operator", "callable"])
@pytest.mark.parametrize("solver", SOLVERS)
def test_preconditioners_of_a_matrix_free_A(kind, M, solver):
    A = poisson()
    D = ls.diag(1.0 / A.diagonal())
    given = {"csr": D, "scipy": D.to_scipy(), "linear_operator": sla.aslinearoperator(D.to_scipy()),
             "callable": lambda r: D @ r}[M]
    b = randn(64, seed=5)
    assert_same_solve(SOLVERS[solver](M=given)(given_as(A, kind), b),
                      SOLVERS[solver](M=D)(A, b))


@pytest.mark.parametrize("kind", MATRIX_FREE)
@pytest.mark.parametrize("M", [IncompleteCholesky(), Jacobi()], ids=["ic0", "jacobi"])
@pytest.mark.parametrize("solver", [PCG, GMRES])
def test_preconditioner_set_up_from_A_refuses_an_operator(kind, M, solver):
    with pytest.raises(TypeError, match=f"M: {type(M).__name__} needs A's entries; A is a "
                                        f"matrix-free operator"):
        solver(M=M)(given_as(poisson(), kind), randn(64))


def test_preconditioner_set_up_from_a_converted_scipy_matrix():
    A = poisson()
    b = randn(64, seed=6)
    assert_same_solve(PCG(IncompleteCholesky(), rtol=1e-10)(A.to_scipy(), b),
                      PCG(IncompleteCholesky(), rtol=1e-10)(A, b))


def test_spd_check_skipped_for_an_operator_breakdown_shows():
    A = poisson()
    indefinite = A - 4.0 * ls.eye(64, dtype=F64)
    with pytest.raises(ValueError, match="positive definite"):
        PCG()(A.with_values(-A.values), randn(64))
    solution = PCG()(sla.aslinearoperator(indefinite.to_scipy()), randn(64, seed=7))
    assert solution.status == "breakdown"


# ---------------------------------------------------------------------------- gradients


@pytest.mark.parametrize("layout", ["coo", "csr"])
@pytest.mark.parametrize("solver", SOLVERS)
def test_gradient_through_torch_sparse_values(layout, solver):
    A = poisson()
    b = randn(64, seed=8)
    values = A.values.clone().requires_grad_()
    tensor = (A.with_values(values).to_torch() if layout == "csr" else
              torch.sparse_coo_tensor(torch.stack([A.row_indices(), A.col_indices]), values,
                                      A.shape))
    solve = SOLVERS[solver]()
    solve(tensor, b).x.square().sum().backward()
    reference = A.with_values(A.values.clone().requires_grad_())
    solve(reference, b).x.square().sum().backward()
    torch.testing.assert_close(values.grad, reference.values.grad, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("mode", ["unrolled", "checkpoint"])
def test_gradient_through_a_dense_A(mode):
    A = poisson()
    b = randn(64, seed=9)
    dense = A.to_dense().requires_grad_()
    PCG(rtol=1e-10, differentiation=mode)(dense, b).x.sum().backward()
    reference = A.with_values(A.values.clone().requires_grad_())
    PCG(rtol=1e-10, differentiation=mode)(reference, b).x.sum().backward()
    torch.testing.assert_close(dense.grad[A.row_indices(), A.col_indices],
                               reference.values.grad, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("solver", [PCG(rtol=1e-10), PCG(rtol=1e-10, differentiation="checkpoint"),
                                    PCG(rtol=1e-10, differentiation="implicit"),
                                    GMRES(restart=10, rtol=1e-10)],
                         ids=["pcg-unrolled", "pcg-checkpoint", "pcg-implicit", "gmres"])
@pytest.mark.parametrize("kind", ["linear_operator", "callable"])
def test_gradient_to_b_through_an_operator(device, solver, kind):
    # GMRES on a nonsymmetric A: a LinearOperator's product is differentiated by rmatvec
    A = (poisson() if isinstance(solver, PCG) else convection_diffusion(8)).to(device)
    grads = []
    for given in (A, given_as(A, kind)):
        b = randn(64, seed=10, device=device, requires_grad=True)
        weights = randn(64, seed=11, device=device)
        (solver(given, b).x * weights).sum().backward()
        grads.append(b.grad)
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-8, atol=1e-10)


def test_gradient_to_a_preconditioner_through_a_linear_operator():
    A = poisson()
    b = randn(64, seed=12)
    grads = []
    for given in (A, sla.aslinearoperator(A.to_scipy())):
        M = ls.diag(0.25 * torch.ones(64, dtype=F64)).requires_grad_()
        PCG(M, maxiter=6, rtol=0.0)(given, b).x.square().sum().backward()
        grads.append(M.values.grad)
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-9, atol=1e-12)


def test_implicit_refuses_a_dense_A_that_requires_grad():
    dense = poisson().to_dense().requires_grad_()
    with pytest.raises(ValueError, match="A: implicit differentiation gives no gradient to a "
                                         "matrix-free A"):
        PCG(differentiation="implicit")(dense, randn(64))
    with torch.no_grad():
        assert PCG(differentiation="implicit")(dense, randn(64)).converged


def test_gmres_gradient_needs_the_transpose_of_a_linear_operator():
    S = convection_diffusion(8).to_scipy()
    L = sla.LinearOperator(S.shape, matvec=lambda x: S @ x, dtype=np.float64)
    b = randn(64, seed=13, requires_grad=True)
    solution = GMRES(restart=10, rtol=1e-8)(L, b)
    assert solution.converged
    with pytest.raises(NotImplementedError, match="A: the gradient through a product with a "
                                                  "LinearOperator needs its transpose, rmatvec"):
        solution.x.sum().backward()


def test_callable_that_cuts_the_graph_is_refused():
    S = poisson().to_scipy()
    leaves_torch = lambda x: torch.from_numpy(S @ x.detach().numpy())  # noqa: E731
    assert PCG()(leaves_torch, randn(64)).converged
    with pytest.raises(ValueError, match="A: expected A x to be differentiable in x"):
        PCG()(leaves_torch, randn(64, requires_grad=True))


# ---------------------------------------------------------------------------- bad operands


@pytest.mark.parametrize("solver", [PCG(), GMRES()], ids=["pcg", "gmres"])
@pytest.mark.parametrize("A, b, error, message", [
    ("A", randn(9), TypeError, "A: expected a CSRMatrix, a scipy sparse matrix or "
                               "LinearOperator, a torch tensor"),
    (3.0, randn(9), TypeError, "A: expected a CSRMatrix"),
    (sla.aslinearoperator(sp.random_array((9, 8), density=0.5)), randn(9), ValueError,
     r"A: expected a square matrix, got shape \(9, 8\)"),
    (sla.aslinearoperator(sp.eye_array(9)), randn(64), ValueError,
     r"b: expected shape \(9,\) or \(9, k\) for the 9x9 matrix, got \(64,\)"),
    (sp.random_array((9, 8), density=0.5), randn(9), ValueError, "A: expected a square matrix"),
    (torch.ones(9, 9, 1, dtype=F64), randn(9), ValueError, "A: expected a 2-D tensor"),
    (torch.ones(9, 9, dtype=torch.int64), randn(9), TypeError,
     "A: expected dtype float32 or float64"),
    (torch.eye(9, dtype=F64).to_sparse_csc(), randn(9), TypeError,
     "A: expected a sparse COO or CSR tensor, got layout torch.sparse_csc"),
    (sp.eye_array(9, dtype=np.complex128), randn(9), TypeError, "A: expected real entries"),
    (torch.eye(9), randn(9), TypeError, r"b: expected dtype torch.float32 \(the dtype of A\)"),
    (lambda x: x[:8], randn(9), ValueError, r"A: expected A x shaped like x \(9,\), got \(8,\)"),
    (lambda x: x.numpy(), randn(9), ValueError, "A: expected A x shaped like x .*, got ndarray"),
    (lambda x: x.float(), randn(9), TypeError, r"A x: expected dtype torch.float64"),
    (lambda x: x, torch.ones(9, dtype=torch.int64), TypeError,
     "b: expected dtype float32 or float64"),
    (lambda x: x, torch.ones(()), ValueError, r"b: expected shape \(n,\) or \(n, k\)"),
], ids=["string", "number", "linop-not-square", "linop-wrong-size", "scipy-not-square",
        "dense-3d", "dense-int", "torch-csc", "complex", "dense-dtype-vs-b", "callable-shape",
        "callable-numpy", "callable-dtype", "b-int", "b-0d"])
def test_bad_operand_names_the_argument(solver, A, b, error, message):
    with pytest.raises(error, match=message):
        solver(A, b)


@pytest.mark.parametrize("solver", [PCG, GMRES])
@pytest.mark.parametrize("M, error, message", [
    (sla.aslinearoperator(sp.eye_array(8)), ValueError, r"M: expected the shape of A \(9, 9\), "
                                                        r"got \(8, 8\)"),
    (sp.eye_array(8), ValueError, "M: expected the shape of A"),
    (torch.eye(9), TypeError, r"M: expected dtype torch.float64 \(the dtype of A\)"),
    ("M", TypeError, "M: expected a CSRMatrix, a scipy sparse matrix"),
], ids=["linop-shape", "scipy-shape", "dense-dtype", "string"])
def test_bad_preconditioner_names_M(solver, M, error, message):
    with pytest.raises(error, match=message):
        solver(M)(lambda x: 2 * x, randn(9))


def test_solvers_that_need_entries_refuse_an_operator():
    b = randn(9)
    with pytest.raises(TypeError, match="A: expected a matrix with its entries"):
        check_system(lambda x: x, b)
    A, _, _ = check_system(sp.eye_array(9), b)
    assert isinstance(A, ls.CSRMatrix) and A.dtype == F64
    assert isinstance(check_system(lambda x: x, b, matrix_free=True)[0], Operator)


def test_as_operator_of_each_kind():
    A = poisson()
    b = randn(64)
    for kind in KINDS:
        operator = as_operator(given_as(A, kind), b)
        assert isinstance(operator, Operator if kind in MATRIX_FREE else ls.CSRMatrix)
        assert operator.shape == (64, 64) and operator.dtype == F64
        torch.testing.assert_close(operator @ b, A @ b, rtol=1e-12, atol=1e-12)


# ---------------------------------------------------------------------------- settings


@pytest.mark.parametrize("make", [
    lambda **kw: PCG(**kw), lambda **kw: GMRES(**kw),
    lambda **kw: Jacobi(**kw), lambda **kw: Heavyball(0.1, 0.1, **kw),
], ids=["pcg", "gmres", "jacobi", "heavyball"])
@pytest.mark.parametrize("name", ["rtol", "atol"])
@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf"), np.nan, -1e-3,
                                   True, "1e-5", None])
def test_tolerance_must_be_a_finite_number(make, name, value):
    with pytest.raises(ValueError, match=f"{name}: expected a finite number >= 0, got"):
        make(**{name: value})


@pytest.mark.parametrize("make", [PCG, GMRES], ids=["pcg", "gmres"])
def test_maxiter_is_an_integer_numpy_ones_too(make):
    for value in (-1, 2.0, True, "10", float("nan")):
        with pytest.raises(ValueError, match="maxiter: expected an integer >= 0"):
            make(maxiter=value)
    solver = make(maxiter=np.int64(7), rtol=np.float32(0.0), atol=np.float64(0.0))
    assert type(solver.maxiter) is int and solver.maxiter == 7
    assert solver(poisson(), randn(64)).iterations == 7


def test_numpy_bool_check_spd():
    assert PCG(check_spd=np.bool_(False)).check_spd is False
    with pytest.raises(TypeError, match="check_spd: expected a bool, got int"):
        PCG(check_spd=1)


def test_stationary_solvers_take_scipy_and_name_what_they_cannot():
    """Jacobi needs A's diagonal: a scipy matrix is converted, an operator refused by
    name; the heavy ball needs products only and takes both."""
    problem = poisson_1d(8, dtype=torch.float64)
    b = torch.ones(8, dtype=torch.float64)
    S = problem.A.to_scipy()
    jacobi, heavyball = Jacobi(0.6, maxiter=7), Heavyball(0.3, 0.1, maxiter=7)
    for solver in (jacobi, heavyball):
        expected = solver(problem.A, b)
        for A in ((S, sla.aslinearoperator(S)) if solver is heavyball else (S,)):
            solution = solver(A, b)
            assert solution.iterations == expected.iterations
            torch.testing.assert_close(solution.x, expected.x)
    with pytest.raises(TypeError, match=r"A: expected a matrix with its entries"):
        jacobi(sla.aslinearoperator(S), b)
