"""compare_preconditioners across problem families: the set-up and the solve timed
apart, each row's family, the per-family summary recomputed by hand from the rows,
and the iterations-against-size plot."""
import io
import math

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure

from learnsolve.evaluation import compare_preconditioners
from learnsolve.problems import diffusion_2d, poisson_2d
from learnsolve.solvers import IncompleteCholesky
from learnsolve.summary import Summary, SummaryRow

F64 = torch.float64


def _families():
    """Two families of two sizes each, the family in the problems' info."""
    problems = [poisson_2d(n, dtype=F64) for n in (6, 8)] + \
        [diffusion_2d(n, n, "lognormal", seed=s, dtype=F64) for n, s in ((6, 0), (8, 1))]
    for problem in problems:
        problem.info["family"] = "poisson" if "Poisson" in problem.name else "lognormal"
    return problems


class Counting:
    """IC(0) that counts its set-ups (and which one a solver asked for)."""

    def __init__(self):
        self.calls = []

    def setup(self, A):
        self.calls.append("setup")
        return IncompleteCholesky().setup(A)

    def setup_symmetric(self, A):
        self.calls.append("setup_symmetric")
        return IncompleteCholesky().setup(A)


def test_setup_and_solve_are_timed_apart():
    problem = poisson_2d(16, dtype=F64)
    rows = compare_preconditioners(IncompleteCholesky(), problem, baselines=("none", "ic0"))
    trained, none, ic0 = rows
    assert [row.iterations for row in rows] == [16, 43, 16]        # as before the split
    for row in rows:
        assert row.time == row.setup_time + row.solve_time
        assert row.solve_time > 0 and row.setup_time >= 0
    assert trained.setup_time > 0 and ic0.setup_time > 0           # a factorisation
    assert none.setup_time < 1e-3 and none.setup_time < ic0.setup_time
    header = str(rows).splitlines()[0]
    assert "setup (s)" in header and "solve (s)" in header


def test_the_preconditioner_is_set_up_once_as_the_solver_needs_it():
    problem = poisson_2d(8, dtype=F64)
    counting = Counting()
    (row,) = compare_preconditioners(counting, problem, baselines=())
    assert counting.calls == ["setup_symmetric"] and row.converged       # PCG: symmetric
    counting.calls.clear()
    (row,) = compare_preconditioners(counting, problem, baselines=(), solver="gmres")
    assert counting.calls == ["setup"] and row.converged


def test_a_breakdown_in_the_setup_or_the_solve_is_a_row():
    class BrokenSetup:
        def setup(self, A):
            raise torch.linalg.LinAlgError("no factor")

    class BrokenApply:
        def setup(self, A):
            def apply(r):
                raise torch.linalg.LinAlgError("singular pivot")
            return apply

    problem = poisson_2d(6, dtype=F64)
    for M, message, in_solve in ((BrokenSetup(), "no factor", False),
                                 (BrokenApply(), "singular pivot", True)):
        with pytest.warns(UserWarning, match=r"no convergence \(breakdown"):
            row, none = compare_preconditioners(M, problem, baselines=("none",))
        assert (row.status, row.iterations, row.converged, row.message) == \
            ("breakdown", None, False, message)
        assert math.isnan(row.relative_residual) and row.vs_none == math.inf
        assert row.time == row.setup_time + row.solve_time
        assert (row.solve_time > 0) == in_solve and row.setup_time >= 0
        assert none.converged


def test_families_from_info_callable_and_sequence():
    problems = _families()
    by_info = compare_preconditioners(None, problems, baselines=("jacobi",))
    assert [row.family for row in by_info] == ["poisson"] * 4 + ["lognormal"] * 4
    by_size = compare_preconditioners(None, problems, baselines=("jacobi",),
                                      families=lambda problem: f"n={problem.num_nodes}")
    assert [row.family for row in by_size[::2]] == ["n=36", "n=64", "n=36", "n=64"]
    named = compare_preconditioners(None, problems, baselines=(),
                                    families=("a", "b", "c", "d"))
    assert [row.family for row in named] == ["a", "b", "c", "d"]
    # Without a family in the info: the problem's name, each problem its own family.
    plain = poisson_2d(6, dtype=F64)
    assert compare_preconditioners(None, plain, baselines=())[0].family == "2D Poisson, 6 x 6"


