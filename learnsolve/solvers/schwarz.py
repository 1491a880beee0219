"""Restricted additive Schwarz with learned interface conditions (paper section 4.5).

For subdomains ``D_i`` overlapped into ``D_i^delta`` (a
:class:`~learnsolve.problems.Partition`), restricted additive Schwarz is

    M = sum_i (R~_i)^T (A_i + L_i)^{-1} R_i,        A_i = R_i A R_i^T      (eqs. 44, 47)

with ``R_i`` the restriction to ``D_i^delta`` and ``R~_i`` the one that keeps
only the rows of the core ``D_i``. ``L_i = 0`` is the classical method (a
Dirichlet condition on the artificial boundary); an *interface* supplies
``L_i``, entries between the boundary nodes of ``D_i^delta`` that change the
transmission condition there: :class:`RobinInterface` (one constant), or a
graph network (:class:`~learnsolve.nn.InterfaceNet`) trained with
:func:`ras_loss` (eq. 49) on the error propagator ``T = I - M A`` (eq. 48).

How it is computed: all the ``A_i + L_i`` are the blocks of one block-diagonal
matrix whose values are one gather of ``A.values`` (positions found once per
pattern, :meth:`Partition.local_structure`) plus the interface's values; it is
factored once per matrix (SuperLU, whose ordering keeps the blocks apart) and
every application of ``M`` is one gather ``R r`` of the residual into the
stacked subdomain vectors, one solve of all blocks with all right-hand sides,
and one gather of each node's core copy (the cores partition the nodes, so
``sum_i R~_i^T z_i`` is a permutation). Gradients flow through the solves into
``A``'s values and the interface's parameters: the sparse solve and the
sparse-sparse structure of the paper, never a dense matrix.

A coarse level (``coarse="nicolaides"``, ``"linear"``, ... or a
:class:`~learnsolve.solvers.coarse.CoarseSpace`) adds a coarse space ``Z`` of a
few vectors per subdomain and ``Q = Z A_0^{-1} Z^T`` with the coarse matrix
``A_0 = Z^T A Z`` (sparse products), factored with the subdomain blocks, once
per matrix: see :mod:`learnsolve.solvers.coarse`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ..core.csr import CSRMatrix
from ..linalg.direct import SparseLU
from ..problems.decomposition import LocalStructure, Partition
from ..problems.decomposition import partition as make_partition
from ..core.validation import check_count
from ..problems.problem import Problem
from .base import (IterativeSolver, MatrixCache, Preconditioner, PreconditionerOperator,
                   Solution, check_system, matrix_of)
from .coarse import CoarseSpace, as_coarse_space, coarse_correction
from .stationary import iterate

__all__ = ["RAS", "Subdomains", "RobinInterface", "ras_loss", "best_robin"]


@dataclass(frozen=True, eq=False)
class Subdomains:
    """What an interface sees: the matrix, its subdomains and where they lie.

    Attributes
    ----------
    A : CSRMatrix
        The global matrix.
    partition : Partition
    coordinates : Tensor (n, d) or None
        The problem's node coordinates.
    local : LocalStructure
        The stacked blocks ``diag(A_1, ..., A_S)`` as positions in ``A``.
    nodes : Tensor (m,)
        The global node of each stacked row (``m = sum |D_i^delta|``).
    rows : Tensor (nnz_local,)
        The stacked row of each stacked entry.
    boundary : Tensor (m,) bool
        The stacked rows on the boundary of their subdomain.
    boundary_entries : Tensor (nnz_local,) bool
        Entries between two boundary nodes of their subdomain: where ``L_i``
        may be nonzero.
    pick : Tensor (n,)
        The stacked row of each node's core copy: ``z[pick]`` is
        ``sum_i R~_i^T z_i`` (the cores partition the nodes).
    """

    A: CSRMatrix
    partition: Partition
    coordinates: torch.Tensor | None
    local: LocalStructure
    nodes: torch.Tensor
    rows: torch.Tensor
    boundary: torch.Tensor
    boundary_entries: torch.Tensor
    pick: torch.Tensor

    @property
    def boundary_indicator(self) -> torch.Tensor:
        """``d`` of eq. 46 in A's dtype: 1 at nodes on some subdomain's boundary."""
        d = torch.zeros(self.A.shape[0], dtype=self.A.dtype, device=self.A.device)
        return d.index_fill(0, self.nodes[self.boundary], 1)

    def outside_coupling(self) -> torch.Tensor:
        """``s_k = sum_{j outside D_i^delta} |a_kj|`` for each stacked row ``k`` of each
        subdomain ``i``: how strongly the node is coupled to what the subdomain leaves
        out (zero away from its boundary). Differentiable in ``A.values``."""
        magnitude = self.A.values.abs()
        total = CSRMatrix.from_pattern(self.A.pattern, magnitude).row_sum()
        inside = CSRMatrix.from_pattern(self.local.stacked,
                                         magnitude[self.local.positions]).row_sum()
        return (total[self.nodes] - inside).clamp(min=0)

    def boundary_coupling(self, outside: torch.Tensor) -> torch.Tensor:
        """The largest ``outside`` coupling (:meth:`outside_coupling`, stacked) of each
        node over the subdomains (n,): a node feature that is ``d`` of eq. 46 weighted
        by the coupling cut off."""
        coupling = torch.zeros(self.A.shape[0], dtype=outside.dtype, device=outside.device)
        return coupling.scatter_reduce(0, self.nodes, outside, "amax")

    def on_boundary(self, values: torch.Tensor) -> torch.Tensor:
        """The stacked values of the ``L_i`` from a matrix ``L^`` on A's pattern (its
        ``nnz`` values): each block keeps the entries between its boundary nodes."""
        if values.shape != (self.A.nnz,):
            raise ValueError(f"values: expected one value per stored entry of A, shape "
                             f"({self.A.nnz},), got {tuple(values.shape)}")
        return values[self.local.positions] * self.boundary_entries


def _subdomains(A: CSRMatrix, partition: Partition, coordinates) -> Subdomains:
    def compute():
        local = partition.local_structure(A)
        nodes = torch.cat(partition.overlapped).to(A.device)
        rows = local.stacked.row()
        boundary = torch.cat(partition.boundary).to(A.device)
        core_rows = torch.nonzero(torch.cat(partition.core_mask).to(A.device)).flatten()
        pick = torch.empty(A.shape[0], dtype=torch.int64, device=A.device)
        pick[nodes[core_rows]] = core_rows
        return local, nodes, rows, boundary, boundary[rows] & boundary[local.stacked.col], pick
    arrays = A.pattern.cached_with(partition, "schwarz_subdomains", compute)
    return Subdomains(A, partition, coordinates, *arrays)


class RobinInterface(nn.Module):
    """One constant interface condition between Dirichlet and Neumann: a Robin condition.

    On the boundary nodes ``k`` of ``D_i^delta``, ``L_i = -alpha diag(s_k)``
    where ``s_k = sum_{j outside D_i^delta} |a_kj|`` is the coupling of ``k``
    to the nodes the subdomain leaves out. ``alpha = 0`` keeps the Dirichlet
    condition of classical RAS; ``alpha = 1`` removes the outside coupling
    from the diagonal, an algebraic Neumann condition (singular for a
    subdomain with a Neumann condition all round); in between, a Robin
    condition with one constant parameter, the same for every subdomain and
    problem (the optimised Schwarz methods' classical choice).
    :func:`best_robin` finds the best ``alpha`` by a scan.

    Parameters
    ----------
    alpha : float
    learnable : bool
        Make ``alpha`` an ``nn.Parameter`` (one trained constant).

    Examples
    --------
    >>> import torch
    >>> from learnsolve.problems import poisson_2d
    >>> from learnsolve.solvers import RAS, RobinInterface
    >>> p = poisson_2d(16, dtype=torch.float64).with_partition(4, overlap=1)
    >>> dirichlet = RAS(p).convergence_factor(p.A)
    >>> robin = RAS(p, interface=RobinInterface(0.5)).convergence_factor(p.A)
    >>> bool(robin < dirichlet)
    True
    """

    def __init__(self, alpha: float = 0.5, *, learnable: bool = False):
        super().__init__()
        if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or \
                not math.isfinite(alpha):
            raise ValueError(f"alpha: expected a finite number, got {alpha!r}")
        alpha = torch.tensor(float(alpha))
        if learnable:
            self.alpha = nn.Parameter(alpha)
        else:
            self.register_buffer("alpha", alpha)

    def forward(self, sub: Subdomains) -> torch.Tensor:
        diagonal = (sub.rows == sub.local.stacked.col) & sub.boundary_entries
        alpha = self.alpha.to(sub.A.dtype)
        return torch.where(diagonal, -alpha * sub.outside_coupling()[sub.rows], 0)

    def extra_repr(self) -> str:
        return f"alpha={float(self.alpha):.4g}"


def _bind(source, overlap, num_parts, method) -> tuple[Partition, torch.Tensor | None]:
    """The partition (and the coordinates) a RAS works with for ``source``."""
    if isinstance(source, Partition):
        if overlap is not None and overlap != source.overlap:
            raise ValueError(f"overlap: the partition has overlap {source.overlap}, got "
                             f"overlap={overlap}; grow it with Partition.from_membership")
        if num_parts is not None and num_parts != source.num_parts:
            raise ValueError(f"num_parts: the partition has {source.num_parts} parts, got "
                             f"num_parts={num_parts}")
        return source, None
    if not isinstance(source, Problem):
        raise TypeError(f"problem_or_partition: expected a Problem, a Partition or None, got "
                        f"{type(source).__name__}")
    given = source.partition
    if given is not None and num_parts in (None, given.num_parts):
        if overlap is not None and overlap != given.overlap:
            given = Partition.from_membership(source.A, given.membership, overlap)
        return given, source.coordinates
    if num_parts is None:
        raise ValueError("num_parts: the problem has no partition; pass num_parts (or "
                         "partition it: problem.with_partition(S, overlap))")
    built = make_partition(source, num_parts, 1 if overlap is None else overlap,
                           method=method)
    return built, source.coordinates


class RAS(IterativeSolver, Preconditioner):
    """Restricted additive Schwarz: a preconditioner and a stationary iteration (eqs. 44-48).

    Parameters
    ----------
    problem_or_partition : Problem, Partition or None
        What to decompose. A problem brings its partition (or one is made
        with ``num_parts``) and its coordinates; a partition is used as is.
        ``None`` makes a RAS that takes each problem's partition when it meets
        the problem (:meth:`for_problem`, :meth:`loss`): what a learned
        interface is trained with.
    overlap : int, optional
        ``delta``. Default: the partition's (1 when one is made).
    interface : nn.Module, optional
        Gives the ``L_i``: called on a :class:`Subdomains`, it returns their
        values on the stacked blocks. None: classical RAS (``L_i = 0``).
        :class:`RobinInterface` or :class:`~learnsolve.nn.InterfaceNet`.
    num_parts : int, optional
        ``S``, to partition a problem that has no partition.
    method : str
        The partitioning method then (see :func:`~learnsolve.problems.partition`).
    coarse : None, str or CoarseSpace
        A coarse level (:mod:`learnsolve.solvers.coarse`): None, one-level
        Schwarz; ``"nicolaides"``, one vector per subdomain, the indicator of
        its core; ``"linear"``, also the linear functions of each core (needs
        the problem's coordinates); ``"smoothed"`` and ``"smoothed linear"``,
        those after one damped Jacobi step. A
        :class:`~learnsolve.solvers.coarse.CoarseSpace` module (one with
        learnable smoothing weights, say) is a submodule: its parameters are
        this RAS's. See the Notes.
    maxiter, rtol, atol, callback
        For the stationary iteration ``x <- x + M (b - A x)``, see
        :class:`IterativeSolver`.

    Notes
    -----
    ``setup(A)`` gives ``r -> M r`` (nonsymmetric: for GMRES and the
    stationary iteration); ``setup_symmetric(A)`` gives the symmetric additive
    Schwarz ``sum_i R_i^T (A_i + L_i)^{-1} R_i`` with every node's copies
    summed, which :class:`PCG` uses (symmetric positive definite when
    ``A`` and the ``A_i + L_i`` are). ``A_i + L_i`` is factored once per
    setup (once per matrix and parameters while no gradient is recorded:
    cached), and every application reuses the factors. Differentiable in
    ``A.values`` and the interface's parameters (the backward of a subdomain
    solve is a transposed solve with the same factors).

    With a coarse level, ``Q = Z A_0^{-1} Z^T`` (``A_0 = Z^T A Z``, factored
    with the subdomain blocks) is combined with the one-level ``M_1`` in two
    ways, each for the use it serves:

    - ``setup`` (GMRES, the stationary iteration): multiplicatively, ``M = Q +
      M_1 (I - A Q)``: the coarse correction first, then one-level RAS on the
      residual it leaves. The error propagator is ``I - M A = (I - M_1 A)(I -
      Q A)``, and ``Q A`` is the A-orthogonal projection on the coarse space,
      so the iteration converges wherever one-level RAS does; adding ``Q`` to
      ``M_1`` instead gives an iteration that needs damping to converge.
    - ``setup_symmetric`` (PCG): multiplicatively too, symmetrised, ``M = Q +
      (I - Q A) M_AS (I - A Q)`` (the balancing form: symmetric positive
      definite for SPD ``A`` and ``A_i + L_i``). Two products with ``A`` and
      two coarse solves per application, against one coarse solve for the
      additive ``M_AS + Q``; measured on the 2D Poisson matrix (``100 x 100``,
      overlap 1, PCG to 1e-6), 36 to 196 subdomains take 35 to 42 iterations
      balanced, 50 to 55 additive and 55 to 85 with one level.

    Which loss trains which use: :func:`ras_loss` (eq. 49) the stationary
    iteration ``x <- x + M (b - A x)`` with the restricted ``M``;
    :func:`~learnsolve.solvers.pcg_loss` with ``PCG(M=RAS(...))`` the symmetric
    variant as PCG applies it; :func:`~learnsolve.solvers.gmres_loss` with
    ``GMRES(M=RAS(...))`` the restricted one as GMRES applies it. A
    preconditioner trained for one use need not help another: a Robin
    interface that speeds up the stationary iteration and GMRES slows PCG down.

    Examples
    --------
    >>> import torch
    >>> from learnsolve.problems import poisson_2d
    >>> from learnsolve.solvers import PCG, RAS
    >>> p = poisson_2d(16, dtype=torch.float64).with_partition(4, overlap=2)
    >>> ras = RAS(p)
    >>> b = torch.ones(p.num_nodes, dtype=torch.float64)
    >>> ras(p.A, b).converged, PCG(M=ras, rtol=1e-6)(p.A, b).iterations
    (True, 9)

    With many subdomains, a coarse level keeps the iterations from growing:

    >>> p = poisson_2d(60, dtype=torch.float64).with_partition(196, overlap=1)
    >>> b = torch.ones(p.num_nodes, dtype=torch.float64)
    >>> [PCG(M=RAS(p, coarse=c), rtol=1e-6)(p.A, b).iterations for c in (None, "nicolaides")]
    [66, 26]
    """

    def __init__(self, problem_or_partition=None, overlap: int | None = None,
                 interface: nn.Module | None = None, *, num_parts: int | None = None,
                 method: str = "auto", coarse: str | CoarseSpace | None = None,
                 maxiter: int = 100, rtol: float = 1e-6, atol: float = 0.0, callback=None):
        super().__init__(maxiter, rtol, atol, callback)
        coarse = as_coarse_space(coarse)
        if overlap is not None:
            overlap = check_count(overlap, "overlap", 0)
        if num_parts is not None:
            num_parts = check_count(num_parts, "num_parts")
        if interface is not None and not callable(interface):
            raise TypeError(f"interface: expected an nn.Module (or a callable) giving the "
                            f"L_i, got {type(interface).__name__}")
        self.overlap = overlap
        self.interface = interface
        self.num_parts = num_parts
        self.method = method
        self.coarse = coarse
        self.partition, self.coordinates = (None, None) if problem_or_partition is None else \
            _bind(problem_or_partition, overlap, num_parts, method)
        self._factors = MatrixCache()

    # ------------------------------------------------------------------ binding
    def for_problem(self, problem: Problem) -> "RAS":
        """This RAS (the same interface module, so the same parameters) on ``problem``:
        its partition, or one made with ``num_parts``, and its coordinates."""
        return RAS(problem, self.overlap, self.interface, num_parts=self.num_parts,
                   method=self.method, coarse=self.coarse, maxiter=self.maxiter, rtol=self.rtol,
                   atol=self.atol, callback=self.callback)

    def subdomains(self, A: CSRMatrix) -> Subdomains:
        """The :class:`Subdomains` of ``A`` under this RAS's partition."""
        if self.partition is None:
            raise ValueError("RAS: no partition; build it from a problem or a partition "
                             "(RAS(problem)), or use ras.for_problem(problem)")
        if not isinstance(A, CSRMatrix):
            raise TypeError(f"A: expected a CSRMatrix, got {type(A).__name__}")
        if A.shape != (self.partition.num_nodes,) * 2:
            raise ValueError(f"A: expected shape {(self.partition.num_nodes,) * 2} (the "
                             f"partition's nodes), got {A.shape}")
        if self.partition.device != A.device:  # moved once: its index arrays are cached
            self.partition = self.partition.to(A.device)
        if self.coordinates is not None and (self.coordinates.device, self.coordinates.dtype) \
                != (A.device, A.dtype):
            self.coordinates = self.coordinates.to(device=A.device, dtype=A.dtype)
        return _subdomains(A, self.partition, self.coordinates)

    # ------------------------------------------------------------------ the preconditioner
    def local_matrices(self, A: CSRMatrix) -> CSRMatrix:
        """``diag(A_1 + L_1, ..., A_S + L_S)``: the block-diagonal matrix that is factored."""
        return self._blocks(self.subdomains(A))

    def _blocks(self, sub: Subdomains) -> CSRMatrix:
        values = sub.A.values[sub.local.positions]
        if self.interface is not None:
            values = values + self.interface(sub)
        return CSRMatrix.from_pattern(sub.local.stacked, values)

    def coarse_basis(self, A: CSRMatrix) -> CSRMatrix:
        """``Z``, the coarse space for ``A`` (``n x`` a few columns per subdomain, sparse,
        differentiable)."""
        if self.coarse is None:
            raise ValueError("coarse: this RAS has no coarse level (coarse=None)")
        self.subdomains(A)  # checks A, moves the partition to A's device
        return self.coarse.basis(A, self.partition, self.coordinates)

    def coarse_matrix(self, A: CSRMatrix, Z: CSRMatrix | None = None) -> CSRMatrix:
        """``A_0 = Z^T A Z``, the coarse matrix (square, sparse products,
        differentiable); ``Z`` from :meth:`coarse_basis` unless given."""
        Z = self.coarse_basis(A) if Z is None else Z
        return Z.T @ (A @ Z)

    def _factor(self, A: CSRMatrix) -> tuple[SparseLU, Subdomains, tuple | None]:
        """The factors of the subdomain blocks, the subdomains, and with a coarse level
        ``(Z, the factors of A_0)``."""
        def compute():
            sub = self.subdomains(A)
            try:
                lu = SparseLU(self._blocks(sub))
            except torch.linalg.LinAlgError as error:
                raise torch.linalg.LinAlgError(
                    f"RAS: a subdomain matrix A_i + L_i is singular ({error})") from None
            if self.coarse is None:
                return lu, sub, None
            Z = self.coarse.basis(A, self.partition, self.coordinates)
            try:
                return lu, sub, (Z, SparseLU(self.coarse_matrix(A, Z)))
            except torch.linalg.LinAlgError as error:
                raise torch.linalg.LinAlgError(
                    f"RAS: the coarse matrix Z^T A Z is singular ({error})") from None
        modules = [m for m in (self.interface, self.coarse) if isinstance(m, nn.Module)]
        parameters = tuple(p for m in modules for p in m.parameters())
        recorded = torch.is_grad_enabled() and (
            A.values.requires_grad or any(p.requires_grad for p in parameters))
        if recorded:
            return compute()
        # the interface's and the coarse space's state (parameters, and buffers as a fixed
        # Robin alpha) and the coordinates: an in-place change of any of them refactors
        state = parameters + tuple(b for m in modules for b in m.buffers())
        key = (A.values, self.partition) + state + (
            () if self.coordinates is None else (self.coordinates,))
        return self._factors.get(key, compute)

    def setup(self, A: CSRMatrix) -> PreconditionerOperator:
        """``M`` of restricted additive Schwarz (eq. 47) for ``A``; with a coarse
        level ``M = Q + M_1 (I - A Q)`` (see the Notes). Not symmetric, and without
        a transpose: set it up for ``A^T`` where ``M^T`` is wanted."""
        lu, sub, coarse = self._factor(A)

        def one_level(r: torch.Tensor) -> torch.Tensor:
            return lu.solve(r[sub.nodes])[sub.pick]
        if coarse is None:
            return PreconditionerOperator.like(A, one_level, name="RAS")
        correct = coarse_correction(*coarse)

        def apply(r: torch.Tensor) -> torch.Tensor:
            y = correct(r)
            return y + one_level(r - A @ y)
        return PreconditionerOperator.like(A, apply, name="RAS")

    def setup_symmetric(self, A: CSRMatrix) -> PreconditionerOperator:
        """The map ``r -> M_AS r = sum_i R_i^T (A_i + L_i)^{-1} R_i r`` (additive
        Schwarz); with a coarse level ``M = Q + (I - Q A) M_AS (I - A Q)`` (see the
        Notes): the symmetric preconditioner for conjugate gradients."""
        lu, sub, coarse = self._factor(A)

        def one_level(r: torch.Tensor) -> torch.Tensor:
            return torch.zeros_like(r).index_add(0, sub.nodes, lu.solve(r[sub.nodes]))
        if coarse is None:
            return PreconditionerOperator.like(A, one_level, symmetric=True, name="AS")
        correct = coarse_correction(*coarse)

        def apply(r: torch.Tensor) -> torch.Tensor:
            y = correct(r)
            z = one_level(r - A @ y)
            return y + z - correct(A @ z)
        return PreconditionerOperator.like(A, apply, symmetric=True, name="AS")

    # ------------------------------------------------------------------ the iteration
    def forward(self, A: CSRMatrix, b: torch.Tensor, x0: torch.Tensor | None = None
                ) -> Solution:
        """The stationary iteration ``x <- x + M (b - A x)`` (error propagator ``I - M A``)."""
        A, b, x0 = check_system(A, b, x0)
        apply = self.setup(A)
        return iterate(self, A, b, x0, lambda x, r, state: (x + apply(r), None))

    def error_propagator(self, A: CSRMatrix):
        """The map ``e -> T e = e - M A e`` (eq. 48)."""
        apply = self.setup(A)
        return lambda e: e - apply(A @ e)

    @torch.no_grad()
    def convergence_factor(self, A: CSRMatrix, iterations: int = 200, window: int = 20,
                           seed: int = 0) -> float:
        """The asymptotic convergence factor of the stationary iteration, ``rho(I - M A)``.

        Power iteration on ``T = I - M A`` from a seeded random vector, normalised each
        step; the result is the geometric mean of the growth of the last ``window`` steps
        (a mean over a window, since a complex pair of dominant eigenvalues makes single
        steps oscillate).
        """
        iterations = check_count(iterations, "iterations")
        window = min(check_count(window, "window"), iterations)
        T = self.error_propagator(matrix_of(A))
        generator = torch.Generator().manual_seed(seed)
        e = torch.rand(A.shape[0], generator=generator, dtype=torch.float64)
        e = (e / torch.linalg.vector_norm(e)).to(device=A.device, dtype=A.dtype)
        logs = []
        for _ in range(iterations):
            e = T(e)
            norm = float(torch.linalg.vector_norm(e))
            if norm == 0.0 or not math.isfinite(norm):
                return 0.0 if norm == 0.0 else math.inf
            logs.append(math.log(norm))
            e = e / norm
        return math.exp(math.fsum(logs[-window:]) / window)

    def loss(self, problem, X: torch.Tensor) -> torch.Tensor:
        """The training loss, :func:`ras_loss` (eq. 49)."""
        return ras_loss(self, problem, X)

    def extra_repr(self) -> str:
        bound = "unbound" if self.partition is None else \
            f"{self.partition.num_parts} subdomains, overlap {self.partition.overlap}"
        return f"{bound}, {super().extra_repr()}"


def ras_loss(model: RAS, problem, X: torch.Tensor, *, iterations: int = 4) -> torch.Tensor:
    """``max_j ||T^k x_j||_2`` with ``T = I - M A`` (paper eq. 49).

    A stochastic estimate of ``||T^k||_2``, the error after ``k`` steps of the
    stationary iteration in the worst direction, from the columns ``x_j`` of
    ``X`` (unit vectors; the paper draws their entries uniformly).

    Parameters
    ----------
    model : RAS
        Bound to ``problem`` for this loss with :meth:`RAS.for_problem` (a
        problem brings its own partition).
    problem : Problem
    X : Tensor (n,) or (n, J)
    iterations : int
        ``k``.

    Examples
    --------
    >>> import torch
    >>> from learnsolve.problems import poisson_2d
    >>> from learnsolve.solvers import RAS, RobinInterface, ras_loss
    >>> p = poisson_2d(12, dtype=torch.float64).with_partition(4, overlap=1)
    >>> X = p.random_rhs(8, seed=0, distribution="uniform", normalize=True)
    >>> bool(ras_loss(RAS(interface=RobinInterface(0.5)), p, X) < ras_loss(RAS(), p, X))
    True
    """
    iterations = check_count(iterations, "iterations")
    if not isinstance(problem, Problem):
        raise TypeError(f"problem: expected a Problem (it brings the partition), got "
                        f"{type(problem).__name__}")
    ras = model.for_problem(problem)
    T = ras.error_propagator(problem.A)
    E = X.to(device=problem.device, dtype=problem.dtype)
    for _ in range(iterations):
        E = T(E)
    return torch.linalg.vector_norm(E, dim=0).max()


def best_robin(problems, alphas=None, *, overlap: int | None = None, **options
               ) -> tuple[float, np.ndarray]:
    """The single Robin parameter (:class:`RobinInterface`) with the smallest mean
    convergence factor over ``problems``, by a scan.

    Parameters
    ----------
    problems : sequence of Problem
        Partitioned problems (or with ``num_parts`` in ``options``).
    alphas : array, optional
        The values tried; default 0, 0.05, ..., 0.95.
    overlap, **options
        Passed to :class:`RAS`.

    Returns
    -------
    (alpha, factors)
        The best value and the mean convergence factor of every value tried.

    Examples
    --------
    >>> import torch
    >>> from learnsolve.problems import poisson_2d
    >>> from learnsolve.solvers import best_robin
    >>> p = poisson_2d(12, dtype=torch.float64).with_partition(4, overlap=1)
    >>> alpha, factors = best_robin([p], [0.0, 0.5])
    >>> alpha, bool(factors[1] < factors[0])
    (0.5, True)
    """
    alphas = np.arange(0.0, 0.96, 0.05) if alphas is None else np.asarray(alphas, float)
    if alphas.ndim != 1 or alphas.size == 0 or not np.isfinite(alphas).all():
        raise ValueError("alphas: expected a non-empty 1-D array of finite numbers")
    problems = list(problems)
    if not problems:
        raise ValueError("problems: expected at least one problem")
    factors = np.array([
        np.mean([RAS(p, overlap, RobinInterface(float(alpha)), **options)
                 .convergence_factor(p.A) for p in problems])
        for alpha in alphas])
    return float(alphas[int(np.argmin(factors))]), factors
