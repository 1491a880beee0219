"""compare_preconditioners without a Trainer: iteration counts against scipy's cg."""
import numpy as np
import pytest
import scipy.sparse.linalg as sla
import torch

import learnsolve as ls
from learnsolve.evaluation import compare_preconditioners
from learnsolve.problems import poisson_2d


def _scipy_iterations(A, b, M=None, rtol=1e-6):
    count = []
    sla.cg(A, b, rtol=rtol, maxiter=10 * A.shape[0], M=M, callback=lambda x: count.append(1))
    return len(count)


def test_any_preconditioner_against_scipy():
    problem = poisson_2d(12, dtype=torch.float64)
    A = problem.A
    d = A.diagonal()
    scaled = ls.diag(1.0 / (d * torch.linspace(1.0, 3.0, 144, dtype=torch.float64)))
    rows = compare_preconditioners(scaled, [problem, problem], baselines=("none", "jacobi"))
    assert len(rows) == 6 and all(row.converged for row in rows)
    b = problem.random_rhs(seed=problem.seed).numpy()
    S = A.to_scipy()
    expected = {"trained": _scipy_iterations(S, b, scaled.to_scipy()),
                "none": _scipy_iterations(S, b),
                "jacobi": _scipy_iterations(S, b, ls.diag(1.0 / d).to_scipy())}
    assert {row.method: row.iterations for row in rows[:3]} == expected
    assert [row.index for row in rows] == [0, 0, 0, 1, 1, 1]
    np.testing.assert_allclose(rows[1].residuals[-1], rows[1].relative_residual)


def test_bad_arguments():
    problem = poisson_2d(4, dtype=torch.float64)
    with pytest.raises(ValueError, match="baselines"):
        compare_preconditioners(None, problem, baselines=("ilu",))
    with pytest.raises(TypeError, match="problems"):
        compare_preconditioners(None, problem.A)
    with pytest.raises(ValueError, match="maxiter"):
        compare_preconditioners(None, problem, maxiter=0)
