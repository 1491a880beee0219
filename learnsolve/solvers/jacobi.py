"""Weighted Jacobi with one weight or a weight per node (paper eqs. 34-36): a solver,
a smoother and a preconditioner."""
from __future__ import annotations

import numbers

import torch

from ..core.csr import CSRMatrix
from .base import (IterativeSolver, Preconditioner, PreconditionerOperator, Solution,
                   check_system, matrix_of)
from .stationary import check_diagonal, iterate

__all__ = ["Jacobi", "jacobi_loss"]


class Jacobi(IterativeSolver, Preconditioner):
    """Weighted Jacobi: ``x <- x + Ω D^{-1} (b - A x)`` with learnable weights ``Ω``.

    One module, three uses:

    - a solver, ``jacobi(A, b, x0=None) -> Solution`` (``maxiter`` iterations
      or until the tolerance is met);
    - a smoother, :meth:`smooth` (a fixed number of sweeps, returns ``x``);
    - a preconditioner, :meth:`setup` (``M = Ω D^{-1}``; symmetric positive
      definite for positive weights and diagonal, so PCG can use it).

    Parameters
    ----------
    omega : float or Tensor
        The weight: a number (one weight for all nodes, the classical method,
        eq. 34) or a 1-D tensor with one weight per node (eq. 35).
    num_nodes : int, optional
        With a number ``omega``: make one weight per node, each starting at
        ``omega``.
    maxiter : int
        Iterations of the solver (default 1, one sweep, as the paper's loss).
    rtol, atol : float
        Tolerance of the solver (see :class:`~learnsolve.solvers.base.IterativeSolver`).
    learnable : bool
        Whether the weights are an ``nn.Parameter`` (default) or a fixed buffer.
    callback : callable, optional
        ``callback(x)`` after each iteration.

    Notes
    -----
    Differentiated by unrolling: gradients reach ``Ω``, the values of ``A``
    (through its diagonal too) and ``b``; memory grows with the iterations.
    The default training loss is :func:`jacobi_loss` (eq. 36).

    Under :func:`torch.compile` the diagonal is not checked for zeros (a read
    on the host): a zero gives an infinite weight, and a PCG solve with it
    the status ``"diverged"``.

    The weights are scale-free: for ``c A`` (``c != 0``) ``D`` becomes
    ``c D``, so ``M(c A) = M(A) / c``; the iterates on ``c A x = b`` are those
    on ``A x = b`` divided by ``c``, with the same residuals, and the same
    ``Ω`` serves every scaling of ``A`` (in PCG too).

    Examples
    --------
    >>> import torch
    >>> from learnsolve.problems import poisson_1d
    >>> from learnsolve.solvers import Jacobi
    >>> p = poisson_1d(16, dtype=torch.float64)
    >>> b = torch.ones(16, dtype=torch.float64)
    >>> solution = Jacobi(omega=2 / 3, maxiter=2000, rtol=1e-6)(p.A, b)
    >>> solution.status, solution.iterations < 2000
    ('converged', True)
    >>> Jacobi(omega=1.0, num_nodes=16).omega.shape
    torch.Size([16])
    """

    def __init__(self, omega: float | torch.Tensor = 2.0 / 3.0, num_nodes: int | None = None, *,
                 maxiter: int = 1, rtol: float = 0.0, atol: float = 0.0, learnable: bool = True,
                 callback=None):
        super().__init__(maxiter, rtol, atol, callback)
        if isinstance(omega, torch.Tensor):
            if num_nodes is not None:
                raise ValueError("num_nodes: expected None when omega is a tensor (its length "
                                 "is the number of nodes)")
            if not omega.is_floating_point() or omega.dim() not in (0, 1):
                raise ValueError(f"omega: expected a float tensor of 0 or 1 dimension, got "
                                 f"{omega.dtype} {tuple(omega.shape)}")
            weights = omega.detach().clone()
        elif isinstance(omega, numbers.Real) and not isinstance(omega, bool):
            if num_nodes is not None and (isinstance(num_nodes, bool) or
                                          not isinstance(num_nodes, int) or num_nodes < 1):
                raise ValueError(f"num_nodes: expected a positive integer, got {num_nodes!r}")
            shape = () if num_nodes is None else (num_nodes,)
            weights = torch.full(shape, float(omega), dtype=torch.get_default_dtype())
        else:
            raise TypeError(f"omega: expected a number or a tensor, got {type(omega).__name__}")
        if learnable:
            self.omega = torch.nn.Parameter(weights)
        else:
            self.register_buffer("omega", weights)

    @property
    def per_node(self) -> bool:
        """Whether there is one weight per node."""
        return self.omega.dim() == 1

    def _scaled_inverse_diagonal(self, A: CSRMatrix) -> torch.Tensor:
        """``Ω D^{-1}`` as a vector of length n, in A's dtype and on its device."""
        n = A.shape[0]
        if A.shape[0] != A.shape[1]:
            raise ValueError(f"A: expected a square matrix, got shape {A.shape}")
        if self.per_node and self.omega.shape[0] != n:
            raise ValueError(f"A: expected {self.omega.shape[0]} rows (one per weight of omega), "
                             f"got {n}")
        omega = self.omega.to(device=A.device, dtype=A.dtype)
        return omega / check_diagonal(A)

    def setup(self, A: CSRMatrix) -> PreconditionerOperator:
        """The preconditioner ``r -> Ω D^{-1} r`` for ``A`` (differentiable in Ω and A)."""
        scale = self._scaled_inverse_diagonal(A)
        return PreconditionerOperator.like(
            A, lambda r: r * (scale if r.dim() == 1 else scale[:, None]), symmetric=True,
            name="Jacobi", diagonal=scale)

    def smooth(self, A: CSRMatrix, b: torch.Tensor, x: torch.Tensor, steps: int = 1
               ) -> torch.Tensor:
        """``steps`` Jacobi sweeps on ``A x = b`` from ``x``; returns the new ``x``."""
        apply = self.setup(A)
        for _ in range(steps):
            x = x + apply(b - A @ x)
        return x

    def forward(self, A: CSRMatrix, b: torch.Tensor, x0: torch.Tensor | None = None
                ) -> Solution:
        """Solve ``A x = b``: ``A`` a CSRMatrix, or a scipy or torch sparse matrix
        (converted once); the diagonal is needed, so not a matrix-free operator."""
        A, b, x0 = check_system(A, b, x0)
        apply = self.setup(A)
        return iterate(self, A, b, x0, lambda x, r, state: (x + apply(r), None))

    def loss(self, problem, X: torch.Tensor) -> torch.Tensor:
        """The default training loss, :func:`jacobi_loss` (paper eq. 36)."""
        return jacobi_loss(self, problem, X)

    def extra_repr(self) -> str:
        weights = f"{self.omega.shape[0]} weights" if self.per_node else \
            f"omega={float(self.omega.detach()):.4g}"
        return f"{weights}, {super().extra_repr()}"


