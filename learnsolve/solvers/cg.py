"""Preconditioned conjugate gradients, differentiable three ways (unrolled,
checkpointed, implicit), and the PCG training loss of the paper's eq. 42."""
from __future__ import annotations

import numbers
from typing import Callable

import torch
from torch.utils.checkpoint import checkpoint

from ..core.cache import values_cache
from ..core.csr import CSRMatrix
from ..core.validation import check_bool
from ..linalg._checks import check_spd
from .base import (IterativeSolver, Operator, Solution, SystemMatrix,
                   as_preconditioner, bind_to_problem, blocks_of, check_history_weights,
                   check_system, end_message,
                   host_values, matrix_of, reported, residual_norm, status_of,
                   weighted_residuals)
from ._cg_fixed import FixedIterations, breakdown_message
from ._cg_lean import LeanIterations, masked_ratio
from .implicit import check_implicit, implicit_solve

__all__ = ["PCG", "check_spd", "check_spd_cached", "pcg_loss"]

DIFFERENTIATION = ("unrolled", "checkpoint", "implicit")


def check_spd_cached(A: CSRMatrix) -> None:
    """:func:`check_spd`, skipped for a matrix that passed it with the same pattern
    and values (the same tensor, not changed in place since): a training loop
    solves with the same matrices at every epoch. The record is kept per values
    tensor (:func:`~learnsolve.core.cache.values_cache`), so that problems sharing a
    pattern (a family on one grid) do not evict each other's."""
    values_cache(A.values, "check_spd").get((A.pattern, A.values), lambda: check_spd(A))


