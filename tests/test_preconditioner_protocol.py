"""The preconditioner protocol: every preconditioner derives from Preconditioner and
its setup(A) returns a PreconditionerOperator that says truly whether it is
symmetric and applies its transpose where it has one; the model -> preconditioner
rule; the baseline registry; implicit differentiation of GMRES (adjoint with A^T, M^T)."""
import warnings

import pytest
import torch

from cases import randn
from learnsolve.evaluation import BASELINE_REGISTRY, compare_preconditioners, register_baseline
from learnsolve.problems import convection_diffusion_2d, poisson_2d
from learnsolve.solvers import (AMG, GMRES, PCG, RAS, SPAI, ClassicalSPAI, IncompleteCholesky,
                                IncompleteFactor, IncompleteLU, Jacobi, LowerFactor,
                                Preconditioner, PreconditionerOperator)
from learnsolve.solvers.base import NotAPreconditioner, as_preconditioner, preconditioner_of

F64 = torch.float64


def _dense(operator, n):
    return operator(torch.eye(n, dtype=F64))


def _spd():
    return poisson_2d(6, dtype=F64).with_partition(4, overlap=1)


def _nonsymmetric():
    return convection_diffusion_2d(6, epsilon=0.05, dtype=F64).with_partition(4, overlap=1)


def _trained(module):
    """Parameters moved off their (often symmetric) start, so that symmetry is not luck."""
    with torch.no_grad():
        for p in module.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=torch.Generator().manual_seed(3),
                                      dtype=p.dtype))
    return module


CASES = {
    "jacobi": lambda p: (Jacobi(omega=0.8, num_nodes=p.A.shape[0]), True),
    "lower_factor": lambda p: (_trained(LowerFactor.banded(p, 1)), True),
    "spai": lambda p: (_trained(SPAI(p.A)), False),
    "spai_symmetric": lambda p: (_trained(SPAI(p.A, symmetric=True)), True),
    "spai_classical": lambda p: (ClassicalSPAI(), False),
    "ic0": lambda p: (IncompleteCholesky(), True),
    "ilu1": lambda p: (IncompleteLU(fill=1), False),
    "factor_cholesky": lambda p: (_trained(IncompleteFactor(p.A, kind="cholesky")), True),
    "factor_lu": lambda p: (_trained(IncompleteFactor(p.A, kind="lu", ordering="rcm")), False),
    "amg": lambda p: (AMG(max_coarse=10), True),
    "ras": lambda p: (RAS(p), False),
    "ras_two_level": lambda p: (RAS(p, coarse="nicolaides"), False),
}


@pytest.mark.parametrize("name", CASES)
@pytest.mark.parametrize("make_problem", [_spd, _nonsymmetric], ids=["spd", "nonsymmetric"])
def test_setup_returns_an_operator_that_tells_the_truth(name, make_problem):
    p = make_problem()
    if name in ("ic0", "factor_cholesky", "lower_factor", "amg") and \
            make_problem is _nonsymmetric:
        pytest.skip("a symmetric method for SPD matrices")
    M, symmetric = CASES[name](p)
    assert isinstance(M, Preconditioner)
    n = p.A.shape[0]
    with torch.no_grad():
        op = M.setup(p.A)
    assert isinstance(op, PreconditionerOperator)
    assert (op.shape, op.dtype, op.device) == ((n, n), F64, p.A.device)
    assert op.symmetric is symmetric
    dense = _dense(op, n).detach()
    assert torch.equal(op.apply(torch.eye(n, dtype=F64)).detach(), dense)
    assert torch.equal((op @ torch.eye(n, dtype=F64)).detach(), dense)
    if symmetric:
        torch.testing.assert_close(dense, dense.T, rtol=1e-10, atol=1e-12)
        assert op.transpose() is op
    elif not (name == "ilu1" and make_problem is _spd):     # ILU of SPD A: M = M^T
        assert not torch.allclose(dense, dense.T, rtol=1e-6, atol=1e-8)
    if op.has_transpose:
        torch.testing.assert_close(_dense(op.T, n).detach(), dense.T, rtol=1e-10, atol=1e-12)
        assert op.T.T(torch.eye(n, dtype=F64)).detach().equal(dense)
    else:
        with pytest.raises(NotImplementedError, match="transpose M\\^T is not available"):
            op.transpose()


def test_ras_symmetric_variant_is_symmetric():
    p = _spd()
    for coarse in (None, "nicolaides"):
        op = RAS(p, coarse=coarse).setup_symmetric(p.A)
        assert op.symmetric
        dense = _dense(op, p.A.shape[0])
        torch.testing.assert_close(dense, dense.T, rtol=1e-10, atol=1e-12)


def test_defaults_of_the_base_class():
    p = _spd()
    M = IncompleteCholesky()
    assert M.for_problem(p) is M
    r = randn(36, seed=1)
    assert torch.equal(M.setup_symmetric(p.A)(r), M.setup(p.A)(r))


