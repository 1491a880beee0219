"""Restarted GMRES with right preconditioning, for nonsymmetric matrices and
preconditioners; vectorised over a block of right-hand sides, differentiable by
unrolling; and its training loss, the weighted residual history (eq. 42 for GMRES)."""
from __future__ import annotations

import math
import numbers

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from ..core.csr import CSRMatrix
from .base import (IterativeSolver, Operator, PreconditionerOperator, Solution, SystemMatrix,
                   as_preconditioner, bind_to_problem, blocks_of, check_history_weights,
                   check_system, end_message,
                   host_values, matrix_of, reported, residual_norm, status_of,
                   weighted_residuals)
from ..problems.batch import block_rhs, unbatch
from .implicit import check_implicit, implicit_solve

__all__ = ["GMRES", "gmres_loss"]

#: How a GMRES solve is differentiated (see :class:`GMRES`).
DIFFERENTIATION = ("unrolled", "implicit")


def _cgs2(w: torch.Tensor, Q: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Classical Gram-Schmidt twice: ``w`` (k, n) made orthogonal to the basis
    ``Q`` (k, j, n), orthonormal per column. Returns the coefficients ``h``
    (k, j) of ``w`` in the basis and the projected ``w`` (k, n)."""
    w = w.unsqueeze(1)                          # rows (k, 1, n): the products take the
    h1 = torch.bmm(w, Q.mT)                     # batched BLAS path (Q w is ~6x slower)
    w = torch.baddbmm(w, h1, Q, alpha=-1)
    h2 = torch.bmm(w, Q.mT)
    w = torch.baddbmm(w, h2, Q, alpha=-1)
    return (h1 + h2).squeeze(1), w.squeeze(1)


def _cgs2_stacked(w: torch.Tensor, *vectors: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return _cgs2(w, torch.stack(vectors, dim=1))


class _Vectors:
    """The vectors (k, n) of a cycle, at most ``capacity``: written into one
    buffer (k, capacity, n) while none needs a gradient, so that using them as
    a block copies nothing; kept as a list, and stacked by copying, from the
    first that does (a buffer written in place cannot be in an autograd graph)."""

    def __init__(self, capacity: int):
        self.capacity = capacity
        self.items: list[torch.Tensor] = []
        self.buffer: torch.Tensor | None = None
        self.viewed = True

    def append(self, v: torch.Tensor) -> None:
        self.viewed = self.viewed and not v.requires_grad
        if self.viewed:
            if self.buffer is None:
                self.buffer = v.new_empty(v.shape[0], self.capacity, v.shape[1])
            self.buffer[:, len(self.items)] = v
            v = self.buffer[:, len(self.items)]
        self.items.append(v)

    def stacked(self, count: int) -> torch.Tensor:
        """The first ``count`` vectors, (k, count, n)."""
        return self.buffer[:, :count] if self.viewed else torch.stack(self.items[:count], dim=1)

    def orthogonalize(self, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """:func:`_cgs2` against all the vectors; under autograd checkpointed, so that
        the stacked basis is not kept for the backward of every step (it is rebuilt
        there): the graph holds O(n k) per step, not O(j n k)."""
        if torch.is_grad_enabled() and (w.requires_grad or not self.viewed):
            return checkpoint(_cgs2_stacked, w, *self.items, use_reentrant=False)
        return _cgs2(w, self.stacked(len(self.items)))


class _Run:
    """One GMRES solve. Vectors are kept as blocks ``(k, n)``, one row per
    right-hand side, so that the products with the basis are batched over the
    columns; they are shaped like ``b`` to meet ``A``, ``M`` and the callback."""

    def __init__(self, A: CSRMatrix | Operator, apply_M, restart: int, maxiter: int, rtol: float,
                 atol: float, callback, block: bool):
        self.A, self.apply_M, self.restart, self.maxiter = A, apply_M, restart, maxiter
        self.rtol, self.atol, self.callback, self.block = rtol, atol, callback, block
        self.eps = torch.finfo(A.dtype).eps
        self.iterations = 0
        self.broke: int | None = None      # the column whose Hessenberg matrix is singular

    def outside(self, v: torch.Tensor) -> torch.Tensor:
        """(k, n) -> the shape of b."""
        return v.mT if self.block else v[0]

    def inside(self, u: torch.Tensor) -> torch.Tensor:
        """The shape of b -> (k, n)."""
        return u.mT if self.block else u.unsqueeze(0)

    def precondition(self, v: torch.Tensor) -> torch.Tensor:
        r = self.outside(v)
        z = self.apply_M(r)
        if not isinstance(z, torch.Tensor) or z.shape != r.shape:
            got = tuple(z.shape) if isinstance(z, torch.Tensor) else type(z).__name__
            raise ValueError(f"M: expected M r shaped like r {tuple(r.shape)}, got {got}")
        return self.inside(z)

    def solve(self, b: torch.Tensor, x0: torch.Tensor | None) -> Solution:
        x = torch.zeros_like(b) if x0 is None else x0.clone()
        r = b if x0 is None else b - self.A @ x0
        b_norm = residual_norm(b)
        # A column has converged below its limit; a happy breakdown sets it to inf.
        self.limit = torch.clamp(self.rtol * b_norm.detach(), min=self.atol).reshape(-1)
        self.limits = host_values(self.limit)
        norm = residual_norm(r)
        history = [norm.reshape(-1)]
        self.initial = host_values(norm)
        status = status_of(self.initial, self.limits, self.initial)
        while status is None and self.iterations < self.maxiter:
            x, r = self.cycle(b, x, r, history)
            status = status_of(host_values(history[-1]), self.limits, self.initial)
            if status is None and self.broke is not None:
                status = "breakdown"
        status = status or "maxiter"
        residuals = torch.stack(history)
        if not self.block:
            residuals = residuals[:, 0]
        return Solution(x, residuals, b_norm, self.iterations, status,
                        self.describe(status, residuals[-1], b_norm))

    def cycle(self, b: torch.Tensor, x: torch.Tensor, r: torch.Tensor,
              history: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Arnoldi steps from the residual ``r`` of ``x`` until the restart, the
        tolerance (estimated), maxiter or a breakdown; returns the new ``x`` and
        its residual, whose norm replaces the last estimate in ``history``."""
        r = self.inside(r)
        k, n = r.shape
        m = min(self.restart, n, self.maxiter - self.iterations)
        eye = torch.eye(m + 1, dtype=r.dtype, device=r.device)
        beta = torch.linalg.vector_norm(r, dim=1)
        active = beta > self.limit
        basis = _Vectors(m + 1)
        basis.append(torch.where(active[:, None], r / torch.where(active, beta, 1.0)[:, None],
                                 0.0))
        zs = basis if self.apply_M is None else _Vectors(m)
        # Q = rows + [q]: the product of the Givens rotations so far, (j + 1) x (j + 1)
        # per column; g = beta Q e_1 is the right-hand side of the triangular system.
        rows: list[torch.Tensor] = []
        q = eye[0].expand(k, m + 1)
        columns: list[torch.Tensor] = []     # of R, each padded to m rows
        for j in range(m):
            v = basis.items[j]
            z = v if self.apply_M is None else self.precondition(v)
            if self.apply_M is not None:
                zs.append(z)
            w = self.inside(self.A @ self.outside(z))
            h0 = torch.linalg.vector_norm(w, dim=1)
            h, w = basis.orthogonalize(w)
            h_next = torch.linalg.vector_norm(w, dim=1)
            happy = h_next <= self.eps * h0              # A M v_j in the space: exact
            h_next = torch.where(happy, 0.0, h_next)
            extend = active & ~happy
            basis.append(torch.where(extend[:, None],
                                     w / torch.where(extend, h_next, 1.0)[:, None], 0.0))
            # The new column of H through the rotations so far, then its own rotation.
            rotated = torch.bmm(torch.stack(rows + [q], dim=1)[:, :, :j + 1],
                                h.unsqueeze(-1)).squeeze(-1)
            a = rotated[:, j]
            nonzero = (a != 0) | (h_next != 0)
            rho = torch.hypot(torch.where(nonzero, a, 1.0), h_next)   # never 0: no 0/0
            take = active & nonzero
            solved = take & happy                        # a happy breakdown, not a singular one
            # A frozen column (or a singular step) gets a unit column of R and
            # g_j = 0, so y_j = 0; its residual estimate is carried on.
            c = torch.where(take, a / rho, 0.0)
            s = torch.where(take, h_next / rho, -1.0)
            column = torch.cat([rotated[:, :j], rho[:, None]], dim=1)
            columns.append(F.pad(torch.where(take[:, None], column, eye[j, :j + 1]),
                                 (0, m - j - 1)))
            rows.append(c[:, None] * q + s[:, None] * eye[j + 1])
            q = c[:, None] * eye[j + 1] - s[:, None] * q
            estimate = beta * q[:, 0].abs()
            history.append(estimate)
            self.iterations += 1
            flags = host_values(torch.stack([estimate.detach(), solved.to(r.dtype),
                                             (active & ~nonzero).to(r.dtype)]))
            norms, solved_now, singular = flags[:k], flags[k:2 * k], flags[2 * k:]
            self.limits = [math.inf if flag else limit
                           for flag, limit in zip(solved_now, self.limits)]
            self.limit = torch.where(solved, math.inf, self.limit)
            if self.callback is not None:
                self.callback(self.update(x, beta, zs, rows, columns).detach())
            if any(singular):
                self.broke = singular.index(1.0)
                break
            if status_of(norms, self.limits, self.initial) is not None:
                break
            active = estimate.detach() > self.limit
        x = self.update(x, beta, zs, rows, columns)
        r = b - self.A @ x
        history[-1] = residual_norm(r).reshape(-1)
        return x, r

    def update(self, x: torch.Tensor, beta: torch.Tensor, zs: _Vectors,
               rows: list[torch.Tensor], columns: list[torch.Tensor]) -> torch.Tensor:
        """``x + Z y`` with ``R y = g`` over the steps of the cycle so far."""
        steps = len(columns)
        R = torch.stack(columns, dim=2)[:, :steps]                       # (k, steps, steps)
        g = beta[:, None] * torch.stack(rows, dim=1)[:, :, 0]            # (k, steps)
        y = torch.linalg.solve_triangular(R, g.unsqueeze(-1), upper=True)
        return x + self.outside(torch.bmm(y.mT, zs.stacked(steps)).squeeze(1))

    def describe(self, status: str, last: torch.Tensor, b_norm: torch.Tensor) -> str:
        if status == "breakdown":
            column = f" in column {self.broke}" if self.block else ""
            return (f"breakdown after {self.iterations} iterations: the Hessenberg matrix is "
                    f"singular{column} (A, or A M, is singular); x is the last iterate before it")
        return end_message(status, self.iterations, self.maxiter, last, b_norm)


class GMRES(IterativeSolver):
    """Restarted GMRES(m) with right preconditioning, for any nonsingular A.

    Solves ``A x = b`` for ``b`` of shape ``(n,)``, or for ``k`` right-hand
    sides at once, ``b`` of shape ``(n, k)``: every column has its own Krylov
    space, and the sparse products, the orthogonalisation and the small
    least-squares problems are batched over the columns. A column whose
    residual meets the tolerance is frozen while the others go on.

    ``A`` is a :class:`~learnsolve.CSRMatrix`, a scipy sparse matrix or a
    torch sparse tensor (converted once per solve to a CSRMatrix; a torch
    one keeps the gradient of its values), or a matrix-free operator: a
    ``scipy.sparse.linalg.LinearOperator``, a dense 2-D tensor or a callable
    ``x -> A x`` (sized by ``b``); see
    :func:`~learnsolve.solvers.operators.as_operator`. A matrix-free ``A`` takes
    no preconditioner set up from its entries (IC(0), AMG, Jacobi, a learned
    factor: TypeError naming ``M``).

    Parameters
    ----------
    M : None, Preconditioner, CSRMatrix, LinearOperator or callable, optional
        The preconditioner, an approximation of ``A^{-1}``, which need not be
        symmetric (see :func:`~learnsolve.solvers.base.as_preconditioner`;
        ``setup(A)`` is called once per solve). A module is a submodule: its
        parameters are this solver's.
    restart : int
        ``m``, the Arnoldi steps of a cycle before restarting (at most ``n``
        are taken).
    maxiter : int, optional
        Most Arnoldi steps (products with A) over all cycles; None means
        ``10 n`` at solve time.
    rtol, atol : float
        A column has converged when ``||b - A x|| <= max(rtol ||b||, atol)``.
    callback : callable, optional
        ``callback(x)`` after each Arnoldi step, with the detached iterate
        shaped like ``b`` (formed only when a callback is given).

    Notes
    -----
    A cycle starts from the residual ``r_0 = b - A x_0`` of the current
    iterate, ``beta = ||r_0||``, ``v_0 = r_0 / beta``. Step ``j`` computes
    ``z_j = M v_j`` and ``w = A z_j``, orthogonalises ``w`` against
    ``v_0 .. v_j`` (the column ``h`` of the Hessenberg matrix ``H``) and
    normalises it into ``v_{j+1}``, so that ``A Z_j = V_{j+1} H_j``. Givens
    rotations, accumulated per column into an orthogonal ``Q``, reduce ``H_j``
    to the triangle ``R`` and ``beta e_1`` to ``g``; ``|g_{j+1}|`` is the norm
    of the least residual ``min_y ||b - A (x_0 + Z_j y)||`` and is what is
    recorded. At the end of a cycle (``m`` steps, every column below its
    tolerance by that estimate, ``maxiter``), ``R y = g`` is solved, ``x =
    x_0 + Z y`` (``= x_0 + M V y``: right preconditioning, so the residuals
    are those of ``b - A x``, not preconditioned), and the true residual is
    computed: it replaces the last estimate in ``Solution.residuals`` and
    decides convergence. ``Z`` is kept rather than ``M`` applied to ``V y``
    once more, which saves that application and keeps the method correct
    (as flexible GMRES) for a nonlinear or varying learned ``M``.

    The orthogonalisation is classical Gram-Schmidt done twice (CGS2): two
    products with the stacked basis and two with its transpose, batched over
    the columns (four BLAS calls a step, where modified Gram-Schmidt needs
    ``2 (j + 1)`` small ones), and as orthogonal as modified Gram-Schmidt to
    working precision ("twice is enough").

    A converged column is frozen: its later steps get a unit diagonal in
    ``R`` and ``g_j = 0``, so ``y_j = 0``, its iterate and residual estimate
    stay as they are. A happy breakdown, ``h_{j+1,j} <= eps ||A z_j||`` (the
    solution lies in the space, as scipy tests it), ends the column as
    converged whatever the tolerance. A singular ``H`` (zero pivot: ``A M``
    singular) ends the solve with status ``"breakdown"``, that column at its
    iterate before the step; a residual that is not finite, ``"diverged"``.
    No division by zero: every denominator is guarded with ``torch.where``,
    so frozen columns give no NaN to the gradient either.

    Convergence, divergence and breakdown are checked on the host from one
    transfer per step (the estimates and two flags per column) and one per
    restart (the true residuals).

    Differentiation, ``differentiation="unrolled"`` (the default): everything is torch operations on
    ``A``'s values (``A @ z``), so gradients reach ``A.values``, ``b``,
    ``x0`` and the preconditioner's parameters (or a CSRMatrix ``M``'s
    values), through every step and restart. The graph of a cycle holds
    O(m n k) (the basis, ``Z``, one block per step: the orthogonalisation is
    checkpointed so its stacked basis is not kept, but rebuilt in the
    backward), plus what ``M`` keeps; memory grows with the cycles run.
    With a matrix-free ``A`` no gradient reaches a LinearOperator (one
    reaches a dense tensor, or what a callable computes with in torch);
    gradients to ``b``, ``x0`` and the preconditioner flow through a
    LinearOperator's products by its transpose, ``rmatvec``/``rmatmat``
    (NotImplementedError naming the argument in the backward if it has none).

    ``differentiation="implicit"``: the forward builds no graph; the backward
    solves the adjoint system ``A^T λ = grad_x`` by GMRES with the same
    settings, preconditioned by ``M^T`` (the operator's ``transpose()``, where
    it has one: IC/ILU factors, SPAI, a CSRMatrix; else the preconditioner set
    up for ``A^T``, as RAS), and gives ``grad_b = λ``, ``grad_A = -(λ x^T) ⊙
    mask(A)``. Memory O(n k) beyond the Krylov basis, whatever the number of
    cycles; the gradient of the exact solution, as accurate as the two solves
    (a RuntimeWarning says if the adjoint did not converge). ``A`` must be a
    CSRMatrix (``A^T`` is needed); nothing reaches ``x0`` or the
    preconditioner (a trainable one is refused with ValueError).

    Examples
    --------
    >>> import torch, learnsolve
    >>> from learnsolve.solvers.gmres import GMRES
    >>> A = learnsolve.diags([-1.5, 2.0, -0.5], [-1, 0, 1], shape=(32, 32),
    ...                      dtype=torch.float64)       # upwinded convection-diffusion
    >>> b = torch.ones(32, dtype=torch.float64)
    >>> solution = GMRES(restart=10, rtol=1e-10)(A, b)
    >>> solution.status
    'converged'
    >>> bool(torch.linalg.vector_norm(b - A @ solution.x) <= 1e-10 * 32 ** 0.5)
    True
    >>> GMRES(restart=10, rtol=1e-10)(A.to_scipy(), b).iterations == solution.iterations
    True
    """

    def __init__(self, M=None, restart: int = 30, maxiter: int | None = None,
                 rtol: float = 1e-5, atol: float = 0.0, *, differentiation: str = "unrolled",
                 callback=None):
        super().__init__(0 if maxiter is None else maxiter, rtol, atol, callback)
        self.maxiter = None if maxiter is None else self.maxiter
        if isinstance(restart, bool) or not isinstance(restart, numbers.Integral) or \
                restart < 1:
            raise ValueError(f"restart: expected an integer >= 1, got {restart!r}")
        if differentiation not in DIFFERENTIATION:
            raise ValueError(f"differentiation: expected one of {DIFFERENTIATION}, got "
                             f"{differentiation!r}")
        self.M = M
        self.restart = int(restart)
        self.differentiation = differentiation

    def forward(self, A: SystemMatrix, b: torch.Tensor, x0: torch.Tensor | None = None
                ) -> Solution:
        """Solve ``A x = b`` (b ``(n,)`` or ``(n, k)``) from ``x0`` (default 0)."""
        A, b, x0 = check_system(A, b, x0, matrix_free=self.differentiation == "unrolled")
        maxiter = 10 * A.shape[0] if self.maxiter is None else self.maxiter
        settings = (self.restart, maxiter, self.rtol, self.atol)
        if self.differentiation == "unrolled":
            apply_M = as_preconditioner(self.M, A)
            run = _Run(A, apply_M, *settings, self.callback, b.dim() == 2)
            return reported(run.solve(b, x0), apply_M)
        check_implicit(self.M, A)
        with torch.no_grad():
            apply_M = as_preconditioner(self.M, A)
        run = _Run(A.detach(), apply_M, *settings, self.callback, b.dim() == 2)
        adjoint = _Adjoint(A.detach(), self.M, apply_M, settings)
        return reported(implicit_solve(A, b, x0, run, adjoint), apply_M)

    def loss(self, problem, X: torch.Tensor) -> torch.Tensor:
        """The training loss: ``gmres_loss(self, problem, X)``."""
        return gmres_loss(self, problem, X)

    def extra_repr(self) -> str:
        maxiter = "10n" if self.maxiter is None else self.maxiter
        return (f"restart={self.restart}, maxiter={maxiter}, rtol={self.rtol:g}, "
                f"atol={self.atol:g}, differentiation={self.differentiation!r}")


class _Adjoint:
    """The backward's solve ``A^T λ = g`` of implicit differentiation: GMRES with
    ``A^T`` and ``M^T``, made when the backward runs (a forward-only solve never
    needs ``M^T``)."""

    def __init__(self, A: CSRMatrix, M, apply_M: PreconditionerOperator | None, settings):
        self.A, self.M, self.apply_M, self.settings = A, M, apply_M, settings

    def transposed_preconditioner(self, At: CSRMatrix) -> PreconditionerOperator | None:
        """``M^T``: the operator's transpose where it has one, else ``M`` set up for
        ``A^T``; NotImplementedError for a callable ``M`` without either."""
        if self.apply_M is None or self.apply_M.has_transpose:
            return None if self.apply_M is None else self.apply_M.transpose()
        if callable(getattr(self.M, "setup", None)):
            return as_preconditioner(self.M, At)
        raise NotImplementedError("M: implicit differentiation of GMRES solves with A^T and "
                                  "M^T, and this M (a callable) has no transpose; give M as a "
                                  "preconditioner or a matrix, or use "
                                  "differentiation='unrolled'")

    def solve(self, g: torch.Tensor, x0: None) -> Solution:
        At = self.A.T
        run = _Run(At, self.transposed_preconditioner(At), *self.settings, None, g.dim() == 2)
        return run.solve(g, x0)


def gmres_loss(model: GMRES, problem, B: torch.Tensor, *, iterations: int = 4,
               gamma: float = 0.6, divergence_penalty: float = 0.0,
               penalty_steps: int = 8) -> torch.Tensor:
    """The weighted residual history of GMRES: eq. 42 of the paper for the Krylov
    method a nonsymmetric preconditioner serves.

    ``loss = mean_j sum_{i=1..N} w_i ||r_i^{(j)}|| / ||b^{(j)}||`` with ``w_i =
    gamma^{N-i} / sum_l gamma^{N-l}``, over ``N = iterations`` Arnoldi steps of
    one cycle (no restart, no early stop) with the preconditioner of
    ``model``, from ``x0 = 0``. ``||r_i||`` is GMRES's least residual after
    step ``i`` (``|g_{i+1}|`` of its Givens recurrence, the true residual at
    the end): what right-preconditioned GMRES minimises, so the loss trains
    ``M`` for the use GMRES makes of it (the restricted Schwarz method, an
    incomplete LU), not for a stationary iteration.

    GMRES converges with an ``M`` whose stationary iteration ``x <- x + M (b -
    A x)`` diverges, and nothing in the residual history stops training from
    reaching one. With ``divergence_penalty = lambda > 0`` the loss adds
    ``lambda * max(0, rho_k - 1)^2``, ``rho_k = (||T^k E||_F / ||E||_F)^{1/k}``
    the growth per step of the error propagator ``T = I - M A`` over ``k =
    penalty_steps`` steps from the unit columns ``E`` of ``B``: a
    differentiable estimate of the stationary factor (a lower bound for small
    ``k``), zero while the iteration contracts.

    Parameters
    ----------
    model : GMRES
        Its preconditioner is trained. One that binds to a problem
        (:class:`~learnsolve.solvers.RAS`: its partition) is bound to ``problem``.
    problem : Problem or CSRMatrix
        The matrix A.
    B : Tensor
        Right-hand sides ``(n,)`` or ``(n, J)``.
    iterations : int
        ``N``, at least 1.
    gamma : float
        In ``(0, 1]``.
    divergence_penalty : float
        ``lambda >= 0``; 0 (the default) adds nothing and costs nothing.
    penalty_steps : int
        ``k >= 1``, the applications of ``T`` in the estimate.

    Returns
    -------
    Tensor
        A scalar, differentiable (by unrolling) in the preconditioner's
        parameters, A's values and B.

    Examples
    --------
    >>> import torch
    >>> from learnsolve.problems import poisson_2d
    >>> from learnsolve.solvers import GMRES, RAS, RobinInterface
    >>> from learnsolve.solvers.gmres import gmres_loss
    >>> p = poisson_2d(12, dtype=torch.float64).with_partition(4, overlap=1)
    >>> B = p.random_rhs(4, seed=0, normalize=True)
    >>> robin = GMRES(M=RAS(interface=RobinInterface(0.5, learnable=True)))
    >>> loss = gmres_loss(robin, p, B)                # RAS() takes p's partition
    >>> loss.backward()
    >>> robin.M.interface.alpha.grad is not None
    True
    """
    if not isinstance(model, GMRES):
        raise TypeError(f"model: expected a GMRES, got {type(model).__name__}")
    iterations, gamma = check_history_weights(iterations, gamma)
    if isinstance(divergence_penalty, bool) or not isinstance(divergence_penalty, numbers.Real) \
            or not 0 <= divergence_penalty < math.inf:
        raise ValueError(f"divergence_penalty: expected a finite number >= 0, got "
                         f"{divergence_penalty!r}")
    if isinstance(penalty_steps, bool) or not isinstance(penalty_steps, numbers.Integral) or \
            penalty_steps < 1:
        raise ValueError(f"penalty_steps: expected an integer >= 1, got {penalty_steps!r}")
    A = matrix_of(problem)
    if blocks_of(problem) is not None:   # a batch: each problem's columns in columns of its own
        B = block_rhs(problem, unbatch(problem, B))
    apply_M = as_preconditioner(bind_to_problem(model.M, problem), A)   # set up once
    solver = GMRES(apply_M, restart=iterations, maxiter=iterations, rtol=0.0, atol=0.0)
    loss = weighted_residuals(solver(A, B), iterations, gamma, "gmres_loss")
    if divergence_penalty:
        growth = stationary_growth(apply_M, A, B, int(penalty_steps))
        loss = loss + divergence_penalty * F.relu(growth - 1) ** 2
    return loss


def stationary_growth(apply_M, A: CSRMatrix, B: torch.Tensor, steps: int) -> torch.Tensor:
    """``(||T^k E||_F / ||E||_F)^{1/k}`` for ``T = I - M A``, ``k = steps`` and ``E``
    the columns of ``B`` scaled to unit norm: the mean growth per step of the
    stationary iteration's error, differentiable (``apply_M``: ``r -> M r``, or None
    for ``M = I``)."""
    apply_M = apply_M if apply_M is not None else (lambda r: r)
    E = B if B.dim() == 2 else B[:, None]
    E = E / torch.linalg.vector_norm(E, dim=0).clamp_min(torch.finfo(E.dtype).tiny)
    start = torch.linalg.vector_norm(E)
    for _ in range(steps):
        E = E - apply_M(A @ E)
    return (torch.linalg.vector_norm(E) / start) ** (1.0 / steps)
