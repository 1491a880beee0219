"""PCG with a preconditioner next to the classical ones: iterations, set-up and solve
times, residual histories, tables and plots (what :meth:`learnsolve.Trainer.evaluate`
reports), summarised per problem family (:meth:`Evaluation.summary`,
:mod:`learnsolve.summary`); and domain decomposition's interfaces side by side
(:func:`compare_schwarz`)."""
from __future__ import annotations

import math
import numbers
import time
import warnings
from dataclasses import dataclass, field
from functools import partial
from typing import Callable, Sequence

import numpy as np
import torch

from .core.validation import check_count
from .problems.problem import Problem, ProblemSet
from .solvers.base import as_preconditioner, bind_to_problem, preconditioner_of

__all__ = ["BASELINES", "BASELINE_REGISTRY", "Evaluation", "EvaluationRow", "SchwarzEvaluation",
           "SchwarzRow", "baseline", "compare_preconditioners", "compare_schwarz",
           "pcg_iterations", "preconditioner_of", "register_baseline"]

#: The classical preconditioners compared with by default, by name.
BASELINES = ("none", "jacobi", "ic0", "amg")


def _jacobi():
    from .solvers.jacobi import Jacobi
    return Jacobi(omega=1.0, learnable=False)


def _incomplete(kind: str, fill: int, ordering: str | None = None):
    def make():
        from .solvers import IncompleteCholesky, IncompleteLU
        return (IncompleteCholesky if kind == "cholesky" else IncompleteLU)(fill,
                                                                          ordering=ordering)
    return make


def _spai():
    from .solvers.spai import ClassicalSPAI
    return ClassicalSPAI()


def _amg():
    from .solvers.amg import AMG
    return AMG()


#: Every baseline by name: ``name -> (legend label, factory)``, the factory making a
#: fresh preconditioner (None: no preconditioner). Extend it to compare with others.
BASELINE_REGISTRY = {
    "none": ("no preconditioner", lambda: None),
    "jacobi": ("Jacobi", _jacobi),
    **{f"ic{k}": (f"IC({k})", _incomplete("cholesky", k)) for k in range(3)},
    **{f"ilu{k}": (f"ILU({k})", _incomplete("lu", k)) for k in range(3)},
    "ic0_rcm": ("IC(0), RCM ordering", _incomplete("cholesky", 0, "rcm")),
    "spai": ("SPAI (classical)", _spai),
    "amg": ("AMG (smoothed aggregation)", _amg),
}


#: The line styles and markers the methods of a plot cycle through (with the colours
#: C0, C1, ...): curves that coincide (Jacobi and none on a constant diagonal) stay apart.
LINESTYLES = ("-", "--", ":", "-.")
MARKERS = ("o", "s", "^", "D", "v", "x")


def as_problems(problems, name: str) -> Sequence[Problem]:
    """A Problem, a sequence of Problems or a ProblemSet as a non-empty sequence."""
    if isinstance(problems, Problem):
        problems = [problems]
    elif isinstance(problems, Sequence) and not isinstance(problems, (str, ProblemSet)):
        problems = list(problems)
        for i, problem in enumerate(problems):
            if not isinstance(problem, Problem):
                raise TypeError(f"{name}[{i}]: expected a learnsolve.problems.Problem, got "
                                f"{type(problem).__name__}")
    elif not isinstance(problems, ProblemSet):
        raise TypeError(f"{name}: expected a Problem, a sequence of Problems or a "
                        f"ProblemSet, got {type(problems).__name__}")
    if len(problems) == 0:
        raise ValueError(f"{name}: expected at least one problem, got none")
    return problems


