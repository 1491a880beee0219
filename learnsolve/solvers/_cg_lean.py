"""PCG's iterations where autograd records nothing: the lean path of
:class:`~learnsolve.solvers.cg.PCG` (a mixin of its run, ``cg._Run``).

``x``, ``r`` and ``p`` are updated in place, ``||r||^2`` is taken from ``r^T z``
without a preconditioner, and the convergence checks are made in blocks of
iterations, one read on the host per block; where a check stops inside a block,
the iterate it stops at is recomputed from the block's start (see
:meth:`LeanIterations.lean`). One system with a CSR matrix on the CPU, and no
preconditioner or a diagonal one, runs each iteration as one native call
(:meth:`LeanIterations.fused_step`).
"""
from __future__ import annotations

import math

import torch

from ..core._ops import ops
from ..core.csr import CSRMatrix
from .base import DIVERGENCE_FACTOR

__all__ = ["LeanIterations", "MOST_BETWEEN_CHECKS", "RATE_WINDOW", "masked_ratio"]

#: The most iterations the lean path (no graph) runs between two convergence checks, each
#: one read of its records on the host (a synchronisation with the device).
MOST_BETWEEN_CHECKS = 32
#: The last iterations over which the lean path measures how fast the residuals fall.
RATE_WINDOW = 8


def masked_ratio(num: torch.Tensor, den: torch.Tensor, active: torch.Tensor | None
                 ) -> torch.Tensor:
    """``num / den`` in the active columns, 0 in the frozen ones (``active`` None: all
    are active). The denominator is replaced by 1 where frozen, so that neither the
    value nor the gradient of the branch torch.where drops can be a 0/0."""
    if active is None:
        return num / den
    return torch.where(active, num / torch.where(active, den, torch.ones_like(den)), 0.0)