def test_bad_families_are_refused():
    problems = _families()
    with pytest.raises(ValueError, match=r"families: expected one name per problem \(4\), got 3"):
        compare_preconditioners(None, problems, baselines=(), families=["a", "b", "c"])
    with pytest.raises(TypeError, match=r"families\[1\]: expected a family name"):
        compare_preconditioners(None, problems, baselines=(), families=["a", 2, "c", "d"])
    with pytest.raises(TypeError, match=r"families\(problems\[0\]\)"):
        compare_preconditioners(None, problems, baselines=(), families=lambda p: p.num_nodes)
    with pytest.raises(TypeError, match="families: expected None, a callable"):
        compare_preconditioners(None, problems, baselines=(), families="poisson")


def test_summary_recomputed_from_the_rows():
    baselines = ("none", "jacobi", "ic0")
    evaluation = compare_preconditioners(IncompleteCholesky(1), _families(),
                                         baselines=baselines)
    summary = evaluation.summary()                               # reference "ic0"
    assert isinstance(summary, Summary) and summary.reference == "ic0"
    assert [(row.family, row.method) for row in summary] == [
        (family, method) for family in ("poisson", "lognormal")
        for method in ("trained",) + baselines]
    for family in ("poisson", "lognormal"):
        reference = {row.index: row.iterations for row in evaluation
                     if row.family == family and row.method == "ic0"}
        for method in ("trained",) + baselines:
            rows = [row for row in evaluation if row.family == family and row.method == method]
            assert len(rows) == 2 and all(row.converged for row in rows)
            counts = [row.iterations for row in rows]
            ratios = [row.iterations / reference[row.index] for row in rows]
            row = summary.row(family, method)
            assert isinstance(row, SummaryRow)
            assert (row.problems, row.n_min, row.n_max, row.converged) == (2, 36, 64, 2)
            assert row.median_iterations == (counts[0] + counts[1]) / 2
            assert row.worst_iterations == max(counts)
            assert row.median_setup_time == pytest.approx(
                (rows[0].setup_time + rows[1].setup_time) / 2)
            assert row.median_solve_time == pytest.approx(
                (rows[0].solve_time + rows[1].solve_time) / 2)
            assert row.median_ratio == pytest.approx((ratios[0] + ratios[1]) / 2)
            assert row.worst_ratio == pytest.approx(max(ratios))
            assert row.compared == 2 and row.failed_in_ratio == 0
    ic0 = summary.row("poisson", "ic0")
    assert ic0.median_ratio == ic0.worst_ratio == 1
    assert summary.row("poisson", "trained").worst_ratio < 1                 # IC(1) beats IC(0)
    with pytest.raises(ValueError, match="expected a family among"):
        summary.row("poisson", "amg")
    text = str(summary).splitlines()
    assert text[0].split("  ")[0] == "family" and "median vs ic0" in text[0]
    assert len(text) == 2 + 8 and "36–64" in text[2] and "2/2" in text[2]
    markdown = summary.to_markdown()
    assert "| poisson | trained |" in markdown and "| lognormal | ic0 |" in markdown
    assert markdown.splitlines()[1].startswith("|---") and "worst vs ic0" in markdown


