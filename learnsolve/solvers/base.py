"""What the solvers and preconditioners share: the Solution they return, the
preconditioner interface, and the checks of their operands."""
from __future__ import annotations

import dataclasses
import math
import numbers
import warnings
from dataclasses import dataclass

import torch
from scipy.sparse.linalg import LinearOperator
from torch import nn

from ..core import validation as V
from ..core.cache import MatrixCache
from ..core.csr import CSRMatrix
from ..linalg._checks import check_rhs
from .operators import Apply, Operator, SystemMatrix, as_operator

__all__ = ["Solution", "DeferredSolution", "Preconditioner", "PreconditionerOperator",
           "IterativeSolver", "Operator", "as_operator", "as_preconditioner", "preconditioner_of",
           "NotAPreconditioner", "check_system", "end_message", "matrix_of", "MatrixCache", "STATUSES",
           "Apply", "SystemMatrix", "bind_to_problem", "blocks_of", "check_history_weights",
           "weighted_residuals"]

#: What :attr:`Solution.status` can be.
STATUSES = ("converged", "maxiter", "breakdown", "diverged")

#: A residual this many times the initial one (or not finite) ends an iteration as
#: "diverged".
DIVERGENCE_FACTOR = 1e8


@dataclass
class Solution:
    """The result of an iterative solve.

    Attributes
    ----------
    x : Tensor
        The last iterate, shaped like ``b``. On ``status != "converged"`` it is
        not a solution, and nothing pretends it is: check :attr:`converged`.
    residuals : Tensor
        ``||r_i||_2`` for ``i = 0 .. iterations``: shape ``(iterations + 1,)``,
        or ``(iterations + 1, k)`` for ``k`` right-hand sides (a
        :class:`DeferredSolution` of a fixed number of iterations: one row more
        than those run, the last residual held after ``iterations``). ``r_i`` is the
        residual ``b - A x_i`` as the solver computes it: directly for the
        stationary iterations, by CG's recurrence for PCG (equal to
        rounding). Differentiable where the solver's mode of differentiation
        says so (the PCG loss of the paper's eq. 42 is built from it).
    b_norm : Tensor
        ``||b||_2`` (per column).
    iterations : int
        Iterations run.
    status : str
        ``"converged"`` (every column reached the tolerance), ``"maxiter"``,
        ``"breakdown"`` (a division by a zero or negative curvature, e.g. an
        indefinite matrix or preconditioner in CG) or ``"diverged"`` (a
        residual not finite or 1e8 times the initial one).
    message : str
        What happened, in words.
    """

    x: torch.Tensor
    residuals: torch.Tensor
    b_norm: torch.Tensor
    iterations: int
    status: str
    message: str = ""

    @property
    def converged(self) -> bool:
        return self.status == "converged"

    @property
    def relative_residuals(self) -> torch.Tensor:
        """``residuals / ||b||`` (per column; the plain residuals where ``b = 0``)."""
        scale = torch.where(self.b_norm > 0, self.b_norm, torch.ones_like(self.b_norm))
        return self.residuals / scale

    def __repr__(self) -> str:
        last = self.relative_residuals[-1].detach()
        worst = float(last.max()) if last.numel() else 0.0
        return (f"Solution(status={self.status!r}, iterations={self.iterations}, "
                f"relative_residual={worst:.3e})")