class LeanIterations:
    """The lean path's methods; the run provides ``A``, ``apply_M``, ``maxiter``,
    ``callback``, ``blocks``, ``threshold``, ``initial``, ``iterations``, ``active``,
    ``status`` and the methods ``precondition``, ``scale``, ``stops``, ``breaks``,
    ``active_columns`` (see ``cg._Run``)."""

    #: The native step's fixed arguments for the solve under way (:meth:`fusable`), set
    #: by :meth:`lean`; None: the torch ops.
    fused: tuple | None = None

    def lean(self, x, r, p, rz, Ap: torch.Tensor | None, norm: torch.Tensor,
             history: list) -> torch.Tensor:
        """The iterations without a graph: the last iterate; the residual norms are added
        to ``history``.

        They run in blocks of :meth:`interval` iterations (:meth:`block`), each
        followed by one read of its records on the host (:meth:`read`: one
        synchronisation) and the checks of the per-iteration path on them, in its
        order (:meth:`check`). The first iteration of a block writes its ``x``,
        ``r`` and ``p`` into spare buffers (the later ones update those in place),
        so that the state at the start of the block stays: where the check stops
        inside the block, the iterate it stops at is recomputed from there
        (:meth:`replay`), and the residuals after it are dropped. The stopping
        iteration, the residual history and the iterate are those of a check after
        every iteration.

        The records go to a buffer allocated with the vectors before the
        iterations, so that no tensor an iteration makes outlives the next (small
        ones kept alive between the products' large ones keep the allocator from
        reusing the memory of those: the heap grows, and every product touches
        new pages); the ``r^T z`` a block starts from (the record of the block
        before) is copied aside, for its replay.
        """
        many = norm.numel() > 1   # several systems: converged ones are frozen
        self.fused = self.fusable(x)
        self.limit = norm.new_tensor(self.threshold).reshape(norm.shape)
        self.bounds = [DIVERGENCE_FACTOR * max(value, 1e-300) for value in self.initial]
        self.norms = [self.initial]     # per iteration, on the host
        state = (x, r.clone(), p.clone(), rz, norm > self.limit if many else None)
        spare = tuple(map(torch.empty_like, state[:3]))
        records, slots = self.records(norm)
        carried = torch.empty_like(rz)
        while self.status is None:
            start, steps = (*state[:3], carried.copy_(state[3]), state[4]), self.interval()
            state = self.block(start, spare, slots[:steps], Ap)
            kept = self.check(self.read(records[:, :steps]), state[0])
            spare, Ap = start[:3], None
        history.append(norm.new_tensor(self.norms[1:]).reshape(-1, *norm.shape))
        return state[0] if kept == steps else self.replay(start, slots[:kept])

    def records(self, norm: torch.Tensor) -> tuple[torch.Tensor, list[tuple]]:
        """A buffer for the records of a block, ``(fields, iterations, *systems)``, and
        its slots: views of where an iteration's ``p^T A p``, ``r^T r`` and (with a
        preconditioner) ``r^T z`` go, then of all of them (the native step writes
        them at once)."""
        fields = 2 if self.apply_M is None else 3
        records = norm.new_empty((fields, min(MOST_BETWEEN_CHECKS, self.maxiter), *norm.shape))
        return records, list(zip(*(field.unbind(0) for field in records.unbind(0)),
                                 records.unbind(1)))

    def fusable(self, x: torch.Tensor) -> tuple | None:
        """The arguments of an iteration as one native call
        (:func:`~learnsolve.core.native.cg_step`) that stay the same through the
        solve, ``(crow, col, values, d)``, where it applies: one system (``x`` 1-D,
        no ``blocks``) in float32 or float64, a CSR ``A`` on the CPU, and no
        preconditioner or a diagonal one, ``M r = d ∘ r`` (its ``diagonal``; not
        a callable's). Else None: the torch ops of :meth:`step`. Detached: the
        lean path records no graph, and a trainable Jacobi's weights may require
        grad where grad mode is off; contiguous, as the native step reads them."""
        A, M = self.A, self.apply_M
        if (self.blocks is not None or not isinstance(A, CSRMatrix) or x.dim() != 1
                or x.device.type != "cpu" or x.dtype not in (torch.float32, torch.float64)):
            return None
        d = None if M is None else M.diagonal
        if M is not None and not (isinstance(d, torch.Tensor) and d.shape == x.shape
                                  and d.dtype == x.dtype and d.device == x.device):
            return None
        arrays = (A.crow_indices, A.pattern.kernel_col(), A.values.detach(),
                  None if d is None else d.detach())
        return tuple(None if t is None else t.contiguous() for t in arrays)

    def interval(self) -> int:
        """The iterations the lean path runs before its next check: half those the
        residuals need to reach the tolerance at the rate they fell over the last
        :data:`RATE_WINDOW` iterations (:meth:`remaining`), at least 1 and at most
        ``1 + iterations / 2`` (a solve that stops at iteration m runs at most m / 2
        iterations past it, and recomputes at most as many; none where the rate
        holds to within a factor 2), :data:`MOST_BETWEEN_CHECKS`, and what is left
        of ``maxiter``. One at a time with a callback (it sees every iterate) or a
        matrix-free A (each product is user code, maybe a numpy round trip: none
        is wasted)."""
        if self.callback is not None or not isinstance(self.A, CSRMatrix):
            return 1
        cap = min(MOST_BETWEEN_CHECKS, 1 + self.iterations // 2, self.maxiter - self.iterations)
        return max(1, int(min(cap, self.remaining() / 2)))

    def remaining(self) -> float:
        """The iterations the slowest system still active needs to reach its tolerance,
        at the rate its residual fell over the last :data:`RATE_WINDOW` iterations:
        ``inf`` where it did not fall, or the tolerance is 0."""
        first = self.norms[max(0, len(self.norms) - 1 - RATE_WINDOW)]
        span = min(len(self.norms) - 1, RATE_WINDOW)
        most = 0.0
        for start, now, limit in zip(first, self.norms[-1], self.threshold):
            if now <= limit:
                continue        # converged: frozen
            if not (0 < limit and now < start):
                return math.inf
            most = max(most, span * math.log(limit / now) / math.log(now / start))
        return most

    def block(self, state: tuple, spare: tuple, slots: list[tuple], Ap: torch.Tensor | None):
        """A lean iteration from ``state`` per record slot of ``slots``, the first into the
        buffers ``spare``: the new state."""
        out = spare
        for slot in slots:
            state = self.step(*state, out, slot, Ap)
            out, Ap = state[:3], None
        return state

    def step(self, x, r, p, rz, active, out: tuple, slot: tuple,
             Ap: torch.Tensor | None = None) -> tuple:
        """One iteration without a graph, from ``(x, r, p, rz)`` into the buffers ``out``
        (``x, r, p`` themselves: in place): ``x += alpha p``, ``r -= alpha A p``,
        ``p = z + beta p``, by the updates of the differentiable path, with
        ``p^T A p``, ``r^T r`` and ``r^T z`` written to ``slot`` (for no
        preconditioner ``r^T z`` is ``r^T r``, one product). ``active``: the bool
        mask of the systems not converged (None for one system, which stops when
        it has). Returns the new state. One native call where it applies
        (:meth:`fusable`)."""
        if self.fused is not None:
            return self.fused_step(x, r, p, rz, out, slot, Ap)
        Ap = self.A @ p if Ap is None else Ap
        pAp = self.lean_dot(p, Ap, slot[0])
        alpha = self.scale(masked_ratio(rz, pAp, active))
        x = torch.addcmul(x, alpha, p, out=out[0])
        r = torch.addcmul(r, alpha, Ap, value=-1, out=out[1])
        z = self.precondition(r)
        rr = self.lean_dot(r, r, slot[1])
        rz_next = rr if self.apply_M is None else self.lean_dot(r, z, slot[2])
        if active is not None:
            active = rr.sqrt() > self.limit
        p = torch.addcmul(z, self.scale(masked_ratio(rz_next, rz, active)), p, out=out[2])
        return x, r, p, rz_next, active

    def fused_step(self, x, r, p, rz, out: tuple, slot: tuple, Ap: torch.Tensor | None
                   ) -> tuple:
        """:meth:`step` for one system as one native call: the same updates, its inner
        products summed in double (float32 too) in an order fixed by ``n``, so
        that a replay gives the same iterate."""
        crow, col, values, d = self.fused
        ops.cg_step(crow, col, values, x, r, p, rz, d, Ap, *out, slot[-1])
        return (*out, slot[1] if d is None else slot[2], None)

    def lean_dot(self, u: torch.Tensor, v: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """:meth:`dot` into ``out``: by ``torch.dot`` for one vector (one pass, no
        temporary)."""
        if self.blocks is not None:
            return out.copy_(self.blocks.dot(u, v))
        if u.dim() == 1:
            return torch.dot(u, v, out=out)
        return torch.linalg.vecdot(u, v, dim=0, out=out)

    def read(self, values: torch.Tensor) -> list[tuple]:
        """The records of a block (``(fields, iterations, *systems)``) on the host, in one
        transfer: per iteration ``(p^T A p, ||r||, r^T z)``, each a list of one float
        per system (``||r||``: ``r^T r``'s square root, in the dtype of the solve).
        For no preconditioner ``||r||`` stands in for ``r^T z = ||r||^2``: one is
        ``<= 0`` where the other is."""
        values = torch.cat((values, values[1:2].sqrt()))   # the records, then ||r||
        host = values.reshape(*values.shape[:2], -1).tolist()
        return list(zip(host[0], host[-1], host[2] if len(host) == 4 else host[-1]))

    def check(self, rows: list, x: torch.Tensor) -> int:
        """The checks of a block on the host, in the order the per-iteration path
        makes them; returns how many of its iterations stand (those up to the first
        that stops, itself included unless ``p^T A p`` broke down before its
        update), whose residual norms it adds to ``norms``. ``x``: the last
        iterate, for the callback (a block of one iteration when there is one)."""
        if self.callback is None and self.quiet(rows):
            self.iterations += len(rows)
            self.norms += [norm for _, norm, _ in rows]
            self.stops(self.norms[-1])
            return len(rows)
        for step, (pAp, norm, rz) in enumerate(rows):
            if self.breaks(pAp, self.active[-1], "p^T A p"):
                return step
            self.iterations += 1
            self.norms.append(norm)
            if self.callback is not None:
                self.callback(x.clone())
            if self.stops(norm):
                return step + 1
            self.active.append(self.active_columns(norm))
            if self.breaks(rz, self.active[-1], "r^T M r"):
                return step + 1
        return len(rows)

    def quiet(self, rows: list) -> bool:
        """Whether no check of a block can stop it nor freeze a system: at every
        iteration, in every system, ``p^T A p > 0``, ``r^T z > 0`` and a residual
        above the tolerance and at most the divergence bound of
        :func:`~learnsolve.solvers.base.status_of` (finite). Then the systems were
        all active before it too (a frozen one keeps its residual), and only
        ``maxiter`` can end the solve: :meth:`check` without its loop."""
        return all(0 < p and 0 < z and low < norm <= high
                   for pAp, norms, rz in rows
                   for p, norm, z, low, high in zip(pAp, norms, rz, self.threshold, self.bounds))

    def replay(self, state: tuple, slots: list[tuple]) -> torch.Tensor:
        """The iterate a step per slot of ``slots`` after ``state`` (the start of a
        block), recomputed in place: the same operations on the same values as the
        block ran, so the same iterate."""
        for slot in slots:
            state = self.step(*state, state[:3], slot)
        return state[0]