@dataclass
class EvaluationRow:
    """One PCG solve of :func:`compare_preconditioners`.

    ``iterations`` is None when the solve could not start (a preconditioner
    that broke down in its setup: ``status == "breakdown"``, the reason in
    ``message``). ``residuals`` is the relative residual history (the worst
    column for a block right-hand side); ``index`` the problem's position
    among those evaluated. ``vs_none``, for the preconditioner under test
    where ``"none"`` was run and converged: its iterations over those without
    a preconditioner (above 1: worse than none), ``inf`` where it did not
    converge; None otherwise.

    ``setup_time`` is the wall-clock seconds to set the preconditioner up for
    the problem's matrix (making or binding it, then
    :func:`~learnsolve.solvers.base.as_preconditioner`), ``solve_time`` those
    of the Krylov solve with that operator; ``time`` is their sum. A breakdown
    in the set-up has the seconds until it in ``setup_time`` and
    ``solve_time == 0``. ``family`` is the problem family the row is
    summarised under (:meth:`Evaluation.summary`).
    """

    problem: str
    n: int
    method: str
    iterations: int | None
    converged: bool
    relative_residual: float
    time: float
    status: str
    message: str = ""
    residuals: np.ndarray = field(default_factory=lambda: np.zeros(0), repr=False)
    index: int = 0
    vs_none: float | None = None
    setup_time: float = 0.0
    solve_time: float = 0.0
    family: str = ""


class Table(Sequence):
    """Rows with a text form (``str``) and a markdown one (:meth:`to_markdown`)."""

    COLUMNS: tuple[str, ...] = ()

    def __init__(self, rows: Sequence, rtol: float):
        self.rows = list(rows)
        self.rtol = rtol

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index):
        return self.rows[index]

    def cells(self) -> list[list[str]]:  # pragma: no cover - interface
        """The table as strings, one list per row (without the header)."""
        raise NotImplementedError

    def __str__(self) -> str:
        table = [list(self.COLUMNS)] + self.cells()
        widths = [max(len(line[i]) for line in table) for i in range(len(self.COLUMNS))]
        lines = ["  ".join(cell.ljust(w) for cell, w in zip(line, widths)).rstrip()
                 for line in table]
        lines.insert(1, "  ".join("-" * w for w in widths))
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({len(self.rows)} rows, rtol={self.rtol:g})"

    def to_markdown(self) -> str:
        """The table in markdown."""
        lines = ["| " + " | ".join(self.COLUMNS) + " |",
                 "|" + "|".join("---" for _ in self.COLUMNS) + "|"]
        lines += ["| " + " | ".join(line) + " |" for line in self.cells()]
        return "\n".join(lines)


