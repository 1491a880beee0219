"""compare_preconditioners without a Trainer: iteration counts against scipy's cg, the
flag on a preconditioner worse than none, row names and plot styles."""
import math
import warnings
from functools import partial

import numpy as np
import pytest
import scipy.sparse.linalg as sla
import torch
from matplotlib.colors import to_rgba

import learnsolve as ls
from learnsolve.evaluation import compare_preconditioners
from learnsolve.problems import ProblemSet, poisson_2d, random_grid_problem
from learnsolve.solvers import IncompleteCholesky, Jacobi


def _scipy_iterations(A, b, M=None, rtol=1e-6):
    count = []
    sla.cg(A, b, rtol=rtol, maxiter=10 * A.shape[0], M=M, callback=lambda x: count.append(1))
    return len(count)


def test_any_preconditioner_against_scipy():
    problem = poisson_2d(12, dtype=torch.float64)
    A = problem.A
    d = A.diagonal()
    scaled = ls.diag(1.0 / (d * torch.linspace(1.0, 3.0, 144, dtype=torch.float64)))
    with pytest.warns(UserWarning, match="does worse than none"):     # it does
        rows = compare_preconditioners(scaled, [problem, problem], baselines=("none", "jacobi"))
    assert len(rows) == 6 and all(row.converged for row in rows)
    b = problem.random_rhs(seed=problem.seed).numpy()
    S = A.to_scipy()
    expected = {"trained": _scipy_iterations(S, b, scaled.to_scipy()),
                "none": _scipy_iterations(S, b),
                "jacobi": _scipy_iterations(S, b, ls.diag(1.0 / d).to_scipy())}
    assert {row.method: row.iterations for row in rows[:3]} == expected
    assert rows[0].vs_none == expected["trained"] / expected["none"]
    assert [row.vs_none is None for row in rows] == [False, True, True] * 2
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