def _dot(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """``u^T v``, per column of a block."""
    return torch.linalg.vecdot(u, v, dim=0)


class _Blocks:
    """The rows of each system of a block-diagonal batch (``offsets``: the first row of
    each block, then the total), for PCG run on every block of every column as a
    system of its own: inner products summed per block, scalars ``(blocks, k)``
    broadcast back to the rows. A column of ``b`` then holds one right-hand side
    per problem of the batch, and the solve is that of each problem alone, to
    rounding."""

    def __init__(self, offsets, n: int, device: torch.device):
        offsets = [int(o) for o in offsets]
        if offsets[0] != 0 or offsets[-1] != n or any(a > b for a, b in zip(offsets,
                                                                             offsets[1:])):
            raise ValueError(f"blocks: expected offsets rising from 0 to {n} (A's rows), got "
                             f"{offsets[:3]}...{offsets[-1:]}")
        self.count = len(offsets) - 1
        sizes = torch.tensor(offsets, device=device).diff()
        self.index = torch.repeat_interleave(torch.arange(self.count, device=device), sizes,
                                             output_size=n)

    def dot(self, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """``u^T v`` per block (and column): ``(blocks,)`` or ``(blocks, k)``."""
        return (u * v).new_zeros((self.count, *u.shape[1:])).index_add(0, self.index, u * v)

    def norm(self, r: torch.Tensor) -> torch.Tensor:
        """``||r||`` per block and column (a zero norm with a zero gradient, as
        ``vector_norm``'s, not the NaN of ``sqrt``'s at 0)."""
        square = self.dot(r, r)
        positive = square > 0
        return torch.where(positive, torch.where(positive, square, 1.0).sqrt(), 0.0)

    def expand(self, scalar: torch.Tensor) -> torch.Tensor:
        """Per-block scalars to the rows."""
        return scalar[self.index]


def _segment_lengths(maxiter: int, segments: int | None) -> Callable[[int], int]:
    """The iterations of checkpointed segment ``k``: ``segments`` equal ones over
    ``maxiter``, or by default ``k + 1`` (1, 2, 3, ...), so that ``m`` iterations,
    however many of ``maxiter`` a solve runs, make about ``sqrt(2 m)`` segments of
    at most that many iterations."""
    if segments is None:
        return lambda k: k + 1
    length = max(-(-maxiter // segments), 1)
    return lambda k: length


class _Run(LeanIterations, FixedIterations):
    """One PCG solve.

    An iteration is four steps: curvature (``Ap``, ``p^T A p``), update (``x``,
    ``r``, ``||r||``), preconditioning (``z = M r``, ``r^T z``) and direction
    (``p``). Where autograd records the solve (:meth:`records_graph`), they run
    out of place, and between steps the first run decides whether to stop; it
    records how many steps each segment ran and which columns were active, so
    that a checkpointed segment recomputed in the backward replays exactly the
    same steps, without its checks (they would sync) or the callback. Where it
    does not, the lean path runs them (:meth:`lean`). With ``fixed``, the
    fixed-iteration path runs instead, whether it records or not
    (:meth:`solve_fixed`: no read on the host).
    """

    def __init__(self, A: CSRMatrix | Operator, apply_M, maxiter: int, rtol: float, atol: float,
                 callback=None, segment_length: Callable[[int], int] | None = None,
                 blocks: _Blocks | None = None, fixed: bool = False):
        self.A, self.apply_M, self.maxiter = A, apply_M, maxiter
        self.blocks, self.fixed = blocks, fixed
        self.rtol, self.atol, self.callback = rtol, atol, callback
        # The iterations of segment k (one segment of all of them when not checkpointed).
        self.checkpointed = segment_length is not None
        self.segment_length = (lambda k: maxiter) if segment_length is None else segment_length
        self.plans: list[tuple[int, int | None]] = []  # (first iteration, steps) per segment
        # The active columns of each iteration: as a bool tensor (None when all are),
        # and as a list for the checks on the host.
        self.masks: list[torch.Tensor | None] = []
        self.active: list[list[bool]] = []
        self.iterations = 0
        self.status: str | None = None
        self.message = ""

    def precondition(self, r: torch.Tensor) -> torch.Tensor:
        if self.apply_M is None:
            return r
        z = self.apply_M(r)
        if not isinstance(z, torch.Tensor) or z.shape != r.shape:
            got = tuple(z.shape) if isinstance(z, torch.Tensor) else type(z).__name__
            raise ValueError(f"M: expected M r shaped like r {tuple(r.shape)}, got {got}")
        return z

    def dot(self, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return _dot(u, v) if self.blocks is None else self.blocks.dot(u, v)

    def norm(self, r: torch.Tensor) -> torch.Tensor:
        return residual_norm(r) if self.blocks is None else self.blocks.norm(r)

    def scale(self, scalar: torch.Tensor) -> torch.Tensor:
        """A step's scalars (per column, or per block and column) as they multiply a vector."""
        return scalar if self.blocks is None else self.blocks.expand(scalar)

    def solve(self, b: torch.Tensor, x0: torch.Tensor | None) -> Solution:
        if self.fixed:
            return self.solve_fixed(b, x0)
        A = self.A
        x = torch.zeros_like(b) if x0 is None else x0.clone()
        r = b if x0 is None else b - A @ x0
        b_norm = self.norm(b)
        norm = self.norm(r)
        threshold = torch.clamp(self.rtol * b_norm.detach(), min=self.atol)
        # One read of both on the host: a list of one float per column each.
        self.threshold, self.initial = torch.stack([threshold, norm.detach()]).reshape(
            2, -1).tolist()
        self.columns = None if b.dim() == 1 else b.shape[1]   # for the messages
        history = [norm.unsqueeze(0)]
        self.status = status_of(self.initial, self.threshold, self.initial)
        if self.status is None and self.maxiter == 0:
            self.status = "maxiter"
        if self.status is None:
            p = self.precondition(r)
            rz = self.dot(r, p)
            self.activate(self.initial, norm)
            self.broke(rz, 0, "r^T M r")
        if self.status is None:
            graph, Ap = self.records_graph(x, r, p)
            x = (self.unrolled(x, r, p, rz, history) if graph else
                 self.lean(x, r, p, rz, Ap, norm, history))
        residuals = torch.cat(history)
        if self.blocks is not None:      # a column per block and column of b
            residuals, b_norm = residuals.flatten(1), b_norm.flatten()
        return Solution(x, residuals, b_norm, self.iterations, self.status,
                        self.describe(residuals[-1], b_norm))

    def records_graph(self, x: torch.Tensor, r: torch.Tensor, p: torch.Tensor
                      ) -> tuple[bool, torch.Tensor | None]:
        """Whether autograd records the iterations from ``(x, r, p)``: grad mode on, and
        A or one of them requires grad (``p = M r``: also M's tensors). A matrix-free
        A does not say what its product computes with (a callable may close over a
        tensor that requires grad): then its first product ``A p`` tells, and is
        returned for the lean path's first iteration (None where none was computed;
        where it has a graph, the differentiable path computes it again)."""
        if not torch.is_grad_enabled():
            return False, None
        if self.A.requires_grad or any(t.requires_grad for t in (x, r, p)):
            return True, None
        if isinstance(self.A, CSRMatrix):
            return False, None
        Ap = self.A @ p
        return Ap.requires_grad, Ap

    def unrolled(self, x, r, p, rz, history: list) -> torch.Tensor:
        """The iterations as autograd records them, in segments (checkpointed or not):
        the last iterate; the residual norms are added to ``history``."""
        while self.status is None:
            self.plans.append((self.iterations, None))
            segment = (self.segment, len(self.plans) - 1, x, r, p, rz)
            x, r, p, rz, norms = (checkpoint(*segment, use_reentrant=False)
                                  if self.checkpointed else segment[0](*segment[1:]))
            history.append(norms)
        return x

    def segment(self, index: int, x, r, p, rz):
        """Up to ``segment_length(index)`` iterations from the state ``(x, r, p, rz)``."""
        start, planned = self.plans[index]
        recording = planned is None
        limit = 4 * self.segment_length(index) if recording else planned
        norms = []
        step = 0
        while step < limit:
            i, kind = start + step // 4, step % 4
            step += 1
            if kind == 0:
                Ap = self.A @ p
                pAp = self.dot(p, Ap)
                if recording and self.broke(pAp, i, "p^T A p"):
                    break
            elif kind == 1:
                alpha = self.scale(masked_ratio(rz, pAp, self.masks[i]))
                x = torch.addcmul(x, alpha, p)
                r = torch.addcmul(r, alpha, Ap, value=-1)
                norms.append(self.norm(r))
                if recording and self.updated(x, norms[-1]):
                    break
            elif kind == 2:
                z = self.precondition(r)
                rz_next = self.dot(r, z)
                if recording:
                    self.activate(self.last, norms[-1])
                    if self.broke(rz_next, i + 1, "r^T M r"):
                        break
            else:
                beta = masked_ratio(rz_next, rz, self.masks[i + 1])
                p = torch.addcmul(z, self.scale(beta), p)
                rz = rz_next
        if recording:
            self.plans[index] = (start, step)
        stacked = torch.stack(norms) if norms else r.new_zeros((0, *rz.shape))
        return x, r, p, rz, stacked

    def updated(self, x: torch.Tensor, norm: torch.Tensor) -> bool:
        """After an update: the callback, then whether to stop."""
        self.iterations += 1
        if self.callback is not None:
            self.callback(x.detach())
        self.last = host_values(norm)
        return self.stops(self.last)

    def stops(self, norms: list[float]) -> bool:
        """Whether the solve stops after an update with these residual norms (one per
        column): its status, with ``maxiter``."""
        self.status = status_of(norms, self.threshold, self.initial)
        if self.status is None and self.iterations == self.maxiter:
            self.status = "maxiter"
        return self.status is not None

    def active_columns(self, norms: list[float]) -> list[bool]:
        """The columns not converged at these residual norms."""
        return [value > limit for value, limit in zip(norms, self.threshold)]

    def activate(self, norms: list[float], norm: torch.Tensor) -> None:
        """Record the columns still active (not converged) for the next iteration."""
        active = self.active_columns(norms)
        self.active.append(active)
        self.masks.append(None if all(active) else
                          norm.detach() > norm.new_tensor(self.threshold).reshape(norm.shape))

    def broke(self, value: torch.Tensor, i: int, quantity: str) -> bool:
        """:meth:`breaks` for ``value`` (a tensor) at iteration ``i``."""
        return self.breaks(host_values(value), self.active[i], quantity)

    def breaks(self, values: list[float], active: list[bool], quantity: str) -> bool:
        """Stop with "breakdown" if an ``active`` column has ``quantity`` (its entry of
        ``values``) ``<= 0``."""
        bad = [on and v <= 0 for on, v in zip(active, values)]
        if not any(bad):
            return False
        self.status = "breakdown"
        self.message = breakdown_message(self.iterations, quantity, bad.index(True),
                                         self.columns, self.blocks is not None)
        return True

    def describe(self, last: torch.Tensor, b_norm: torch.Tensor) -> str:
        if self.status == "breakdown":
            return self.message
        return end_message(self.status, self.iterations, self.maxiter, last, b_norm)


class PCG(IterativeSolver):
    """Preconditioned conjugate gradients for a symmetric positive definite A.

    Solves ``A x = b`` for one right-hand side ``b`` of shape ``(n,)`` or for
    ``k`` of them at once, ``b`` of shape ``(n, k)``: every column has its own
    ``alpha`` and ``beta``, the sparse products are one SpMM per iteration, and
    a column that has converged is frozen (its step set to 0, so it cannot
    break down) while the others go on, until all have converged.

    ``A`` is a :class:`~learnsolve.CSRMatrix`, a scipy sparse matrix or a
    torch sparse tensor (converted once per solve to a CSRMatrix; a torch
    one keeps the gradient of its values), or a matrix-free operator: a
    ``scipy.sparse.linalg.LinearOperator``, a dense 2-D tensor or a callable
    ``x -> A x`` (sized by ``b``); see
    :func:`~learnsolve.solvers.operators.as_operator`. A matrix-free ``A`` takes
    no preconditioner set up from its entries (IC(0), AMG, Jacobi, a learned
    factor: TypeError naming ``M``), and is not checked by :func:`check_spd`.

    Parameters
    ----------
    M : None, Preconditioner, CSRMatrix, LinearOperator or callable, optional
        The preconditioner, an SPD approximation of ``A^{-1}`` (see
        :func:`~learnsolve.solvers.base.as_preconditioner`; one with a
        symmetric variant, ``setup_symmetric(A)``, is applied through it, as
        :class:`RAS` is as additive Schwarz). A module is a
        submodule: its parameters are this solver's, so
        ``torch.optim.Adam(pcg.parameters())`` trains it.
    maxiter : int, optional
        Most iterations; None means ``10 n`` at solve time (scipy's default).
    rtol, atol : float
        A column has converged when ``||r|| <= max(rtol ||b||, atol)``.
    differentiation : {"unrolled", "checkpoint", "implicit"}
        How gradients are computed (Notes).
    checkpoint_segments : int, optional
        With ``"checkpoint"``: cut ``maxiter`` into this many equal segments. By
        default the segments grow by one iteration each (1, 2, 3, ...): the
        ``m`` iterations a solve runs make about ``sqrt(2 m)`` segments, however
        large ``maxiter``.
    check_spd : bool
        Run :func:`check_spd` on ``A`` before a solve (O(nnz); skipped for a
        matrix that passed it before, unchanged: same values tensor and
        pattern; and for a matrix-free ``A``, which has no entries to check:
        an indefinite one shows as a ``"breakdown"``).
    callback : callable, optional
        ``callback(x)`` after each iteration, with the detached iterate.
    fixed_iterations : bool
        Run exactly ``maxiter`` iterations with no read on the host (no
        synchronisation with a device), as under :func:`torch.compile`
        always (Notes).

    Notes
    -----
    ``Solution.residuals`` holds ``||r_i||`` for ``i = 0 .. iterations``, the
    residuals of CG's recurrence ``r_{i+1} = r_i - alpha_i A p_i`` (equal to
    ``b - A x_i`` up to rounding); the loss of the paper's eq. 42
    (:func:`pcg_loss`) is built from them. Status ``"breakdown"``: ``p^T A p
    <= 0`` (A not positive definite) or ``r^T M r <= 0`` (M not positive
    definite) in a column not yet converged; ``x`` is then the last iterate
    before it, and the message says which.

    Differentiation, with memory for ``n`` unknowns, ``k`` columns and ``m``
    iterations run:

    - ``"unrolled"``: autograd through every iteration; gradients reach ``A``'s
      values, ``b``, ``x0`` and the preconditioner's parameters (or a
      CSRMatrix ``M``'s values). Memory O(m n k), plus what the preconditioner
      saves per application.
    - ``"checkpoint"``: the same gradient (equal to rounding), the iterations
      run in ``s`` segments under :func:`torch.utils.checkpoint.checkpoint`:
      only the state ``(x, r, p, r^T z)`` at segment boundaries is kept and a
      segment is recomputed in the backward, replaying the forward's decisions
      (steps run, columns frozen). Memory O((s + m / s) n k), O(sqrt(m) n k)
      by default (whatever ``maxiter``), for one more forward pass of compute.
    - ``"implicit"``: the forward builds no graph; the backward solves the
      adjoint system ``A λ = grad_x`` with the same PCG and preconditioner and
      gives ``grad_b = λ``, ``grad_A = -(λ x^T) ⊙ mask(A)``. Memory O(n k)
      whatever m. This is the gradient of the exact solution ``A^{-1} b``,
      as accurate as the two solves (a RuntimeWarning says if the adjoint did
      not converge); nothing reaches x0 or the preconditioner (a trainable one
      is refused with ValueError), ``Solution.residuals`` is detached, and
      there are no second derivatives.

    With a matrix-free ``A``: no gradient reaches a LinearOperator; one
    reaches a dense tensor, or what a callable computes with in torch, by
    ``"unrolled"`` and ``"checkpoint"`` only (``"implicit"`` refuses a
    tensor that requires grad, and gives nothing to what a callable closes
    over). Gradients to ``b`` and the preconditioner flow as above: the
    products with a LinearOperator are differentiated with itself (A is
    symmetric), and the adjoint solve of ``"implicit"`` uses the same
    operator.

    Where no graph is recorded (grad mode off, or nothing the solve starts
    from requires grad: ``A``, ``b``, ``x0``, what ``M`` computes with; and
    the forward and adjoint solves of ``"implicit"``), a lean path runs the
    same iterations, whatever ``differentiation``: ``x``, ``r`` and ``p``
    updated in place, ``||r||^2`` taken from ``r^T z`` without a
    preconditioner, and the convergence checks made in blocks of iterations,
    one read on the host (a synchronisation with the device) per block: a
    block runs about half the iterations the residual still needs at its
    recent rate (1 at first, at most 32), and where a check stops inside a
    block, the iterate it stops at is recomputed from the block's start. The
    iterates, the residual history, the stopping iteration and the status are
    those of the differentiable path, to rounding (the norms come from ``r^T
    r``, not :func:`torch.linalg.vector_norm`). A callback, or a matrix-free
    ``A`` (none of its products is wasted), makes the blocks one iteration
    long; the callback gets a copy of ``x``.

    With ``fixed_iterations=True``, and always under :func:`torch.compile`
    (``fullgraph=True`` traces it: a graph cannot hold the reads of the paths
    above), a solve runs exactly ``maxiter`` iterations and reads nothing on
    the host. What the paths above decide there (a column has converged, a
    breakdown, a divergence, the end of the solve) is computed as tensors, and
    what they would no longer update is frozen by masks: ``x`` is the iterate
    they stop at, to rounding, with their gradients, ``Solution.residuals``
    has ``maxiter + 1`` rows, the last residual held after the iteration they
    stop at, and a breakdown or divergence ends the solve as there, without
    an exception. The Solution is a
    :class:`~learnsolve.solvers.base.DeferredSolution`: its ``iterations``,
    ``status`` and ``message``, those of the paths above, are read on the host
    when first asked for (outside the compiled function). The work is that of
    ``maxiter`` iterations whatever the tolerance; compiled, they are unrolled
    into the graph, so compile time grows with ``maxiter`` (give one: the
    default unrolls ``10 n``). Refused (ValueError): ``differentiation=
    "implicit"`` (its backward checks the adjoint solve on the host) and a
    callback. Not checked under :func:`torch.compile`, where the checks
    would read on the host: ``A`` by :func:`check_spd` (whatever
    ``check_spd``; an indefinite A shows as status ``"breakdown"``) and
    :class:`Jacobi`'s diagonal for zeros (they give ``"diverged"``). What
    the products cache on ``A``'s pattern (its transpose, for the gradient)
    is best computed by a first solve outside the compiled function (see
    :class:`~learnsolve.CSRMatrix`).

    Examples
    --------
    >>> import torch
    >>> from learnsolve.problems import poisson_2d
    >>> from learnsolve.solvers.cg import PCG
    >>> A = poisson_2d(8, dtype=torch.float64).A
    >>> b = torch.ones(64, dtype=torch.float64)
    >>> solution = PCG(rtol=1e-10)(A, b)
    >>> solution.status, solution.iterations
    ('converged', 10)
    >>> bool(torch.linalg.vector_norm(b - A @ solution.x) <= 1e-10 * 8)
    True
    >>> PCG(rtol=1e-10)(A.to_scipy(), b).iterations         # the same, from scipy
    10
    >>> PCG(rtol=1e-10)(lambda x: A @ x, b).iterations      # matrix-free
    10

    Compiled (seconds of tracing, skipped here), 20 iterations in one graph,
    frozen after the 10th:

    >>> pcg = PCG(maxiter=20, rtol=1e-10)
    >>> compiled = torch.compile(lambda A, b: pcg(A, b), fullgraph=True)
    >>> solution = compiled(A, b)                           # doctest: +SKIP
    >>> solution.residuals.shape, solution.status, solution.iterations  # doctest: +SKIP
    (torch.Size([21]), 'converged', 10)
    """

    def __init__(self, M=None, maxiter: int | None = None, rtol: float = 1e-5,
                 atol: float = 0.0, *, differentiation: str = "unrolled",
                 checkpoint_segments: int | None = None, check_spd: bool = True, callback=None,
                 fixed_iterations: bool = False):
        super().__init__(0 if maxiter is None else maxiter, rtol, atol, callback)
        self.maxiter = None if maxiter is None else self.maxiter
        if differentiation not in DIFFERENTIATION:
            raise ValueError(f"differentiation: expected one of {DIFFERENTIATION}, got "
                             f"{differentiation!r}")
        if checkpoint_segments is not None:
            if (isinstance(checkpoint_segments, bool) or
                    not isinstance(checkpoint_segments, numbers.Integral) or
                    checkpoint_segments < 1):
                raise ValueError(f"checkpoint_segments: expected an integer >= 1 or None, got "
                                 f"{checkpoint_segments!r}")
            if differentiation != "checkpoint":
                raise ValueError(f"checkpoint_segments: only used with differentiation="
                                 f"'checkpoint', got differentiation={differentiation!r}")
        self.M = M
        self.differentiation = differentiation
        self.checkpoint_segments = checkpoint_segments
        self.check_spd = check_bool(check_spd, "check_spd")
        self.fixed_iterations = check_bool(fixed_iterations, "fixed_iterations")
        if self.fixed_iterations:
            self._check_fixed("fixed_iterations=True")

    def _check_fixed(self, why: str) -> None:
        """ValueError for the settings the fixed-iteration path (``why``: what asks for
        it) cannot run: implicit differentiation (its backward checks the adjoint solve
        on the host) and a callback (it would see every iterate, frozen or not)."""
        if self.differentiation == "implicit":
            raise ValueError(f"differentiation: expected 'unrolled' or 'checkpoint' with {why}, "
                             f"got 'implicit' (its backward reads the adjoint solve's status "
                             f"on the host)")
        if self.callback is not None:
            raise ValueError(f"callback: expected None with {why} (the iterations read "
                             f"nothing on the host)")

    def forward(self, A: SystemMatrix, b: torch.Tensor, x0: torch.Tensor | None = None, *,
                blocks=None) -> Solution:
        """Solve ``A x = b`` (A SPD, b ``(n,)`` or ``(n, k)``) from ``x0`` (default 0).

        ``blocks``: for a block-diagonal ``A`` and ``M`` (a batch of problems,
        :func:`~learnsolve.problems.batch_problems`), the first row of each
        block and then ``n`` (the batch's ``info["offsets"]``): each block of
        each column is then solved as a system of its own (its own ``alpha``
        and ``beta``, its own convergence), as if the problems were solved one
        by one; ``Solution.residuals`` and ``b_norm`` have a column per block
        and column of ``b`` (block-major)."""
        A, b, x0 = check_system(A, b, x0, matrix_free=True, symmetric=True)
        matrix_free = not isinstance(A, CSRMatrix)
        compiling = torch.compiler.is_compiling()
        if compiling:
            self._check_fixed("torch.compile")
        if self.check_spd and not matrix_free and not compiling:
            check_spd_cached(A)
        n = A.shape[0]
        blocks = None if blocks is None else _Blocks(blocks, n, b.device)
        maxiter = 10 * n if self.maxiter is None else self.maxiter
        settings = (maxiter, self.rtol, self.atol)
        if self.differentiation != "implicit":
            segment = None
            if self.differentiation == "checkpoint" and torch.is_grad_enabled():
                segment = _segment_lengths(maxiter, self.checkpoint_segments)
            apply_M = as_preconditioner(self.M, A, symmetric=True)
            run = _Run(A, apply_M, *settings, self.callback, segment, blocks,
                       fixed=self.fixed_iterations or compiling)
            return reported(run.solve(b, x0), apply_M)
        check_implicit(self.M, A)
        with torch.no_grad():
            apply_M = as_preconditioner(self.M, A, symmetric=True)
        matrix = A if matrix_free else A.detach()
        run = _Run(matrix, apply_M, *settings, self.callback, blocks=blocks)
        # A and M symmetric: A^T = A, M^T = M
        adjoint = _Run(matrix, apply_M, *settings, blocks=blocks)
        return reported(implicit_solve(A, b, x0, run, adjoint), apply_M)

    def loss(self, problem, X: torch.Tensor) -> torch.Tensor:
        """The training loss: ``pcg_loss(self, problem, X)`` (eq. 42)."""
        return pcg_loss(self, problem, X)

    def extra_repr(self) -> str:
        maxiter = "10n" if self.maxiter is None else self.maxiter
        fixed = ", fixed_iterations=True" if self.fixed_iterations else ""
        return (f"maxiter={maxiter}, rtol={self.rtol:g}, atol={self.atol:g}, "
                f"differentiation={self.differentiation!r}{fixed}")


def pcg_loss(model: PCG, problem, B: torch.Tensor, *, iterations: int = 4,
             gamma: float = 0.6) -> torch.Tensor:
    """The weighted residual history of PCG, the paper's eq. 42.

    ``loss = mean_j sum_{i=1..N} w_i ||r_i^{(j)}|| / ||b^{(j)}||`` with
    ``w_i = gamma^{N-i} / sum_l gamma^{N-l}``, over ``N = iterations`` PCG
    iterations (no early stop: ``rtol = atol = 0``) with the preconditioner
    and the differentiation mode of ``model`` (a copy of its settings; the
    model is not changed), from ``x0 = 0``. The residuals are those of CG's
    recurrence (see :class:`PCG`). Later iterations weigh more; every one
    gives gradient.

    Parameters
    ----------
    model : PCG
        ``"unrolled"`` or ``"checkpoint"`` differentiation. A preconditioner
        that binds to a problem (:class:`~learnsolve.solvers.RAS`: its
        partition) is bound to ``problem``.
    problem : Problem or CSRMatrix
        The matrix A.
    B : Tensor
        Right-hand sides ``(n,)`` or ``(n, J)``.
    iterations : int
        ``N``, at least 1.
    gamma : float
        In ``(0, 1]``.

    Returns
    -------
    Tensor
        A scalar, differentiable in the preconditioner's parameters, A's
        values and B.

    Raises
    ------
    ValueError
        ``model`` with implicit differentiation (its residual history is
        detached), bad ``iterations`` or ``gamma``.

    Notes
    -----
    If PCG stops before ``N`` iterations (a column at exactly zero residual:
    the later residuals are 0; a breakdown, e.g. an indefinite learned M, or a
    divergence: the last residual is held, with a RuntimeWarning), the
    history is completed with its last residual, so the loss stays defined.
    With fixed iterations (``model.fixed_iterations``, and under
    :func:`torch.compile`: see :class:`PCG`) the frozen iterations hold it:
    the same loss, without the warning (it would read on the host).

    Examples
    --------
    >>> import torch, learnsolve
    >>> from learnsolve.problems import poisson_2d
    >>> from learnsolve.solvers.cg import PCG, pcg_loss
    >>> A = poisson_2d(8, dtype=torch.float64).A
    >>> L = A.tril().with_values(torch.ones(A.tril().nnz, dtype=torch.float64) * 0.5)
    >>> L.requires_grad_()
    CSRMatrix(shape=(64, 64), nnz=176, dtype=torch.float64, device=cpu, requires_grad=True)
    >>> B = torch.randn(64, 3, dtype=torch.float64)
    >>> loss = pcg_loss(PCG(M=L @ L.T), A, B / B.norm(dim=0))
    >>> loss.backward()
    >>> L.values.grad.shape
    torch.Size([176])
    """
    if not isinstance(model, PCG):
        raise TypeError(f"model: expected a PCG, got {type(model).__name__}")
    if model.differentiation == "implicit":
        raise ValueError("model: expected differentiation 'unrolled' or 'checkpoint' for the PCG "
                         "loss, got 'implicit' (its residual history is detached, the loss "
                         "would have no gradient)")
    iterations, gamma = check_history_weights(iterations, gamma)
    solver = PCG(bind_to_problem(model.M, problem), int(iterations), 0.0, 0.0,
                 differentiation=model.differentiation,
                 checkpoint_segments=model.checkpoint_segments, check_spd=model.check_spd,
                 callback=model.callback, fixed_iterations=model.fixed_iterations)
    solution = solver(matrix_of(problem), B, blocks=blocks_of(problem))
    return weighted_residuals(solution, iterations, gamma, "pcg_loss")