class DeferredSolution(Solution):
    """A :class:`Solution` whose ``iterations``, ``status`` and ``message`` stay on the
    device until first read.

    What a solve that reads nothing on the host returns (:class:`~learnsolve.solvers.PCG`
    with ``fixed_iterations=True``, and under :func:`torch.compile`): its outcome
    is a tensor, :attr:`summary`, decoded by the solver's ``read`` on the first read
    of one of the three (one read on the host, a synchronisation with the device;
    then kept). Their values are those the solve that reads on the host reports.
    Inside a compiled function such a read is a data-dependent branch (a graph
    break; an error with ``fullgraph=True``): read them from what the compiled
    function returns. :attr:`~Solution.converged`, ``repr`` and
    :func:`dataclasses.replace` read them too. A fixed-iteration solve runs more
    iterations than it reports when it stops early (the iterations that would
    be run after it change nothing): :attr:`~Solution.residuals` then has a
    row per iteration run, the last residual held after ``iterations``.

    Attributes
    ----------
    summary : Tensor or None
        The outcome as the solver encodes it (None for one made with the
        outcome known, as :func:`dataclasses.replace` makes it).
    read : callable or None
        ``read(solution) -> (iterations, status, message)``.

    Examples
    --------
    >>> import torch
    >>> from learnsolve.problems import poisson_2d
    >>> from learnsolve.solvers import PCG
    >>> A = poisson_2d(8, dtype=torch.float64).A
    >>> b = torch.ones(64, dtype=torch.float64)
    >>> solution = PCG(maxiter=30, rtol=1e-10, fixed_iterations=True)(A, b)
    >>> type(solution).__name__, solution.residuals.shape     # 30 iterations run
    ('DeferredSolution', torch.Size([31]))
    >>> solution.status, solution.iterations                  # read now: as without it
    ('converged', 10)
    """

    def __init__(self, x: torch.Tensor, residuals: torch.Tensor, b_norm: torch.Tensor,
                 iterations: int, status: str, message: str = ""):
        self.x, self.residuals, self.b_norm = x, residuals, b_norm
        self._outcome = (iterations, status, message)
        self.summary = self.read = None

    @classmethod
    def pending(cls, x: torch.Tensor, residuals: torch.Tensor, b_norm: torch.Tensor,
                summary: torch.Tensor, read) -> "DeferredSolution":
        """The solution with its outcome still on the device: ``summary``, decoded by
        ``read(solution)`` when first asked for."""
        solution = cls(x, residuals, b_norm, 0, "")
        solution._outcome, solution.summary, solution.read = None, summary, read
        return solution

    def outcome(self) -> tuple[int, str, str]:
        """``(iterations, status, message)``, read on the host the first time."""
        if self._outcome is None:
            self._outcome = self.read(self)
        return self._outcome

    @property
    def iterations(self) -> int:
        return self.outcome()[0]

    @property
    def status(self) -> str:
        return self.outcome()[1]

    @property
    def message(self) -> str:
        return self.outcome()[2]


def end_message(status: str, iterations: int, maxiter: int, last: torch.Tensor,
                b_norm: torch.Tensor) -> str:
    """The message of a Krylov solve that ended with ``status`` (``"converged"``,
    ``"diverged"`` or ``"maxiter"``; a breakdown's says what broke down) after
    ``iterations``, at the residual norms ``last``."""
    if status == "converged":
        return f"converged in {iterations} iterations"
    if status == "diverged":
        return (f"diverged at iteration {iterations} (residual not finite or 1e8 times "
                f"the initial one)")
    relative = last.detach() / torch.where(b_norm > 0, b_norm, 1.0).detach()
    return (f"not converged after maxiter = {maxiter} iterations (largest relative "
            f"residual {float(relative.max()):.3e})")


def check_system(A: SystemMatrix, b, x0=None, *, matrix_free: bool = False,
                 symmetric: bool = False
                 ) -> tuple[CSRMatrix | Operator, torch.Tensor, torch.Tensor | None]:
    """Check ``A`` (square), ``b`` and ``x0`` (shaped like ``b``); return ``A`` as the
    solver uses it (:func:`as_operator`: converted once per call).

    With ``matrix_free`` a solver that needs only products takes an ``A``
    without entries (an :class:`Operator`); otherwise one is refused.
    ``symmetric``: the solver requires a symmetric ``A`` (see
    :func:`as_operator`).
    """
    V.check_tensor(b, "b")
    if b.dtype not in V.FLOAT_DTYPES:
        raise TypeError(f"b: expected dtype float32 or float64, got {b.dtype}")
    if b.dim() not in (1, 2):
        raise ValueError(f"b: expected shape (n,) or (n, k), got {tuple(b.shape)}")
    given = type(A).__name__
    A = as_operator(A, b, symmetric=symmetric)
    if not matrix_free and not isinstance(A, CSRMatrix):
        raise TypeError(f"A: expected a matrix with its entries (a CSRMatrix, a scipy sparse "
                        f"matrix or a torch sparse tensor), got a matrix-free {given}")
    b = check_rhs(A, b)
    if x0 is not None:
        x0 = check_rhs(A, x0, "x0")
        if x0.shape != b.shape:
            raise ValueError(f"x0: expected the shape of b {tuple(b.shape)}, got "
                             f"{tuple(x0.shape)}")
    return A, b, x0


