"""An :class:`~learnsolve.evaluation.Evaluation` per problem family: the median and
the worst iterations of each method, its set-up and solve times, and its iterations
against a reference method's on the same problems (:func:`summarise`, the table
:class:`Summary`); the iterations against the size (:func:`plot_scaling`).

A solve that did not converge (its iteration limit reached, a breakdown, a
divergence) counts as infinitely many iterations: a worst case of ``inf``
says that some solve failed, and the table says how many.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from .evaluation import BASELINE_REGISTRY, LINESTYLES, MARKERS, EvaluationRow, Table

__all__ = ["Summary", "SummaryRow", "plot_scaling", "summarise"]


@dataclass
class SummaryRow:
    """One family and one method of a :class:`Summary`.

    ``problems`` is the number of problems of the family (those with a row
    of the method), ``n_min`` and ``n_max`` their sizes' range;
    ``median_iterations`` and ``worst_iterations`` the median and the
    largest iteration counts over them, a solve that did not converge
    counting as ``inf``; ``converged`` how many converged. The times are the
    medians of the rows' ``setup_time`` and ``solve_time`` (seconds).

    ``median_ratio`` and ``worst_ratio`` are the median and the largest, over
    the problems where the reference method converged (``compared`` of them),
    of the method's iterations over the reference's on the same problem
    (``inf`` where the method did not converge; a reference that converged
    in 0 iterations counts as 1). None where the reference is not among the
    methods or converged on none of the family's problems.
    """

    family: str
    method: str
    problems: int
    n_min: int
    n_max: int
    median_iterations: float
    worst_iterations: float
    converged: int
    median_setup_time: float
    median_solve_time: float
    median_ratio: float | None
    worst_ratio: float | None
    compared: int = 0
    failed_in_ratio: int = 0


def _iterations(row: EvaluationRow) -> float:
    """The row's iterations, ``inf`` where it did not converge."""
    return float(row.iterations) if row.converged else math.inf


def _count(value: float) -> str:
    return "inf" if math.isinf(value) else f"{value:g}"


class Summary(Table):
    """The rows of :meth:`Evaluation.summary <learnsolve.evaluation.Evaluation.summary>`:
    a sequence of :class:`SummaryRow`, one per family and method, families in the
    order their first problem was evaluated, methods in the order they were run
    (the preconditioner under test first). ``str(summary)`` is a text table,
    :meth:`to_markdown` a markdown one, :meth:`row` one row.
    """

    def __init__(self, rows: Sequence[SummaryRow], rtol: float, reference: str,
                 solver: str = "PCG"):
        super().__init__(rows, rtol)
        self.reference = reference
        self.solver = solver
        self.COLUMNS = ("family", "method", "problems", "n", "median iterations",
                        "worst iterations", "converged", "median setup (s)",
                        "median solve (s)", f"median vs {reference}", f"worst vs {reference}")

    def cells(self) -> list[list[str]]:
        def worst(value, failed):
            return _count(value) + (f" ({failed} not converged)" if failed else "")

        def ratio(row, value, failed=0):
            if value is None:
                return "-"
            text = "inf" if math.isinf(value) else f"{value:.2f}"
            if failed:
                text += f" ({failed} not converged)"
            if row.compared < row.problems:
                text += f" [{row.problems - row.compared} without {self.reference}]"
            return text

        return [[row.family, row.method, str(row.problems),
                 str(row.n_min) if row.n_min == row.n_max else f"{row.n_min}–{row.n_max}",
                 _count(row.median_iterations),
                 worst(row.worst_iterations, row.problems - row.converged),
                 f"{row.converged}/{row.problems}", f"{row.median_setup_time:.3g}",
                 f"{row.median_solve_time:.3g}", ratio(row, row.median_ratio),
                 ratio(row, row.worst_ratio, row.failed_in_ratio)] for row in self.rows]

    def row(self, family: str, method: str) -> SummaryRow:
        """The row of ``family`` and ``method`` (a ValueError naming those there are
        where there is none)."""
        for row in self.rows:
            if row.family == family and row.method == method:
                return row
        raise ValueError(f"expected a family among {list(dict.fromkeys(r.family for r in self))}"
                         f" and a method among {list(dict.fromkeys(r.method for r in self))}, "
                         f"got ({family!r}, {method!r})")


