"""The heavy-ball iteration with learnable step and momentum (paper eqs. 37-40)."""
from __future__ import annotations

import math
import numbers

import torch

from ..core.csr import CSRMatrix
from .base import IterativeSolver, Solution, check_system, matrix_of
from .stationary import iterate

__all__ = ["Heavyball", "heavyball_loss"]


def _scalar(value, name: str) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        if value.numel() != 1 or not value.is_floating_point():
            raise ValueError(f"{name}: expected a float scalar, got {value.dtype} "
                             f"{tuple(value.shape)}")
        return value.detach().reshape(()).clone()
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name}: expected a number, got {type(value).__name__}")
    return torch.tensor(float(value), dtype=torch.get_default_dtype())


class Heavyball(IterativeSolver):
    """Heavy ball: ``x_{k+1} = x_k + α (b - A x_k) + β (x_k - x_{k-1})`` (eq. 37).

    Gradient descent with momentum on ``f(x) = x^T A x / 2 - b^T x`` (eq. 38),
    whose gradient is ``A x - b``: for symmetric positive definite ``A``. The
    first step has no momentum (``x_{-1} = x_0``).

    Parameters
    ----------
    alpha, beta : float or 0-d Tensor
        Step size and momentum; learnable ``nn.Parameter`` s unless
        ``learnable=False``.
    maxiter : int
        Iterations: of a solve, and ``t`` of the training loss (eq. 40; the
        paper uses ``t = 3N/4``).
    rtol, atol : float
        Tolerance of a solve (see :class:`~learnsolve.solvers.base.IterativeSolver`).
    learnable : bool
    callback : callable, optional

    Notes
    -----
    Differentiated by unrolling. For eigenvalues of ``A`` in ``[μ, L]`` the
    classical choice (Polyak) is ``α = 4 / (√L + √μ)^2`` and
    ``β = ((√L - √μ) / (√L + √μ))^2``: :meth:`polyak`.

    ``β`` is scale-free, ``α`` is not: it multiplies a residual, so it has
    the units of ``A^{-1}``. On ``c A`` (``c > 0``) the iterates of ``α / c``
    and ``β`` are those on ``A`` divided by ``c``, with the same residuals,
    and Polyak's ``α`` scales so (the eigenvalues are ``c`` times those of
    ``A``). A trained ``α`` is therefore tied to the scale of the matrices
    it was trained on, and :func:`heavyball_loss` (an energy) scales with
    ``c``. This is eq. 37 as the paper has it, a solver without a
    preconditioner; to make it scale-free, give it the Jacobi-scaled system
    ``D^{-1/2} A D^{-1/2} y = D^{-1/2} b``, ``x = D^{-1/2} y``.

    Examples
    --------
    >>> import torch
    >>> from learnsolve.problems import poisson_1d
    >>> from learnsolve.solvers import Heavyball
    >>> A = poisson_1d(16, dtype=torch.float64).A
    >>> b = torch.ones(16, dtype=torch.float64)
    >>> solution = Heavyball.polyak(0.034, 3.97, maxiter=500, rtol=1e-8)(A, b)
    >>> solution.status, solution.iterations
    ('converged', 115)
    """

    def __init__(self, alpha: float | torch.Tensor, beta: float | torch.Tensor, *,
                 maxiter: int = 12, rtol: float = 0.0, atol: float = 0.0, learnable: bool = True,
                 callback=None):
        super().__init__(maxiter, rtol, atol, callback)
        for name, value in (("alpha", alpha), ("beta", beta)):
            value = _scalar(value, name)
            if learnable:
                setattr(self, name, torch.nn.Parameter(value))
            else:
                self.register_buffer(name, value)

    @classmethod
    def polyak(cls, lambda_min: float, lambda_max: float, **kwargs) -> "Heavyball":
        """The heavy ball with Polyak's optimal parameters for eigenvalues in
        ``[lambda_min, lambda_max]`` (``0 < lambda_min <= lambda_max``)."""
        if not 0 < lambda_min <= lambda_max:
            raise ValueError(f"lambda_min, lambda_max: expected 0 < lambda_min <= lambda_max, "
                             f"got {lambda_min}, {lambda_max}")
        lo, hi = math.sqrt(lambda_min), math.sqrt(lambda_max)
        return cls(4.0 / (hi + lo) ** 2, ((hi - lo) / (hi + lo)) ** 2, **kwargs)

    def _parameters_for(self, A: CSRMatrix) -> tuple[torch.Tensor, torch.Tensor]:
        return (self.alpha.to(device=A.device, dtype=A.dtype),
                self.beta.to(device=A.device, dtype=A.dtype))

    def forward(self, A: CSRMatrix, b: torch.Tensor, x0: torch.Tensor | None = None
                ) -> Solution:
        """Solve ``A x = b``: ``A`` as :func:`~learnsolve.solvers.base.check_system`
        takes it for a solver of products only (a matrix, or matrix-free)."""
        A, b, x0 = check_system(A, b, x0, matrix_free=True)
        alpha, beta = self._parameters_for(A)

        def step(x, r, previous):
            momentum = 0.0 if previous is None else beta * (x - previous)
            return x + alpha * r + momentum, x

        return iterate(self, A, b, x0, step)

    def loss(self, problem, X: torch.Tensor) -> torch.Tensor:
        """The default training loss, :func:`heavyball_loss` (paper eq. 40)."""
        return heavyball_loss(self, problem, X)

    def extra_repr(self) -> str:
        return (f"alpha={float(self.alpha.detach()):.4g}, beta={float(self.beta.detach()):.4g}, "
                f"{super().extra_repr()}")


def heavyball_loss(model: Heavyball, problem, X: torch.Tensor, *,
                   iterations: int | None = None) -> torch.Tensor:
    """The error in the A-norm after ``t`` heavy-ball iterations on ``A e = 0`` (eq. 40).

    ``e_j = h_t(x_j, 0; α, β)`` for each column ``x_j`` of ``X``, and the loss
    is the mean over the columns of ``e_j^T A e_j`` (eq. 40 sums them: the
    same minimiser). ``t = iterations``, default ``model.maxiter``.

    Examples
    --------
    >>> import torch
    >>> from learnsolve.problems import poisson_1d
    >>> from learnsolve.solvers import Heavyball, heavyball_loss
    >>> A = poisson_1d(16, dtype=torch.float64).A
    >>> X = torch.randn(16, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    >>> bool(heavyball_loss(Heavyball(0.4, 0.5), A, X) < (X * (A @ X)).sum(0).mean())
    True
    """
    A = matrix_of(problem)
    t = model.maxiter if iterations is None else iterations
    alpha, beta = model._parameters_for(A)
    E = X.to(device=A.device, dtype=A.dtype)
    previous = E
    for _ in range(t):
        E, previous = E - alpha * (A @ E) + beta * (E - previous), E
    return (E * (A @ E)).sum(dim=0).mean()