def matrix_of(problem) -> CSRMatrix:
    """The matrix of a :class:`~learnsolve.problems.Problem`, or the CSRMatrix itself."""
    if isinstance(problem, CSRMatrix):
        return problem
    A = getattr(problem, "A", None)
    if isinstance(A, CSRMatrix):
        return A
    raise TypeError(f"problem: expected a Problem or a CSRMatrix, got {type(problem).__name__}")


def blocks_of(problem) -> list[int] | None:
    """The block offsets of a batch of problems (``info["offsets"]`` of
    :func:`~learnsolve.problems.batch_problems`), None for anything else."""
    info = getattr(problem, "info", None)
    return info.get("offsets") if isinstance(info, dict) else None


def check_history_weights(iterations, gamma) -> tuple[int, float]:
    """The ``iterations`` (an integer >= 1) and ``gamma`` (in (0, 1]) of a loss on a
    residual history (:func:`weighted_residuals`)."""
    if isinstance(iterations, bool) or not isinstance(iterations, numbers.Integral) or \
            iterations < 1:
        raise ValueError(f"iterations: expected an integer >= 1, got {iterations!r}")
    if isinstance(gamma, bool) or not isinstance(gamma, numbers.Real) or not 0 < gamma <= 1:
        raise ValueError(f"gamma: expected a number in (0, 1], got {gamma!r}")
    return int(iterations), float(gamma)


def weighted_residuals(solution: Solution, iterations: int, gamma: float, name: str
                       ) -> torch.Tensor:
    """``mean_j sum_{i=1..N} w_i ||r_i^{(j)}|| / ||b^{(j)}||``, ``w_i = gamma^{N-i} /
    sum_l gamma^{N-l}``: the weighted relative residual history of a Krylov solve of
    ``N = iterations`` steps (the paper's eq. 42).

    A solve that stopped before ``N`` steps (a column at exactly zero residual, a
    breakdown or a divergence) has its history completed with its last residual,
    so that the loss stays defined; a RuntimeWarning names ``name`` unless the solve
    converged. A :class:`DeferredSolution`'s history has its ``N`` steps, frozen
    after such a stop (the same residuals), with no warning: it would read on the
    host.
    """
    relative = solution.relative_residuals
    # The steps run from the history's length (iterations + 1 rows), not from
    # solution.iterations: a DeferredSolution's is read on the host.
    missing = iterations - (relative.shape[0] - 1)
    if missing and solution.status != "converged":
        warnings.warn(f"{name}: the solve stopped early ({solution.message}); the remaining "
                      f"{missing} residuals are held at the last one", RuntimeWarning,
                      stacklevel=3)
    relative = torch.cat([relative[1:], relative[-1:].expand(missing, *relative.shape[1:])])
    weights = gamma ** torch.arange(iterations - 1, -1, -1, dtype=relative.dtype,
                                    device=relative.device)
    weights = weights / weights.sum()
    return torch.tensordot(weights, relative, dims=1).mean()