def _bad_preconditioner(n, seed=0):
    """SPD but badly scaled: M = diag(exp(3 g)), g standard normal."""
    g = torch.randn(n, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
    return ls.diag(torch.exp(3.0 * g))


def test_a_preconditioner_worse_than_none_is_flagged():
    problem = poisson_2d(10, dtype=torch.float64)
    bad = _bad_preconditioner(100)
    with pytest.warns(UserWarning) as caught:
        rows = compare_preconditioners(bad, problem, baselines=("none", "ic0"))
    trained, none, ic0 = rows
    assert trained.iterations > none.iterations and trained.converged
    assert trained.vs_none == trained.iterations / none.iterations > 1
    assert none.vs_none is None and ic0.vs_none is None          # the one under test only
    (warning,) = [w for w in caught if "does worse than none" in str(w.message)]
    assert str(warning.message) == (
        f"compare_preconditioners: the preconditioner under test does worse than none on "
        f"'2D Poisson, 10 x 10' (n = 100): {trained.iterations} PCG iterations, against "
        f"{none.iterations} PCG iterations without a preconditioner")
    lines = str(rows).splitlines()
    assert "vs none" in lines[0]
    assert f"{trained.vs_none:.2f} (worse)" in lines[2] and "worse" not in "".join(lines[3:])
    assert "| vs none |" in rows.to_markdown()
    # Not converging where none does is worse too.
    with pytest.warns(UserWarning, match=r"no convergence \(maxiter"):
        stalled = compare_preconditioners(bad, problem, maxiter=none.iterations,
                                          baselines=("none",))
    assert stalled[0].vs_none == math.inf and "inf (worse)" in str(stalled)


def test_a_good_preconditioner_is_not_flagged():
    problem = poisson_2d(10, dtype=torch.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        rows = compare_preconditioners(IncompleteCholesky(), problem, baselines=("none",))
        # Equal counts (Jacobi on a constant diagonal) are not worse.
        same = compare_preconditioners(Jacobi(1.0, learnable=False), problem,
                                       baselines=("none",))
        # Without "none" there is nothing to compare with.
        alone = compare_preconditioners(_bad_preconditioner(100), problem, baselines=("ic0",))
    assert 0 < rows[0].vs_none < 1 and "worse" not in str(rows)
    assert same[0].vs_none == 1.0
    assert all(row.vs_none is None for row in alone)
    assert [line.split("  ")[0] for line in str(alone).splitlines()][:1] == ["problem"]


def test_each_problem_of_a_set_has_its_own_row_name():
    problems = ProblemSet(partial(random_grid_problem, n=6, dtype=torch.float64), 3, seed=0)
    rows = compare_preconditioners(IncompleteCholesky(), problems, baselines=("none",))
    names = [row.problem for row in rows if row.method == "trained"]
    assert names == [f"2D diffusion, 6 x 6, #{i}" for i in range(3)]
    assert rows.plot(names[2]).axes[0].get_title().startswith(f"PCG on {names[2]} ")
    _, test = problems.split(1 / 3)
    (row, _) = compare_preconditioners(IncompleteCholesky(), test, baselines=("none",))
    assert row.problem == f"2D diffusion, 6 x 6, #{test.indices[0]}"   # its index in the set


def test_plot_tells_coinciding_curves_apart():
    """Jacobi and no preconditioner on a constant diagonal: the same iterates, so
    the same curve; each line has its own colour, line style and markers."""
    problem = poisson_2d(8, dtype=torch.float64)
    rows = compare_preconditioners(Jacobi(1.0, learnable=False), problem)
    lines = rows.plot().axes[0].lines
    assert len(lines) == 5
    styles = [(to_rgba(line.get_color()), line.get_linestyle(), line.get_marker())
              for line in lines]
    assert len(set(styles)) == 5
    coinciding = lines[:3]                                  # trained (Jacobi), none, Jacobi
    assert all(np.array_equal(line.get_ydata(), lines[0].get_ydata()) for line in coinciding)
    for attribute in (0, 1, 2):                             # no two alike in any of them
        assert len({styles[i][attribute] for i in range(3)}) == 3
    assert all(marker not in ("None", "", None) for _, _, marker in styles)
    assert len({str(line.get_markevery()) for line in coinciding}) == 3   # markers apart


def test_incomplete_factorisations_are_registered_baselines():
    from learnsolve.evaluation import BASELINE_REGISTRY, baseline
    from learnsolve.solvers import IncompleteLU
    problem = poisson_2d(16, dtype=torch.float64)
    rows = compare_preconditioners(IncompleteCholesky(), problem,
                                   baselines=("ic0", "ic1", "ic2", "ilu0"))
    counts = {row.method: row.iterations for row in rows}
    assert counts["trained"] == counts["ic0"] == counts["ilu0"]   # ILU(0) of SPD is IC(0)
    assert counts["ic2"] <= counts["ic1"] < counts["ic0"]
    assert isinstance(baseline("ilu1"), IncompleteLU) and baseline("ilu1").fill == 1
    assert BASELINE_REGISTRY["ic1"][0] == "IC(1)"
    with pytest.raises(ValueError, match="baselines: expected names among"):
        compare_preconditioners(IncompleteCholesky(), problem, baselines=("ic9",))


def test_registry_extends_and_gmres_compares_nonsymmetric_preconditioners(monkeypatch):
    from learnsolve.evaluation import BASELINE_REGISTRY
    from learnsolve.problems import convection_diffusion_2d
    from learnsolve.solvers import IncompleteLU
    monkeypatch.setitem(BASELINE_REGISTRY, "mine", ("my ILU(2)", lambda: IncompleteLU(2)))
    problem = convection_diffusion_2d(12, epsilon=0.01, dtype=torch.float64)
    rows = compare_preconditioners(IncompleteLU(), problem, baselines=("none", "ilu1", "mine"),
                                   solver="gmres")
    assert rows.solver == "GMRES" and all(row.converged for row in rows)
    counts = {row.method: row.iterations for row in rows}
    assert counts["mine"] <= counts["ilu1"] < counts["trained"] < counts["none"]
    with pytest.raises(ValueError, match="solver: expected one of"):
        compare_preconditioners(IncompleteLU(), problem, solver="bicgstab")