class Evaluation(Table):
    """The rows of :func:`compare_preconditioners`: a sequence of :class:`EvaluationRow`.

    ``str(evaluation)`` is a text table, :meth:`to_markdown` a markdown one,
    :meth:`plot` the residual histories of one problem, :meth:`summary` the
    median and worst per problem family and method, :meth:`plot_scaling` the
    iterations against the size.
    """

    COLUMNS = ("problem", "n", "method", "iterations", "vs none", "converged",
               "relative residual", "setup (s)", "solve (s)", "status")

    def __init__(self, rows: Sequence, rtol: float, solver: str = "PCG"):
        super().__init__(rows, rtol)
        self.solver = solver

    def cells(self) -> list[list[str]]:
        def versus(ratio):
            if ratio is None:
                return "-"
            return f"{ratio:.2f}" + (" (worse)" if ratio > 1 else "")
        return [[row.problem, str(row.n), row.method,
                 "-" if row.iterations is None else str(row.iterations), versus(row.vs_none),
                 "yes" if row.converged else "no",
                 "-" if math.isnan(row.relative_residual) else f"{row.relative_residual:.2e}",
                 f"{row.setup_time:.3g}", f"{row.solve_time:.3g}", row.status]
                for row in self.rows]

    def summary(self, reference: str = "ic0"):
        """The median and worst per problem family and method: a
        :class:`~learnsolve.summary.Summary` (see :func:`~learnsolve.summary.summarise`,
        which says how each number is computed). ``reference`` is the method
        the iterations are compared with, problem by problem.

        Examples
        --------
        >>> import torch, learnsolve
        >>> from learnsolve.evaluation import compare_preconditioners
        >>> problems = [learnsolve.problems.poisson_2d(n, dtype=torch.float64) for n in (8, 12)]
        >>> M = learnsolve.solvers.IncompleteCholesky(1)
        >>> evaluation = compare_preconditioners(M, problems, baselines=("none", "ic0"),
        ...                                      families=["poisson", "poisson"])
        >>> summary = evaluation.summary("ic0")
        >>> [(row.family, row.method, row.problems) for row in summary]
        [('poisson', 'trained', 2), ('poisson', 'none', 2), ('poisson', 'ic0', 2)]
        >>> row = summary.row("poisson", "trained")
        >>> (row.n_min, row.n_max, row.converged, row.worst_ratio < 1)
        (64, 144, 2, True)
        """
        from .summary import summarise
        return summarise(self, reference)

    def plot_scaling(self, ax=None):
        """The iterations against the size ``n`` (log x), one line per method and one
        subplot per family: see :func:`learnsolve.summary.plot_scaling`.

        Examples
        --------
        >>> import torch, learnsolve
        >>> from learnsolve.evaluation import compare_preconditioners
        >>> problems = [learnsolve.problems.poisson_2d(n, dtype=torch.float64) for n in (6, 8)]
        >>> evaluation = compare_preconditioners(None, problems, baselines=("jacobi",),
        ...                                      families=lambda problem: "poisson")
        >>> [line.get_label() for line in evaluation.plot_scaling().axes[0].lines]
        ['trained', 'Jacobi']
        """
        from .summary import plot_scaling
        return plot_scaling(self, ax)

    def plot(self, problem: int | str = 0, *, ax=None):
        """The relative residual against the iteration (semilogy), one line per method.

        ``problem`` is the position of a problem among those evaluated, or
        its name (the first problem of that name). A solve that could not
        start has no line. Each method has its own colour, line style and
        markers (:data:`LINESTYLES`, :data:`MARKERS`; those of method ``i``
        at points ``i, i + m, ...``, ``m`` at least the number of methods),
        so that curves that coincide stay visible. Draws on ``ax`` if given;
        returns the figure.
        """
        names = {row.problem: row.index for row in reversed(self.rows)}
        index = names.get(problem) if isinstance(problem, str) else problem
        rows = [row for row in self.rows if row.index == index]
        if not rows:
            raise ValueError(f"problem: expected a position below "
                             f"{len({row.index for row in self.rows})} or one of {sorted(names)}, "
                             f"got {problem!r}")
        if ax is None:
            from matplotlib.figure import Figure
            fig = Figure(figsize=(6, 4), layout="constrained")
            ax = fig.add_subplot()
        for i, row in enumerate(rows):
            if row.residuals.size:
                every = max(len(rows), row.residuals.size // 10)
                ax.semilogy(np.arange(row.residuals.size), row.residuals, color=f"C{i % 10}",
                            linestyle=LINESTYLES[i % len(LINESTYLES)],
                            marker=MARKERS[i % len(MARKERS)], markevery=(i, every),
                            label=BASELINE_REGISTRY.get(row.method, (row.method,))[0])
        ax.set_xlabel("iteration")
        ax.set_ylabel(r"relative residual $\|r\| / \|b\|$")
        ax.set_title(f"{self.solver} on {rows[0].problem} (n = {rows[0].n}), rtol = {self.rtol:g}")
        if ax.lines:
            ax.legend()
        return ax.figure


def register_baseline(name: str, factory, label: str | None = None) -> None:
    """Add (or replace) the baseline ``name``: ``factory()`` makes a fresh
    preconditioner (a :class:`~learnsolve.solvers.Preconditioner`, or None for
    none), ``label`` names it in tables and plots (default ``name``). Every
    comparison (:func:`compare_preconditioners`, ``Trainer.evaluate``) can then
    take it in ``baselines``.

    Examples
    --------
    >>> from learnsolve.solvers import IncompleteCholesky
    >>> register_baseline("ic0_rcm", lambda: IncompleteCholesky(ordering="rcm"), "IC(0), RCM")
    >>> type(baseline("ic0_rcm")).__name__
    'IncompleteCholesky'
    >>> _ = BASELINE_REGISTRY.pop("ic0_rcm")       # the registry is a plain dict
    """
    if not isinstance(name, str) or not name or name == "trained":
        raise ValueError(f"name: expected a non-empty string other than 'trained', got {name!r}")
    if not callable(factory) or isinstance(factory, torch.nn.Module):
        raise TypeError(f"factory: expected a callable () -> preconditioner (a class or a "
                        f"function, not a preconditioner), got {type(factory).__name__}")
    if label is not None and not isinstance(label, str):
        raise TypeError(f"label: expected a string or None, got {type(label).__name__}")
    BASELINE_REGISTRY[name] = (name if label is None else label, factory)


def _check_baseline(name) -> None:
    if name not in BASELINE_REGISTRY:
        raise ValueError(f"baselines: expected names among {sorted(BASELINE_REGISTRY)}, got "
                         f"{name!r}")


def baseline(name: str):
    """A fresh preconditioner of the baseline ``name`` of :data:`BASELINE_REGISTRY`
    (``"none"``: None)."""
    _check_baseline(name)
    return BASELINE_REGISTRY[name][1]()


def pcg_iterations(rtol: float = 1e-6, maxiter: int | None = None, num_rhs: int = 1):
    """A metric for the :class:`~learnsolve.train.Trainer`: the PCG iterations to reach
    ``rtol`` with a model's preconditioner.

    Parameters
    ----------
    rtol : float
        The relative residual to reach, finite and ``> 0``.
    maxiter : int, optional
        The most iterations of a solve; default PCG's, ``10 n``.
    num_rhs : int
        The right-hand sides solved for: with ``num_rhs == 1``, the problem's
        ``b`` (each of its columns) when it has one; else ``num_rhs`` random
        ones, ``problem.random_rhs(num_rhs, seed=problem.seed)``, the same at
        every call.

    Returns
    -------
    callable
        ``metric(model, problem) -> float``: the mean over the right-hand
        sides of the iterations of PCG (``rtol``, ``maxiter``), each solved
        on its own (a block solve would count its slowest column's), with
        the model's preconditioner (the model if it has
        ``setup``, else ``model.M`` of a PCG; bound to the problem with
        :func:`~learnsolve.solvers.base.bind_to_problem`). A solve that does
        not converge (maxiter reached, a breakdown, a divergence) counts as
        ``maxiter + 1``. Runs without gradients, in the model's current mode
        (the trainer sets evaluation mode).

    Raises
    ------
    ValueError
        ``rtol`` not a finite number ``> 0``; ``maxiter`` or ``num_rhs`` below
        1 (a TypeError where not an integer). From the metric: a model that
        is neither a preconditioner nor a PCG with one.

    Examples
    --------
    >>> import torch
    >>> from learnsolve.evaluation import pcg_iterations
    >>> from learnsolve.problems import poisson_2d
    >>> from learnsolve.solvers import IncompleteCholesky
    >>> p = poisson_2d(16, dtype=torch.float64)
    >>> pcg_iterations(rtol=1e-6)(IncompleteCholesky(), p)
    16.0
    >>> pcg_iterations(rtol=1e-6, maxiter=5)(IncompleteCholesky(), p)   # not converged
    6.0
    """
    if isinstance(rtol, bool) or not isinstance(rtol, numbers.Real) or \
            not math.isfinite(rtol) or not rtol > 0:
        raise ValueError(f"rtol: expected a finite number > 0, got {rtol!r}")
    if maxiter is not None:
        maxiter = check_count(maxiter, "maxiter")
    num_rhs = check_count(num_rhs, "num_rhs")
    from .solvers.cg import PCG

    @torch.no_grad()
    def metric(model, problem: Problem) -> float:
        solver = PCG(M=bind_to_problem(preconditioner_of(model, "pcg_iterations"), problem),
                     rtol=rtol, maxiter=maxiter)
        limit = 10 * problem.num_nodes if maxiter is None else maxiter   # PCG's default
        counts = []
        for b in _right_hand_sides(problem, num_rhs):
            solution = solver(problem.A, b)
            counts.append(solution.iterations if solution.converged else limit + 1)
        return math.fsum(counts) / len(counts)

    return metric


def _right_hand_sides(problem: Problem, num_rhs: int) -> list[torch.Tensor]:
    """The vectors :func:`pcg_iterations` solves for, each contiguous: the columns of
    the problem's ``b`` (``num_rhs == 1``), else of ``num_rhs`` random ones seeded
    with its seed (for one, the vector :func:`compare_preconditioners` draws)."""
    B = problem.b if problem.b is not None and num_rhs == 1 else \
        problem.random_rhs(num_rhs, seed=problem.seed)
    return [B] if B.dim() == 1 else list(B.mT.contiguous())


def _solve(make_M, make_solver, problem: Problem, b: torch.Tensor, method: str, name: str,
           index: int, family: str, symmetric: bool) -> EvaluationRow:
    """One solve, the preconditioner's set-up (``make_M()``, then :func:`as_preconditioner`
    on the problem's matrix) and the solve with that operator timed apart (the device
    synchronised around each); a breakdown (``torch.linalg.LinAlgError``) in either is
    a row, not a crash."""
    sync = torch.cuda.synchronize if b.is_cuda else (lambda: None)
    setup_time = None
    sync()
    start = time.perf_counter()
    try:
        operator = as_preconditioner(make_M(), problem.A, symmetric=symmetric)
        sync()
        setup_time = time.perf_counter() - start
        solver = make_solver(operator)
        start = time.perf_counter()
        solution = solver(problem.A, b)
        sync()
    except torch.linalg.LinAlgError as error:
        elapsed = time.perf_counter() - start
        setup_time, solve_time = (elapsed, 0.0) if setup_time is None else (setup_time, elapsed)
        return EvaluationRow(name, problem.num_nodes, method, None, False, math.nan,
                             setup_time + solve_time, "breakdown", str(error), index=index,
                             setup_time=setup_time, solve_time=solve_time, family=family)
    solve_time = time.perf_counter() - start
    relative = solution.relative_residuals.detach()
    if relative.dim() == 2:
        relative = relative.max(dim=1).values
    relative = relative.cpu().double().numpy()
    return EvaluationRow(name, problem.num_nodes, method, solution.iterations,
                         solution.converged, float(relative[-1]), setup_time + solve_time,
                         solution.status, solution.message, relative, index,
                         setup_time=setup_time, solve_time=solve_time, family=family)


def _family_names(families, problems, names: list[str]) -> list[str]:
    """The family of each problem: ``problem.info["family"]`` or its row name (None),
    ``families(problem)`` (a callable), or ``families[i]`` (a sequence)."""
    if families is None:
        found = [problem.info.get("family", name) for problem, name in zip(problems, names)]
        where = "problems[{}].info['family']"
    elif callable(families):
        found = [families(problem) for problem in problems]
        where = "families(problems[{}])"
    elif isinstance(families, Sequence) and not isinstance(families, str):
        found = list(families)
        if len(found) != len(names):
            raise ValueError(f"families: expected one name per problem ({len(names)}), got "
                             f"{len(found)}")
        where = "families[{}]"
    else:
        raise TypeError(f"families: expected None, a callable problem -> str or a sequence "
                        f"of str (one per problem), got {type(families).__name__}")
    for i, family in enumerate(found):
        if not isinstance(family, str):
            raise TypeError(f"{where.format(i)}: expected a family name (str), got "
                            f"{type(family).__name__}")
    return found


def _versus_none(trained: EvaluationRow, none: EvaluationRow) -> float | None:
    """The iterations of the preconditioner under test over those without one (``inf``
    where it did not converge), or None where the unpreconditioned solve did not
    converge. With ``b = 0`` both converge in 0 iterations: the ratio is 0."""
    if not none.converged:
        return None
    if not trained.converged:
        return math.inf
    return trained.iterations / max(none.iterations, 1)


@torch.no_grad()
def compare_preconditioners(M, problems, rtol: float = 1e-6, maxiter: int | None = None,
                            baselines: Sequence[str] = BASELINES, *, solver: str = "pcg",
                            families: Callable[[Problem], str] | Sequence[str] | None = None
                            ) -> Evaluation:
    """PCG (or GMRES) iterations to reach ``rtol`` with the preconditioner ``M`` and the
    baselines.

    Parameters
    ----------
    M : Preconditioner, CSRMatrix or callable
        The preconditioner under test (any ``M`` that :class:`~learnsolve.solvers.PCG`
        takes), reported as the method ``"trained"``. One that needs more than
        the matrix (a partition: :class:`~learnsolve.solvers.RAS`) is bound
        to each problem by its ``for_problem(problem)``.
    problems : Problem, sequence of Problems or ProblemSet
        Each is solved for its fixed ``b``, or for one random ``b`` seeded
        with the problem's seed.
    rtol : float
        The relative residual to reach.
    maxiter : int, optional
        Default ``10 n`` (scipy's).
    baselines : sequence of str
        Names in :data:`BASELINE_REGISTRY`: ``"none"`` (no preconditioner),
        ``"jacobi"`` (``M = D^{-1}``), ``"ic0"``, ``"ic1"``, ``"ic2"``
        (incomplete Cholesky IC(k)), ``"ilu0"``, ``"ilu1"``, ``"ilu2"``
        (ILU(k)), ``"spai"`` (classical SPAI), ``"amg"`` (pyamg smoothed
        aggregation, one V-cycle). Default :data:`BASELINES`. The comparison
        recommended for a learned preconditioner evaluated on held-out
        problems is ``baselines=("none", "jacobi", "ic0", "ic1", "spai",
        "amg")``.
    solver : {"pcg", "gmres"}
        The Krylov method: PCG for a symmetric positive definite matrix and
        preconditioner, GMRES (restarted, its defaults) for the others
        (an ILU, a learned ``IncompleteFactor(kind="lu")``).
    families : callable, sequence of str or None
        The family each problem is summarised under (:meth:`Evaluation.summary`,
        :meth:`Evaluation.plot_scaling`): ``families(problem) -> str``, or one
        name per problem; default ``problem.info["family"]`` where the problem
        has one, else its name (each problem its own family).

    Returns
    -------
    Evaluation
        One row per problem and method, each with its family, the seconds
        to set the preconditioner up (``setup_time``: the baseline made, or
        ``M`` bound to the problem, then set up for its matrix by
        :func:`~learnsolve.solvers.base.as_preconditioner`, once) and those
        of the solve with it (``solve_time``), the device synchronised
        around each (PCG's check that ``A`` can be SPD is run once per problem
        before, timed in neither). A method whose setup breaks down
        (``torch.linalg.LinAlgError``, e.g. IC(0) on a matrix that is not an
        M-matrix) or that does not converge is reported as such in its row.
        With ``"none"`` among the baselines, the row of the preconditioner
        under test has ``vs_none``, its iterations over those without a
        preconditioner (the column "vs none").

    Raises
    ------
    ValueError
        An unknown baseline or solver; ``maxiter`` below 1; a sequence of
        ``families`` whose length is not the number of problems.
    TypeError
        ``problems`` not problems; a family that is not a string.

    Warns
    -----
    UserWarning
        On each problem where the preconditioner under test takes more
        iterations than no preconditioner, or does not converge where no
        preconditioner does (only with ``"none"`` among the baselines): the
        warning names the problem and both iteration counts.

    Examples
    --------
    >>> import torch
    >>> from learnsolve.evaluation import compare_preconditioners
    >>> from learnsolve.problems import poisson_2d
    >>> from learnsolve.solvers import IncompleteCholesky
    >>> rows = compare_preconditioners(IncompleteCholesky(), poisson_2d(16, dtype=torch.float64),
    ...                                baselines=("none",))
    >>> [(row.method, row.iterations) for row in rows]
    [('trained', 16), ('none', 43)]
    """
    from .core.csr import CSRMatrix
    from .solvers.cg import PCG, check_spd_cached
    from .solvers.gmres import GMRES
    baselines = tuple(baselines)
    for name in baselines:
        _check_baseline(name)
    solvers = {"pcg": PCG, "gmres": GMRES}
    if solver not in solvers:
        raise ValueError(f"solver: expected one of {tuple(solvers)}, got {solver!r}")
    word = solver.upper()
    if maxiter is not None:
        maxiter = check_count(maxiter, "maxiter")
    problems = as_problems(problems, "problems")
    names = [problem.name or f"problem {index}" for index, problem in enumerate(problems)]
    family_of = _family_names(families, problems, names)

    def make_solver(operator):
        return solvers[solver](M=operator, rtol=rtol, maxiter=maxiter)

    rows = []
    for index, problem in enumerate(problems):
        b = problem.b if problem.b is not None else problem.random_rhs(seed=problem.seed)
        name = names[index]
        if solver == "pcg" and isinstance(problem.A, CSRMatrix):
            check_spd_cached(problem.A)      # PCG's, cached: not charged to the first method
        solved = {}
        for method in ("trained",) + baselines:
            make_M = partial(baseline, method) if method != "trained" else \
                partial(bind_to_problem, M, problem)
            solved[method] = _solve(make_M, make_solver, problem, b, method, name, index,
                                    family_of[index], solver == "pcg")
        rows += solved.values()
        if "none" not in solved:
            continue
        trained, none = solved["trained"], solved["none"]
        trained.vs_none = _versus_none(trained, none)
        if trained.vs_none is not None and trained.vs_none > 1:
            took = f"{trained.iterations} {word} iterations" if trained.converged else \
                f"no convergence ({trained.status}: {trained.message})"
            warnings.warn(f"compare_preconditioners: the preconditioner under test does worse "
                          f"than none on {name!r} (n = {problem.num_nodes}): {took}, against "
                          f"{none.iterations} {word} iterations without a preconditioner",
                          UserWarning, stacklevel=3)
    return Evaluation(rows, rtol, word)


@dataclass
class SchwarzRow:
    """One problem and one interface of :func:`compare_schwarz`.

    ``factor`` is the convergence factor of the stationary iteration
    (:meth:`~learnsolve.solvers.RAS.convergence_factor`); ``pcg`` and
    ``gmres`` the iterations to ``rtol``, None where the solve did not
    converge (its status in ``pcg_status`` / ``gmres_status``).
    """

    problem: str
    n: int
    subdomains: int
    method: str
    factor: float
    pcg: int | None
    gmres: int | None
    pcg_status: str
    gmres_status: str


class SchwarzEvaluation(Table):
    """The rows of :func:`compare_schwarz`: a sequence of :class:`SchwarzRow`."""

    COLUMNS = ("problem", "n", "subdomains", "method", "factor", "PCG iterations",
               "GMRES iterations")

    def cells(self) -> list[list[str]]:
        def count(value, status):
            return str(value) if value is not None else status
        def factor(value):
            return f"{value:.3f}" + (" (diverges)" if value >= 1 else "")
        return [[row.problem, str(row.n), str(row.subdomains), row.method, factor(row.factor),
                 count(row.pcg, row.pcg_status), count(row.gmres, row.gmres_status)]
                for row in self.rows]

    def mean(self, method: str, column: str = "factor") -> float:
        """The mean of ``column`` ("factor", "pcg" or "gmres") over the problems, for
        one method (NaN if a solve of it did not converge)."""
        values = [getattr(row, column) for row in self.rows if row.method == method]
        if not values:
            raise ValueError(f"method: expected one of "
                             f"{sorted({row.method for row in self.rows})}, got {method!r}")
        return math.nan if None in values else float(np.mean(values))


@torch.no_grad()
def compare_schwarz(methods: dict, problems, rtol: float = 1e-6, maxiter: int | None = None,
                    restart: int = 30, seed: int = 0) -> SchwarzEvaluation:
    """Restricted additive Schwarz with several interfaces, side by side.

    For every problem and every method: the convergence factor of the
    stationary iteration, the PCG iterations (with the symmetric additive
    variant) and the GMRES(``restart``) iterations (with restricted additive
    Schwarz) to ``rtol``, for one seeded random right-hand side.

    Parameters
    ----------
    methods : dict of str to RAS
        Each is bound to each problem with :meth:`~learnsolve.solvers.RAS.for_problem`
        (the problem's partition).
    problems : Problem, sequence of Problem or ProblemSet
        Partitioned problems (or ``num_parts`` set on the RAS).
    rtol, maxiter, restart, seed
        The solves' tolerance, iteration limit, GMRES restart length, and
        the seed of the right-hand side.

    Warns
    -----
    RuntimeWarning
        For each problem and method whose stationary iteration diverges (a
        convergence factor of 1 or more, marked "(diverges)" in the table):
        the Krylov methods may still converge with it, but the iteration the
        interface of eq. 49 is trained for does not.

    Examples
    --------
    >>> import torch
    >>> from learnsolve.evaluation import compare_schwarz
    >>> from learnsolve.problems import poisson_2d
    >>> from learnsolve.solvers import RAS, RobinInterface
    >>> p = poisson_2d(12, dtype=torch.float64).with_partition(4, overlap=1)
    >>> table = compare_schwarz({"classical": RAS(), "robin": RAS(interface=RobinInterface(0.5))}, p)
    >>> table.mean("robin") < table.mean("classical")
    True
    """
    from .solvers.cg import PCG
    from .solvers.gmres import GMRES
    problems = as_problems(problems, "problems")
    if not isinstance(methods, dict) or not methods:
        raise TypeError("methods: expected a non-empty dict of name -> RAS")
    rows = []
    for index, problem in enumerate(problems):
        b = problem.random_rhs(seed=seed)
        name = problem.name or f"problem {index}"
        for method, model in methods.items():
            ras = model.for_problem(problem)
            pcg = PCG(M=ras, rtol=rtol, maxiter=maxiter)(problem.A, b)
            gmres = GMRES(M=ras, restart=restart, rtol=rtol, maxiter=maxiter)(problem.A, b)
            factor = ras.convergence_factor(problem.A)
            if not factor < 1:
                warnings.warn(f"compare_schwarz: the stationary iteration of {method!r} "
                              f"diverges on {name!r} (n = {problem.num_nodes}, "
                              f"{ras.partition.num_parts} subdomains): convergence factor "
                              f"{factor:.3f}", RuntimeWarning, stacklevel=2)
            rows.append(SchwarzRow(name, problem.num_nodes, ras.partition.num_parts, method,
                                   factor,
                                   pcg.iterations if pcg.converged else None,
                                   gmres.iterations if gmres.converged else None,
                                   pcg.status, gmres.status))
    return SchwarzEvaluation(rows, rtol)