class PreconditionerOperator:
    """A preconditioner set up for one matrix: the operator ``M`` that
    :meth:`Preconditioner.setup` returns.

    ``M.apply(r)``, ``M(r)`` and ``M @ r`` give ``M r`` for ``r`` of shape
    ``(n,)`` or ``(n, k)``, differentiable as the preconditioner says. A
    solver may ask it what it is: ``symmetric`` (CG needs a symmetric ``M``)
    and ``transpose()`` (the adjoint of a nonsymmetric solve needs ``M^T``),
    with ``shape``, ``dtype`` and ``device`` those of the matrix it was set
    up for.

    Parameters
    ----------
    apply : callable
        ``r -> M r``.
    shape : tuple of int
    dtype : torch.dtype
    device : torch.device
    symmetric : bool
        Whether ``M`` is symmetric (then ``transpose()`` is ``M`` itself).
    transpose : callable, optional
        ``r -> M^T r`` where the preconditioner can apply it; None where it
        cannot (``transpose()`` then raises NotImplementedError).
    name : str
        What the preconditioner is, for messages.
    diagonal : Tensor, optional
        ``d`` where ``M r = d ∘ r`` (``(n,)``, in ``M``'s dtype and on its
        device; such an ``M`` is symmetric), else None: what lets PCG run an
        iteration as one native call (its lean path, on the CPU). It must
        agree with ``apply``.

    Attributes
    ----------
    message : str
        What the set-up did that a solve should report (a learned factor
        replaced by its classical fallback, say); PCG and GMRES add it to
        their Solution's message. Empty by default.

    Examples
    --------
    >>> import torch
    >>> from learnsolve.problems import poisson_2d
    >>> from learnsolve.solvers import IncompleteLU
    >>> A = poisson_2d(4, dtype=torch.float64).A
    >>> M = IncompleteLU().setup(A)
    >>> M.symmetric, M.shape
    (False, (16, 16))
    >>> r = torch.ones(16, dtype=torch.float64)
    >>> bool(torch.allclose(M.transpose() @ r, M.T.apply(r)))
    True
    """

    __slots__ = ("_apply", "_transpose", "shape", "dtype", "device", "symmetric", "name",
                 "diagonal", "message")

    def __init__(self, apply: Apply, shape: tuple[int, int], dtype: torch.dtype,
                 device: torch.device, *, symmetric: bool = False,
                 transpose: Apply | None = None, name: str = "M",
                 diagonal: torch.Tensor | None = None):
        self._apply = apply
        self._transpose = transpose
        self.shape = (int(shape[0]), int(shape[1]))
        self.dtype, self.device = dtype, torch.device(device)
        self.symmetric = bool(symmetric)
        self.name = name
        self.diagonal = diagonal
        self.message = ""

    @classmethod
    def like(cls, A, apply: Apply, *, symmetric: bool = False, transpose: Apply | None = None,
             name: str = "M", diagonal: torch.Tensor | None = None) -> "PreconditionerOperator":
        """The operator ``apply`` for a matrix ``A`` (its shape, dtype and device)."""
        return cls(apply, A.shape, A.dtype, A.device, symmetric=symmetric, transpose=transpose,
                   name=name, diagonal=diagonal)

    def apply(self, r: torch.Tensor) -> torch.Tensor:
        """``M r``."""
        return self._apply(r)

    def __call__(self, r: torch.Tensor) -> torch.Tensor:
        return self._apply(r)

    def __matmul__(self, r: torch.Tensor) -> torch.Tensor:
        return self._apply(r)

    @property
    def has_transpose(self) -> bool:
        """Whether :meth:`transpose` is available."""
        return self.symmetric or self._transpose is not None

    def transpose(self) -> "PreconditionerOperator":
        """``M^T`` as an operator: ``M`` itself where it is symmetric;
        NotImplementedError where the preconditioner cannot apply it."""
        if self.symmetric:
            return self
        if self._transpose is None:
            raise NotImplementedError(f"{self.name}: its transpose M^T is not available (set "
                                      f"the preconditioner up for A^T instead)")
        return PreconditionerOperator(self._transpose, (self.shape[1], self.shape[0]),
                                      self.dtype, self.device, transpose=self._apply,
                                      name=f"{self.name}^T")

    @property
    def T(self) -> "PreconditionerOperator":
        return self.transpose()

    def __repr__(self) -> str:
        return (f"PreconditionerOperator({self.name}, shape={self.shape}, "
                f"symmetric={self.symmetric}, transpose={self.has_transpose})")


