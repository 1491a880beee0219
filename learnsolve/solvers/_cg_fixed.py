"""PCG's iterations with no read on the host: the fixed-iteration path of
:class:`~learnsolve.solvers.cg.PCG` (a mixin of its run, ``cg._Run``), the one
``torch.compile`` traces into a single graph.

It runs all ``maxiter`` iterations. What the per-iteration path decides on the host
after each step (a system has converged, a breakdown, a divergence, the end of the
solve) is a tensor here, and a system that path would no longer update (converged,
or every one once the solve has ended) is frozen: its step is 0 (``masked_ratio``, as
that path's for a converged column) and its ``x`` and ``r`` are kept by
``torch.where`` (so that a non-finite step, after a divergence, does not reach them
either). The iterate, and the residual history up to the iteration that path stops
at, are therefore that path's, to rounding, and so are the gradients; after it the
history holds the last residual. The outcome (status,
iterations, where a breakdown happened) is a small tensor decoded on the host only
when asked for (:class:`~learnsolve.solvers.base.DeferredSolution`).
"""
from __future__ import annotations

from functools import partial
from typing import NamedTuple

import torch
from torch.utils.checkpoint import checkpoint

from .base import DIVERGENCE_FACTOR, DeferredSolution, end_message
from ._cg_lean import masked_ratio

__all__ = ["FixedIterations", "OUTCOMES", "breakdown_message", "read_outcome"]

#: What the code of a fixed run's outcome stands for: a status, or for a breakdown the
#: quantity found ``<= 0`` (a status "breakdown").
OUTCOMES = ("converged", "maxiter", "p^T A p", "diverged", "r^T M r")
RUNNING, CONVERGED, MAXITER, CURVATURE, DIVERGED, PRECONDITIONER = -1, 0, 1, 2, 3, 4


def breakdown_message(iterations: int, quantity: str, where: int, columns: int | None,
                      blocked: bool) -> str:
    """The message of a PCG solve (either path) that broke down after ``iterations``
    with ``quantity <= 0`` in system ``where`` (flat, block-major)."""
    column = (f" in block {where // (columns or 1)}" if blocked else
              "" if columns is None else f" in column {where}")
    culprit = "A" if quantity == "p^T A p" else "the preconditioner M"
    return (f"breakdown after {iterations} iterations: {quantity} <= 0{column}, {culprit} is "
            f"not positive definite; x is the last iterate before it")


def read_outcome(solution: DeferredSolution, maxiter: int, columns: int | None,
                 blocked: bool) -> tuple[int, str, str]:
    """``(iterations, status, message)`` of a fixed run's solution from its summary
    ``(outcome code, iterations, where a breakdown was)``: one read on the host (what
    the :class:`~learnsolve.solvers.base.DeferredSolution` calls). ``columns``: of b
    (None for one vector); ``blocked``: whether the systems are blocks of a batch."""
    code, iterations, where = solution.summary.tolist()
    outcome = OUTCOMES[code]
    if outcome in ("p^T A p", "r^T M r"):
        return iterations, "breakdown", breakdown_message(iterations, outcome, where, columns,
                                                          blocked)
    return iterations, outcome, end_message(outcome, iterations, maxiter, solution.residuals[-1],
                                         solution.b_norm)


class _State(NamedTuple):
    """Between two iterations: the vectors, ``r^T z``, the systems still updated
    (bool, per system), the outcome's code (``RUNNING`` until the solve ends), the
    system a breakdown was found in (its flat index), and the iterations run."""
    x: torch.Tensor
    r: torch.Tensor
    p: torch.Tensor
    rz: torch.Tensor
    active: torch.Tensor
    code: torch.Tensor
    where: torch.Tensor
    iterations: torch.Tensor


