"""Algebraic multigrid preconditioning through pyamg: a fixed baseline."""
from __future__ import annotations

import numpy as np
import pyamg
import torch

from ..core.csr import CSRMatrix
from ..linalg._checks import check_rhs, check_square
from .base import MatrixCache, Preconditioner, PreconditionerOperator

__all__ = ["AMG"]

METHODS = {"smoothed_aggregation": pyamg.smoothed_aggregation_solver,
           "ruge_stuben": pyamg.ruge_stuben_solver}
CYCLES = ("V", "W", "F", "AMLI")

#: Relative asymmetry |v^T M w - w^T M v| / (|v| |M w|) up to which a cycle
#: counts as symmetric (a symmetric one shows rounding only, ~1e-15).
SYMMETRY_TOLERANCE = 1e-10


class _Cycle:
    """One multigrid cycle of a pyamg hierarchy as a map of numpy vectors, and
    whether it is a symmetric operator (checked once, on two random vectors)."""

    def __init__(self, hierarchy: pyamg.MultilevelSolver, cycle: str):
        self.hierarchy = hierarchy
        self.operator = hierarchy.aspreconditioner(cycle=cycle)
        rng = np.random.default_rng(0)
        v, w = rng.standard_normal((2, hierarchy.levels[0].A.shape[0]))
        Mw = self.operator.matvec(w)
        scale = np.linalg.norm(v) * np.linalg.norm(Mw)
        self.symmetric = bool(abs(v @ Mw - w @ self.operator.matvec(v))
                              <= SYMMETRY_TOLERANCE * scale)

    def __call__(self, r: torch.Tensor) -> torch.Tensor:
        """``M r`` on the CPU in float64, column by column, back on ``r``'s device and dtype."""
        array = r.detach().to("cpu", torch.float64).numpy()
        if array.ndim == 1:
            result = self.operator.matvec(array)
        else:
            result = np.stack([self.operator.matvec(column) for column in array.T], axis=1)
        return torch.from_numpy(np.ascontiguousarray(result)).to(r.device, r.dtype)


class _ApplyCycle(torch.autograd.Function):
    """``z = M r`` for a fixed multigrid cycle ``M``; backward ``dr = M^T dz = M dz``."""

    @staticmethod
    def forward(ctx, r: torch.Tensor, cycle: _Cycle) -> torch.Tensor:
        ctx.cycle = cycle
        return cycle(r)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        cycle = ctx.cycle
        if not cycle.symmetric:
            raise RuntimeError("AMG: the cycle is not symmetric (its smoothers are not "
                               "each other's adjoints), and its transpose, which the "
                               "backward needs, is not available")
        return _ApplyCycle.apply(grad, cycle), None


class AMG(Preconditioner):
    """One cycle of an algebraic multigrid hierarchy (pyamg) as a preconditioner.

    Parameters
    ----------
    method : {"smoothed_aggregation", "ruge_stuben"}
        pyamg's ``smoothed_aggregation_solver`` or ``ruge_stuben_solver``.
    cycle : {"V", "W", "F", "AMLI"}
        The cycle applied (pyamg's ``aspreconditioner(cycle=...)``).
    **kwargs
        Passed to the pyamg solver's constructor (``max_coarse``,
        ``presmoother``, ``strength``, ...).

    Notes
    -----
    Where things happen: the hierarchy is built on the CPU in float64 by
    pyamg, once per matrix (cached, rebuilt when the pattern, the values
    tensor or its contents change), and every application runs there too: a
    right-hand side on another device goes to the CPU and back, an ``(n, k)``
    block one column at a time. pyamg draws random vectors from numpy's global
    generator (to estimate spectral radii); the build seeds it with 0 and
    restores its state afterwards, so that every build of a matrix gives the
    same hierarchy and the caller's random stream is left as it was.

    No gradient reaches ``A``'s values (the hierarchy is fixed). Gradients
    reach ``r``: the backward of ``z = M r`` applies ``M^T``, which is ``M``
    itself for a symmetric cycle, as pyamg's defaults give (symmetric
    Gauss-Seidel before and after, ``R = P^T``). Whether a cycle is symmetric
    is checked numerically when the hierarchy is built; a backward through a
    cycle that is not raises an error rather than return a wrong gradient.

    Examples
    --------
    >>> import torch
    >>> from learnsolve.problems import poisson_2d
    >>> from learnsolve.solvers.amg import AMG
    >>> A = poisson_2d(16, dtype=torch.float64).A
    >>> apply = AMG(max_coarse=10).setup(A)
    >>> b = torch.ones(256, dtype=torch.float64)
    >>> error = torch.linalg.vector_norm(b - A @ apply(b)) / torch.linalg.vector_norm(b)
    >>> bool(error < 0.5)
    True
    """

    def __init__(self, method: str = "smoothed_aggregation", cycle: str = "V", **kwargs):
        super().__init__()
        if method not in METHODS:
            raise ValueError(f"method: expected one of {sorted(METHODS)}, got {method!r}")
        if cycle not in CYCLES:
            raise ValueError(f"cycle: expected one of {list(CYCLES)}, got {cycle!r}")
        self.method = method
        self.cycle = cycle
        self.kwargs = kwargs
        self._cycle = MatrixCache()

    def hierarchy(self, A: CSRMatrix) -> pyamg.MultilevelSolver:
        """pyamg's multigrid hierarchy for ``A`` (cached per matrix)."""
        return self._cycle_for(check_square(A)).hierarchy

    def _cycle_for(self, A: CSRMatrix) -> _Cycle:
        def build():
            matrix = A.detach().to("cpu", torch.float64).to_scipy()  # a copy of A's arrays
            state = np.random.get_state()
            np.random.seed(0)
            try:
                hierarchy = METHODS[self.method](matrix, **self.kwargs)
            finally:
                np.random.set_state(state)
            return _Cycle(hierarchy, self.cycle)
        return self._cycle.get((A.pattern, A.values), build)

    def setup(self, A: CSRMatrix) -> PreconditionerOperator:
        """``M`` (symmetric where the cycle is, as pyamg's defaults give) for ``r`` of shape ``(n,)`` or ``(n, k)`` in ``A``'s dtype and
        on its device; differentiable in ``r``."""
        A = check_square(A)
        cycle = self._cycle_for(A)

        def apply(r: torch.Tensor) -> torch.Tensor:
            check_rhs(A, r, "r")
            return _ApplyCycle.apply(r, cycle)
        return PreconditionerOperator.like(A, apply, symmetric=cycle.symmetric, name="AMG")

    def extra_repr(self) -> str:
        options = "".join(f", {key}={value!r}" for key, value in self.kwargs.items())
        return f"method={self.method!r}, cycle={self.cycle!r}{options}"