def summarise(evaluation, reference: str = "ic0") -> Summary:
    """The median and worst of an evaluation per family and method.

    Parameters
    ----------
    evaluation : Evaluation
        Rows of :func:`~learnsolve.evaluation.compare_preconditioners` (each
        with its ``family``).
    reference : str
        The method the iterations are compared with, problem by problem
        (a baseline's name, or ``"trained"``).

    Returns
    -------
    Summary
        One :class:`SummaryRow` per family and method (see there for each
        number). A solve that did not converge counts as ``inf`` iterations;
        the table says how many did not in the worst columns, and how many
        problems the ratios leave out where the reference did not converge.

    Raises
    ------
    TypeError
        ``reference`` not a string.

    Examples
    --------
    >>> import torch, learnsolve
    >>> from learnsolve.evaluation import compare_preconditioners
    >>> problems = [learnsolve.problems.poisson_2d(n, dtype=torch.float64) for n in (8, 16)]
    >>> for problem in problems:
    ...     problem.info["family"] = "poisson"
    >>> M = learnsolve.solvers.IncompleteCholesky()
    >>> evaluation = compare_preconditioners(M, problems, maxiter=30,
    ...                                      baselines=("none", "ic0"))
    >>> summary = summarise(evaluation, "ic0")
    >>> row = summary.row("poisson", "none")      # 43 iterations on 16 x 16: over maxiter
    >>> (row.converged, row.worst_iterations, row.worst_ratio)
    (1, inf, inf)
    >>> summary.row("poisson", "trained").median_ratio
    1.0
    >>> summarise(evaluation, "amg").row("poisson", "ic0").median_ratio is None
    True
    """
    if not isinstance(reference, str):
        raise TypeError(f"reference: expected a method name (str), got "
                        f"{type(reference).__name__}")
    rows = list(evaluation)
    references = {row.index: row for row in rows if row.method == reference}
    groups: dict[tuple[str, str], list[EvaluationRow]] = {}
    for family in dict.fromkeys(row.family for row in rows):
        for method in dict.fromkeys(row.method for row in rows):
            group = [row for row in rows if row.family == family and row.method == method]
            if group:
                groups[family, method] = group
    summary = []
    for (family, method), group in groups.items():
        counts = [_iterations(row) for row in group]
        ratios = [_iterations(row) / max(references[row.index].iterations, 1)
                  for row in group
                  if row.index in references and references[row.index].converged]
        summary.append(SummaryRow(
            family, method, len(group), min(row.n for row in group),
            max(row.n for row in group), float(np.median(counts)), max(counts),
            sum(row.converged for row in group),
            float(np.median([row.setup_time for row in group])),
            float(np.median([row.solve_time for row in group])),
            float(np.median(ratios)) if ratios else None, max(ratios) if ratios else None,
            len(ratios), sum(math.isinf(ratio) for ratio in ratios)))
    return Summary(summary, evaluation.rtol, reference, getattr(evaluation, "solver", "PCG"))


def plot_scaling(evaluation, ax=None):
    """The iterations against the size ``n`` (log-log), one subplot per family and one
    line per method.

    Each point is the median of the iterations over the family's problems of
    that size. A solve that did not converge counts as ``inf`` iterations, and
    a point whose median is ``inf`` (half or more of the solves at that size
    did not converge) is **missing**: the line has a gap there, or ends. The
    methods have the colours, line styles, markers and labels of
    :meth:`Evaluation.plot <learnsolve.evaluation.Evaluation.plot>`
    (:data:`~learnsolve.evaluation.LINESTYLES`,
    :data:`~learnsolve.evaluation.MARKERS`, the registry's labels), the same in
    every subplot; the legend is on the first.

    Parameters
    ----------
    evaluation : Evaluation
    ax : Axes or sequence of Axes, optional
        Where to draw: one Axes per family, in the order of the families'
        first problems (a single Axes for a single family). Default: a new
        figure with a subplot per family, up to three a row.

    Returns
    -------
    matplotlib.figure.Figure

    Raises
    ------
    ValueError
        An empty evaluation; ``ax`` not one Axes per family.

    Examples
    --------
    >>> import torch
    >>> from learnsolve.evaluation import compare_preconditioners
    >>> from learnsolve.problems import diffusion_2d, poisson_2d
    >>> problems = [poisson_2d(n, dtype=torch.float64) for n in (6, 8)] + \\
    ...     [diffusion_2d(n, n, "lognormal", dtype=torch.float64) for n in (6, 8)]
    >>> evaluation = compare_preconditioners(None, problems, baselines=("ic0",),
    ...                                      families=["poisson"] * 2 + ["lognormal"] * 2)
    >>> fig = plot_scaling(evaluation)
    >>> [(axis.get_title(), len(axis.lines)) for axis in fig.axes]
    [('poisson', 2), ('lognormal', 2)]
    """
    import matplotlib.ticker
    rows = list(evaluation)
    if not rows:
        raise ValueError("evaluation: expected at least one row, got none")
    families = list(dict.fromkeys(row.family for row in rows))
    methods = list(dict.fromkeys(row.method for row in rows))
    if ax is None:
        from matplotlib.figure import Figure
        columns = min(len(families), 3)
        lines = -(-len(families) // columns)
        fig = Figure(figsize=(4.5 * columns, 3.5 * lines), layout="constrained")
        axes = list(fig.subplots(lines, columns, squeeze=False).ravel())
        for extra in axes[len(families):]:
            fig.delaxes(extra)
    else:
        axes = list(ax) if isinstance(ax, (Sequence, np.ndarray)) else [ax]
        if len(axes) != len(families):
            raise ValueError(f"ax: expected one Axes per family ({len(families)}: "
                             f"{families}), got {len(axes)}")
    for axis, family in zip(axes, families):
        for i, method in enumerate(methods):
            by_size: dict[int, list[float]] = {}
            for row in rows:
                if row.family == family and row.method == method:
                    by_size.setdefault(row.n, []).append(_iterations(row))
            sizes = sorted(by_size)
            medians = [float(np.median(by_size[n])) for n in sizes]
            axis.plot(sizes, [m if math.isfinite(m) else math.nan for m in medians],
                      color=f"C{i % 10}", linestyle=LINESTYLES[i % len(LINESTYLES)],
                      marker=MARKERS[i % len(MARKERS)],
                      label=BASELINE_REGISTRY.get(method, (method,))[0])
        axis.set_xscale("log")
        axis.set_yscale("log")     # iterations span orders of magnitude across methods
        axis.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        axis.set_xlabel("n (unknowns)")
        axis.set_ylabel(f"{getattr(evaluation, 'solver', 'PCG')} iterations "
                        f"(median), rtol = {evaluation.rtol:g}")
        axis.set_title(family)
    axes[0].legend()
    return axes[0].figure