def test_worst_ratio_counts_a_solve_that_did_not_converge_as_inf():
    problems = [poisson_2d(n, dtype=F64) for n in (6, 8)]         # none: 17 and 23 iterations
    evaluation = compare_preconditioners(IncompleteCholesky(), problems, maxiter=20,
                                         baselines=("none", "ic0"), families=["poisson"] * 2)
    iterations = {(row.index, row.method): row.iterations for row in evaluation}
    assert [row.converged for row in evaluation] == [True, True, True, True, False, True]
    none = evaluation.summary("ic0").row("poisson", "none")
    assert none.converged == 1 and none.worst_iterations == math.inf
    assert none.median_iterations == math.inf                      # median of (17, inf)
    assert none.worst_ratio == none.median_ratio == math.inf and none.failed_in_ratio == 1
    assert none.compared == 2
    line = [line for line in str(evaluation.summary("ic0")).splitlines()
            if line.startswith("poisson  none")][0]
    assert line.count("inf (1 not converged)") == 2 and "1/2" in line
    # Where the reference did not converge, the problem is left out of the ratios.
    versus_none = evaluation.summary("none")
    trained = versus_none.row("poisson", "trained")
    assert trained.compared == 1 and trained.failed_in_ratio == 0
    assert trained.median_ratio == trained.worst_ratio == iterations[0, "trained"] / 17
    assert "[1 without none]" in str(versus_none)


def test_reference_missing_gives_no_ratio():
    evaluation = compare_preconditioners(None, _families(), baselines=("jacobi",))
    summary = evaluation.summary("ic0")
    assert all(row.median_ratio is None and row.worst_ratio is None and row.compared == 0
               for row in summary)
    assert all(line.split()[-2:] == ["-", "-"] for line in str(summary).splitlines()[2:])
    assert evaluation.summary("jacobi").row("lognormal", "jacobi").median_ratio == 1.0
    with pytest.raises(TypeError, match="reference: expected a method name"):
        evaluation.summary(0)


def test_plot_scaling_one_line_per_method_per_family():
    problems = _families() + [poisson_2d(8, dtype=F64, seed=1)]
    problems[-1].info["family"] = "poisson"
    baselines = ("none", "ic0", "amg")
    evaluation = compare_preconditioners(IncompleteCholesky(), problems, maxiter=20,
                                         baselines=baselines)
    fig = evaluation.plot_scaling()
    assert isinstance(fig, Figure)
    assert [axis.get_title() for axis in fig.axes] == ["poisson", "lognormal"]
    labels = ["trained", "no preconditioner", "IC(0)", "AMG (smoothed aggregation)"]
    for axis in fig.axes:
        assert axis.get_xscale() == "log" and [line.get_label() for line in axis.lines] == labels
        styles = {(line.get_color(), line.get_linestyle(), line.get_marker())
                  for line in axis.lines}
        assert len(styles) == 4
    poisson = fig.axes[0]
    assert list(poisson.lines[0].get_xdata()) == [36, 64]
    ic0 = {(row.n, row.index): row.iterations for row in evaluation
           if row.method == "ic0" and row.family == "poisson"}
    assert poisson.lines[2].get_ydata()[1] == (ic0[64, 1] + ic0[64, 4]) / 2   # the median
    none = poisson.lines[1].get_ydata()                  # 17 at n = 36, none converge at 64
    assert none[0] == 17 and math.isnan(none[1])
    fig.savefig(io.BytesIO(), format="png")
    # On given axes, one per family.
    other = Figure()
    axes = other.subplots(1, 2)
    assert evaluation.plot_scaling(ax=axes) is other
    assert all(len(axis.lines) == 4 for axis in axes)
    with pytest.raises(ValueError, match=r"ax: expected one Axes per family \(2"):
        evaluation.plot_scaling(ax=axes[0])


def test_recommended_baselines_are_documented_and_run():
    assert 'baselines=("none", "jacobi", "ic0", "ic1", "spai", "amg")' in \
        " ".join(compare_preconditioners.__doc__.split())
    problem = poisson_2d(8, dtype=F64)
    problem.info["family"] = "poisson"
    evaluation = compare_preconditioners(
        IncompleteCholesky(), problem,
        baselines=("none", "jacobi", "ic0", "ic1", "spai", "amg"))
    summary = evaluation.summary()
    assert [row.method for row in summary] == ["trained", "none", "jacobi", "ic0", "ic1",
                                                "spai", "amg"]
    assert all(row.converged == 1 for row in summary)
    assert np.isclose(summary.row("poisson", "trained").median_ratio, 1.0)