class Preconditioner(nn.Module):
    """Base of the preconditioners: ``setup(A)`` returns ``M`` for ``A`` as a
    :class:`PreconditionerOperator`.

    ``setup`` does the work that depends on the matrix (a factorisation, a
    multigrid hierarchy, the diagonal, a network's prediction) and returns the
    operator applying ``M`` to a vector ``(n,)`` or a block ``(n, k)``.
    Learned preconditioners build it from their ``nn.Parameter``s, so it is
    differentiable in them; fixed ones compute it without gradients and cache
    what they can for the matrix they were last set up with (a
    :class:`~learnsolve.core.cache.MatrixCache`), never in module state.

    Two kinds share this protocol: *per pattern* (the values are parameters
    tied to one matrix: :class:`LowerFactor`, :class:`SPAI`,
    :class:`IncompleteFactor`) and *predicted from A* (a network maps any
    matrix to the values, as :class:`RAS` with a learned interface).

    Methods a subclass may override:

    - ``setup_symmetric(A)``: the variant CG needs where ``setup``'s is not
      symmetric (restricted -> additive Schwarz); by default ``setup(A)``.
    - ``for_problem(problem)``: the preconditioner bound to what a problem
      carries (a partition, coordinates); by default itself.
    """

    def setup(self, A: CSRMatrix) -> PreconditionerOperator:  # pragma: no cover - interface
        raise NotImplementedError

    def setup_symmetric(self, A: CSRMatrix) -> PreconditionerOperator:
        """``M`` for ``A`` as a symmetric Krylov method (CG) uses it: ``setup(A)``
        unless a subclass has a symmetric variant."""
        return self.setup(A)

    def for_problem(self, problem) -> "Preconditioner":
        """This preconditioner for ``problem``: itself, unless it needs what a
        problem carries."""
        return self


class NotAPreconditioner(TypeError, ValueError):
    """A model given where a preconditioner is needed has none. A TypeError (the
    wrong kind of object) and, as the evaluation has always raised, a ValueError."""


def preconditioner_of(model, needed_by: str | None = None):
    """The preconditioner a model stands for: the model itself if it is one (a
    :class:`Preconditioner`, or any object with ``setup(A)``), else its ``M`` if
    it is a solver with a preconditioner. ``needed_by`` names the caller in the
    error (:class:`NotAPreconditioner`)."""
    if callable(getattr(model, "setup", None)):
        return model
    M = getattr(model, "M", None)
    if isinstance(model, IterativeSolver) and callable(getattr(M, "setup", None)):
        return M
    what = "expected" if needed_by is None else f"{needed_by} needs"
    raise NotAPreconditioner(f"model: {what} a preconditioner (a module with setup(A)) or a "
                             f"solver with one as M, got {type(model).__name__}")


def as_preconditioner(M, A: CSRMatrix | Operator, *, symmetric: bool = False
                      ) -> PreconditionerOperator | None:
    """The operator ``M`` for the ``M`` argument of a solver.

    ``M`` may be None (no preconditioner: returns None), a
    :class:`Preconditioner` (or any object with ``setup(A)``: what it returns,
    wrapped as an operator if it is a bare callable), an operator already set
    up, a callable ``r -> M r``, or anything :func:`as_operator` takes as a
    matrix of ``A``'s shape, dtype and device (a CSRMatrix, applied as a
    sparse product, its transpose available; a scipy sparse matrix or
    LinearOperator; a torch tensor). With ``symmetric=True`` (a Krylov method
    that needs a symmetric ``M``, as CG) a preconditioner's
    ``setup_symmetric(A)`` gives it (restricted additive Schwarz: the additive
    variant).

    A preconditioner set up from ``A`` needs its entries: with a matrix-free
    ``A`` (an :class:`Operator`) it is refused with a TypeError.
    """
    if M is None or isinstance(M, PreconditionerOperator):
        return M
    setup = getattr(M, "setup", None)
    if callable(setup):
        if not isinstance(A, CSRMatrix):
            raise TypeError(f"M: {type(M).__name__} needs A's entries; A is a matrix-free "
                            f"operator (give M as a callable r -> M r, a matrix or a "
                            f"LinearOperator, or A as a matrix)")
        setup_symmetric = getattr(M, "setup_symmetric", None)
        operator = setup_symmetric(A) if symmetric and callable(setup_symmetric) else setup(A)
        if isinstance(operator, PreconditionerOperator):
            return operator
        return PreconditionerOperator.like(A, operator, name=type(M).__name__)
    if callable(M) and not isinstance(M, LinearOperator):
        return PreconditionerOperator.like(A, M, name="M")
    operator = as_operator(M, A, name="M", shape=A.shape, symmetric=symmetric)
    V.check_same_dtype("A", A, "M", operator)
    V.check_same_device("A", A, "M", operator)
    transpose = operator.T.__matmul__ if isinstance(operator, CSRMatrix) else None
    return PreconditionerOperator.like(A, operator.__matmul__, transpose=transpose, name="M")