def jacobi_loss(model: Jacobi, problem, X: torch.Tensor, *, iterations: int = 1) -> torch.Tensor:
    """The error in the A-norm after Jacobi sweeps on ``A e = 0`` (paper eq. 36).

    ``e_j = (I - Ω D^{-1} A)^t x_j`` for each column ``x_j`` of ``X`` and
    ``t = iterations`` (the paper: one), and the loss is the mean over the
    columns of ``e_j^T A e_j``. The mean rather than eq. 36's sum: the same
    minimiser, and a step size that does not depend on the number of vectors.
    ``e_j`` does not depend on the scale of ``A``, the loss does: ``c A``
    gives ``c`` times the loss (an energy), with the same minimiser.

    Parameters
    ----------
    model : Jacobi
        Its weights are what the loss is differentiated for.
    problem : Problem or CSRMatrix
        The (symmetric positive definite) matrix ``A``.
    X : Tensor
        Test vectors, ``(n,)`` or ``(n, J)`` (the paper: unit-normal entries).
    iterations : int
        Sweeps ``t``.

    Examples
    --------
    >>> import torch
    >>> from learnsolve.problems import poisson_1d
    >>> from learnsolve.solvers import Jacobi, jacobi_loss
    >>> A = poisson_1d(16, dtype=torch.float64).A
    >>> X = torch.randn(16, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    >>> bool(jacobi_loss(Jacobi(2 / 3), A, X) < jacobi_loss(Jacobi(1.0), A, X))
    True
    """
    A = matrix_of(problem)
    apply = model.setup(A)
    E = X.to(device=A.device, dtype=A.dtype)
    for _ in range(iterations):
        E = E - apply(A @ E)
    energy = (E * (A @ E)).sum(dim=0)
    return energy.mean()