class FixedIterations:
    """The fixed-iteration path's methods; the run provides ``A``, ``maxiter``,
    ``rtol``, ``atol``, ``blocks``, ``checkpointed``, ``segment_length`` and the
    methods ``precondition``, ``dot``, ``norm`` and ``scale`` (see ``cg._Run``)."""

    def solve_fixed(self, b: torch.Tensor, x0: torch.Tensor | None) -> DeferredSolution:
        """``maxiter`` iterations from ``x0`` (default 0), with no read on the host."""
        state, norm, b_norm = self.fixed_start(b, x0)
        history = [norm.unsqueeze(0)]      # then the norms of segment k at k + 1
        first = 0
        while first < self.maxiter:
            steps = min(self.segment_length(len(history) - 1), self.maxiter - first)
            segment = (self.fixed_segment, first, steps, *state)
            *state, norms = (checkpoint(*segment, use_reentrant=False) if self.checkpointed
                             else segment[0](*segment[1:]))
            history.append(norms)
            first += steps
        state = _State(*state)
        code = torch.where(state.code == RUNNING, MAXITER, state.code)
        residuals = torch.cat(history)
        if self.blocks is not None:      # a column per block and column of b
            residuals, b_norm = residuals.flatten(1), b_norm.flatten()
        read = partial(read_outcome, maxiter=self.maxiter,
                       columns=None if b.dim() == 1 else b.shape[1],
                       blocked=self.blocks is not None)
        return DeferredSolution.pending(state.x, residuals, b_norm,
                                        torch.stack([code, state.iterations, state.where]), read)

    def fixed_start(self, b: torch.Tensor, x0: torch.Tensor | None
                    ) -> tuple[_State, torch.Tensor, torch.Tensor]:
        """The state before the first iteration, ``||r_0||`` and ``||b||``; the
        tolerances are kept as tensors (``limit``: converged at or below it;
        ``bound``: diverged above it, in float64 as the host's check computes it)."""
        x = torch.zeros_like(b) if x0 is None else x0.clone()
        r = b if x0 is None else b - self.A @ x0
        b_norm = self.norm(b)
        norm = self.norm(r)
        self.limit = torch.clamp(self.rtol * b_norm.detach(), min=self.atol)
        self.bound = DIVERGENCE_FACTOR * norm.detach().double().clamp(min=1e-300)
        code = self.ended(torch.full((), RUNNING, device=b.device), norm)
        if self.maxiter == 0:
            code = torch.where(code == RUNNING, MAXITER, code)
        p = self.precondition(r)
        rz = self.dot(r, p)
        active = (norm > self.limit) & (code == RUNNING)
        code, where = self.breaks_down(code, torch.zeros_like(code), active & (rz <= 0),
                                       PRECONDITIONER)
        return _State(x, r, p, rz, active & (code == RUNNING), code, where,
                      torch.zeros_like(code)), norm, b_norm

    def fixed_segment(self, first: int, steps: int, *state: torch.Tensor) -> tuple:
        """Iterations ``first .. first + steps - 1`` from ``state``: the new state, and
        the residual norms after each, stacked. Reads and changes nothing of the run
        (a checkpointed segment runs again in the backward)."""
        state, norms = _State(*state), []
        for i in range(first, first + steps):
            state, norm = self.fixed_iteration(state, last=i == self.maxiter - 1)
            norms.append(norm)
        return (*state, torch.stack(norms))

    def fixed_iteration(self, s: _State, last: bool) -> tuple[_State, torch.Tensor]:
        """One iteration (without the next direction after the ``last``): the new
        state and ``||r||``. The decisions of the per-iteration path, in its order:
        a breakdown of ``p^T A p`` ends the solve before the update; after it,
        the update counts, then a divergence or convergence ends it; then the
        systems not converged go on, unless one of them has ``r^T M r <= 0``."""
        Ap = self.A @ s.p
        pAp = self.dot(s.p, Ap)
        code, where = self.breaks_down(s.code, s.where, s.active & (pAp <= 0), CURVATURE)
        active = s.active & (code == RUNNING)
        alpha = self.scale(masked_ratio(s.rz, pAp, active))
        moving = self.scale(active)
        x = torch.where(moving, torch.addcmul(s.x, alpha, s.p), s.x)
        r = torch.where(moving, torch.addcmul(s.r, alpha, Ap, value=-1), s.r)
        norm = self.norm(r)
        iterations = s.iterations + (code == RUNNING)
        code = self.ended(code, norm)
        if last:
            return _State(x, r, s.p, s.rz, active, code, where, iterations), norm
        z = self.precondition(r)
        rz = self.dot(r, z)
        active = (norm > self.limit) & (code == RUNNING)
        code, where = self.breaks_down(code, where, active & (rz <= 0), PRECONDITIONER)
        active = active & (code == RUNNING)
        p = torch.addcmul(z, self.scale(masked_ratio(rz, s.rz, active)), s.p)
        return _State(x, r, p, rz, active, code, where, iterations), norm

    def ended(self, code: torch.Tensor, norm: torch.Tensor) -> torch.Tensor:
        """``code`` with the end of a running solve at these residual norms: diverged
        (a norm not finite, or above its bound), else converged (all at or below
        their limits), as :func:`~learnsolve.solvers.base.status_of` decides."""
        diverged = (~torch.isfinite(norm) | (norm.detach().double() > self.bound)).any()
        converged = (norm <= self.limit).all()
        outcome = torch.where(diverged, DIVERGED, torch.where(converged, CONVERGED, RUNNING))
        return torch.where(code == RUNNING, outcome, code)

    @staticmethod
    def breaks_down(code: torch.Tensor, where: torch.Tensor, bad: torch.Tensor, kind: int
                    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``code`` and ``where`` with a breakdown of ``kind`` recorded if the solve
        is running and a system is ``bad``: the first one (flat, block-major, as the
        host's check reads them)."""
        hit = (code == RUNNING) & bad.any()
        first = bad.reshape(-1).to(torch.int32).argmax()
        return torch.where(hit, kind, code), torch.where(hit, first, where)