def reported(solution: Solution, M: PreconditionerOperator | None) -> Solution:
    """``solution`` with what setting ``M`` up reported (its ``message``) added to its
    own message."""
    if M is None or not M.message:
        return solution
    message = f"{solution.message}; {M.message}" if solution.message else M.message
    return dataclasses.replace(solution, message=message)


def bind_to_problem(M, problem):
    """``M`` bound to ``problem`` where it needs what a problem carries (a partition:
    :meth:`RAS.for_problem <learnsolve.solvers.RAS.for_problem>`), else ``M``."""
    bind = getattr(M, "for_problem", None)
    return bind(problem) if bind is not None and not isinstance(problem, CSRMatrix) else M


class IterativeSolver(nn.Module):
    """Base of the iterative solvers: ``solver(A, b, x0=None) -> Solution``.

    Parameters
    ----------
    maxiter : int
        The most iterations one solve runs.
    rtol, atol : float
        Finite, ``>= 0``: a column has converged once ``||b - A x|| <=
        max(rtol ||b||, atol)`` (scipy.sparse.linalg's rule). ``rtol = atol =
        0`` runs ``maxiter`` iterations, as training does.
    callback : callable, optional
        Called as ``callback(x)`` after each iteration.
    """

    def __init__(self, maxiter: int, rtol: float, atol: float, callback=None):
        super().__init__()
        if isinstance(maxiter, bool) or not isinstance(maxiter, numbers.Integral) or maxiter < 0:
            raise ValueError(f"maxiter: expected an integer >= 0, got {maxiter!r}")
        for name, value in (("rtol", rtol), ("atol", atol)):
            if isinstance(value, bool) or not isinstance(value, numbers.Real) or \
                    not math.isfinite(value) or value < 0:
                raise ValueError(f"{name}: expected a finite number >= 0, got {value!r}")
        if callback is not None and not callable(callback):
            raise TypeError(f"callback: expected a callable, got {type(callback).__name__}")
        self.maxiter = int(maxiter)
        self.rtol = float(rtol)
        self.atol = float(atol)
        self.callback = callback

    def threshold(self, b_norm: torch.Tensor) -> torch.Tensor:
        """The residual norm below which a column has converged."""
        return torch.clamp(self.rtol * b_norm, min=self.atol)

    def extra_repr(self) -> str:
        return f"maxiter={self.maxiter}, rtol={self.rtol:g}, atol={self.atol:g}"


def residual_norm(r: torch.Tensor) -> torch.Tensor:
    """The 2-norm of a residual vector, or of each column of a block."""
    return torch.linalg.vector_norm(r, dim=0)


def host_values(x: torch.Tensor) -> list[float]:
    """The entries of a small tensor (a norm per column) as Python floats: one transfer."""
    return x.detach().reshape(-1).tolist()


def status_of(norms: list[float], threshold: list[float], initial: list[float]) -> str | None:
    """"converged" or "diverged" from the latest residual norms (one per column, as
    Python floats, with the columns' thresholds and initial norms), or None to go on."""
    for norm, start in zip(norms, initial):
        if not math.isfinite(norm) or norm > DIVERGENCE_FACTOR * max(start, 1e-300):
            return "diverged"
    if all(norm <= limit for norm, limit in zip(norms, threshold)):
        return "converged"
    return None