def test_as_preconditioner_wraps_what_it_is_given():
    A = _nonsymmetric().A
    r = randn(36, seed=2)
    assert as_preconditioner(None, A) is None
    bare = as_preconditioner(lambda x: 2 * x, A)
    assert isinstance(bare, PreconditionerOperator) and not bare.has_transpose
    assert torch.equal(bare(r), 2 * r)

    class DuckTyped(torch.nn.Module):                  # setup returning a bare callable
        def setup(self, A):
            return lambda x: 3 * x
    duck = as_preconditioner(DuckTyped(), A)
    assert isinstance(duck, PreconditionerOperator) and duck.name == "DuckTyped"
    assert torch.equal(duck(r), 3 * r)
    matrix = as_preconditioner(A, A)                   # a CSRMatrix M: products, and M^T
    torch.testing.assert_close(matrix.T(r), A.to_dense().T @ r)
    ready = IncompleteLU().setup(A)
    assert as_preconditioner(ready, A) is ready


def test_preconditioner_of_one_rule():
    M = IncompleteCholesky()
    assert preconditioner_of(M) is M
    assert preconditioner_of(PCG(M=M)) is M
    assert preconditioner_of(GMRES(M=M)) is M
    for model, needed_by, message in [(PCG(), None, "model: expected a preconditioner"),
                                      (torch.nn.Linear(2, 2), "evaluate",
                                       "model: evaluate needs a preconditioner")]:
        with pytest.raises(NotAPreconditioner, match=message) as error:
            preconditioner_of(model, needed_by)
        assert isinstance(error.value, TypeError) and isinstance(error.value, ValueError)


def test_register_baseline_extends_the_comparisons():
    p = _spd()
    try:
        register_baseline("ic0_rcm", lambda: IncompleteCholesky(ordering="rcm"), "IC(0), RCM")
        table = compare_preconditioners(IncompleteCholesky(), [p], baselines=("ic0", "ic0_rcm",
                                                                               "spai"))
        assert [row.method for row in table] == ["trained", "ic0", "ic0_rcm", "spai"]
        assert all(row.converged for row in table)
    finally:
        BASELINE_REGISTRY.pop("ic0_rcm", None)
    with pytest.raises(ValueError, match="name: expected a non-empty string"):
        register_baseline("trained", IncompleteCholesky)
    with pytest.raises(TypeError, match="factory: expected a callable"):
        register_baseline("x", IncompleteCholesky())
    with pytest.raises(TypeError, match="label: expected a string"):
        register_baseline("x", IncompleteCholesky, 3)
    assert "x" not in BASELINE_REGISTRY


# ---------------------------------------------------------------------------- GMRES implicit
def _dense_gradients(A, B, weights):
    """Gradients of sum(weights * A^{-1} B) in A's values and B, by a dense solve."""
    values = A.values.detach().clone().requires_grad_(True)
    B = B.detach().clone().requires_grad_(True)
    dense = torch.zeros(A.shape, dtype=F64).index_put(
        (A.row_indices(), A.col_indices), values)
    (weights * torch.linalg.solve(dense, B)).sum().backward()
    return values.grad, B.grad


PRECONDITIONERS = {
    "none": lambda p: None,
    "ilu0 (transpose)": lambda p: IncompleteLU(),
    "classical spai (transpose)": lambda p: ClassicalSPAI(),
    "matrix (transpose)": lambda p: IncompleteLU().setup(p.A),
    "ras (set up for A^T)": lambda p: RAS(p, coarse="nicolaides"),
}


@pytest.mark.parametrize("name", PRECONDITIONERS)
@pytest.mark.parametrize("columns", [1, 3])
def test_gmres_implicit_gradient_is_that_of_the_exact_solution(name, columns):
    p = _nonsymmetric()
    M = PRECONDITIONERS[name](p)
    A = p.A.detach().requires_grad_(True)
    B = randn(36, columns, seed=5).squeeze(1).requires_grad_(True)
    weights = randn(*B.shape, seed=6)
    solver = GMRES(M=M, restart=40, rtol=1e-13, differentiation="implicit")
    solution = solver(A, B)
    assert solution.converged
    unrolled = GMRES(M=M, restart=40, rtol=1e-13)(p.A, B.detach())
    assert solution.iterations == unrolled.iterations
    torch.testing.assert_close(solution.x.detach(), unrolled.x, rtol=1e-12, atol=1e-12)
    with warnings.catch_warnings():
        warnings.simplefilter("error")             # the adjoint solve converges
        (weights * solution.x).sum().backward()
    grad_values, grad_b = _dense_gradients(p.A, B, weights)
    torch.testing.assert_close(A.values.grad, grad_values, rtol=1e-8, atol=1e-10)
    torch.testing.assert_close(B.grad, grad_b, rtol=1e-8, atol=1e-10)


def test_gmres_implicit_refusals():
    p = _nonsymmetric()
    A = p.A.detach().requires_grad_(True)
    b = randn(36, seed=7)
    callable_M = IncompleteLU().setup(p.A).apply          # a bare callable: no transpose
    x = GMRES(M=callable_M, rtol=1e-12, differentiation="implicit")(A, b).x
    with pytest.raises(NotImplementedError, match="M: implicit differentiation of GMRES"):
        x.sum().backward()
    learned = IncompleteFactor(p.A, kind="lu")
    with pytest.raises(ValueError, match="M: implicit differentiation gives no gradient"):
        GMRES(M=learned, differentiation="implicit")(A, b)
    with pytest.raises(TypeError, match="A: expected a matrix with its entries"):
        GMRES(differentiation="implicit")(lambda x: p.A @ x, b)
    with pytest.raises(ValueError, match="differentiation: expected one of"):
        GMRES(differentiation="checkpoint")
    with torch.no_grad():                                  # no graph: nothing is refused
        assert GMRES(M=learned, rtol=1e-10, differentiation="implicit")(p.A, b).converged
