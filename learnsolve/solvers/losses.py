"""Training losses of preconditioners, each ``loss(model, problem, X) -> scalar``.

The model is a preconditioner (a module with ``setup(A)``) or a solver holding
one as ``model.M`` (:class:`~learnsolve.solvers.PCG`,
:class:`~learnsolve.solvers.GMRES`); ``X`` is the block of random vectors the
:class:`~learnsolve.train.Trainer` draws, ``(n,)`` or ``(n, J)``. Which loss
trains what:

=========================  ==============================================  ===========
loss                       estimates                                       needs
=========================  ==============================================  ===========
:func:`pcg_loss`           PCG's weighted residual history (paper eq. 42)  PCG model
:func:`gmres_loss`         GMRES's weighted residual history               GMRES model
:func:`sketched_loss`      ``||M^{-1} - A||_F / ||A||_F`` (NeuralIF)        ``M^{-1}``
:func:`low_frequency_loss` ``||(M^{-1} - A) A^{-1}||_F`` (PreCorrector)     ``M^{-1}``
:func:`inverse_loss`       ``||A M - I||_F``                                any ``M``
=========================  ==============================================  ===========

``M^{-1}``: a preconditioner applied by triangular solves, whose factors give
``M^{-1}`` by products (``setup_inverse(A)``: :class:`IncompleteFactor`,
:class:`IncompleteCholesky`, :class:`IncompleteLU`). All are relative, so that
they are the same for ``A`` and ``c A`` when the preconditioner is
scale-equivariant.
"""
from __future__ import annotations


import torch

from ..core.cache import values_cache
from ..core.csr import CSRMatrix
from ..linalg.direct import splu
from .base import bind_to_problem, matrix_of, preconditioner_of
from .cg import pcg_loss
from .gmres import gmres_loss

__all__ = ["gmres_loss", "inverse_loss", "low_frequency_loss", "pcg_loss", "sketched_loss",
           "exact_solve"]


def _preconditioner(model, problem):
    """The preconditioner of ``model`` (itself, or its ``M``), bound to ``problem``."""
    return bind_to_problem(preconditioner_of(model), problem)


def _inverse(model, problem, A: CSRMatrix, loss: str):
    """``z -> M^{-1} z`` of the model's preconditioner for ``A``."""
    M = _preconditioner(model, problem)
    setup_inverse = getattr(M, "setup_inverse", None)
    if setup_inverse is None:
        raise TypeError(f"model: {loss} compares M^{{-1}} with A, which needs a preconditioner "
                        f"applied by triangular solves (with setup_inverse(A): IncompleteFactor, "
                        f"IncompleteCholesky, IncompleteLU), got {type(M).__name__}; "
                        f"inverse_loss works with any preconditioner")
    return setup_inverse(A)


def _block(X: torch.Tensor) -> torch.Tensor:
    if not isinstance(X, torch.Tensor) or X.dim() not in (1, 2):
        raise ValueError(f"X: expected a tensor of shape (n,) or (n, J), got "
                         f"{getattr(X, 'shape', type(X).__name__)}")
    return X if X.dim() == 2 else X[:, None]


@torch.no_grad()
def exact_solve(A: CSRMatrix, B: torch.Tensor) -> torch.Tensor:
    """``A^{-1} B`` (detached) by a sparse LU of ``A`` (SuperLU) computed once per
    matrix and kept while ``A``'s values tensor lives and is unchanged: over a
    training, each step's solve is two triangular solves, not a factorisation."""
    lu = values_cache(A.values, "splu").get((A.pattern, A.values), lambda: splu(A.detach()))
    return lu.solve(B)


def sketched_loss(model, problem, X: torch.Tensor) -> torch.Tensor:
    """NeuralIF's stochastic Frobenius loss: how far ``M^{-1}`` is from ``A``.

    ``loss = ||(M^{-1} - A) Z||_F / ||A Z||_F`` with ``Z = X``: for Gaussian
    columns, ``E ||(M^{-1} - A) z||^2 = ||M^{-1} - A||_F^2``, so this
    estimates ``||L L^T - A||_F / ||A||_F`` (``||L U - A||_F / ||A||_F``) from
    products alone, no solve (Häusner et al., TMLR 2024). Cheap and robust,
    but blind to which errors CG is slow on: every entry of ``L L^T - A``
    weighs the same.

    Parameters
    ----------
    model : preconditioner with ``setup_inverse``, or a solver with one as ``M``
    problem : Problem or CSRMatrix
    X : Tensor
        ``(n,)`` or ``(n, J)``: the random vectors ``z``.

    Returns
    -------
    Tensor
        A scalar, differentiable in the preconditioner's parameters.

    Examples
    --------
    >>> import torch
    >>> from learnsolve.problems import poisson_2d
    >>> from learnsolve.solvers import IncompleteFactor
    >>> from learnsolve.solvers.losses import sketched_loss
    >>> A = poisson_2d(8, dtype=torch.float64).A
    >>> M = IncompleteFactor(A)
    >>> loss = sketched_loss(M, A, torch.randn(64, 4, dtype=torch.float64))
    >>> loss.backward(); M.values.grad.shape
    torch.Size([176])
    """
    A = matrix_of(problem)
    Z = _block(X)
    AZ = A @ Z
    return (_inverse(model, problem, A, "sketched_loss")(Z) - AZ).norm() / AZ.norm()


def low_frequency_loss(model, problem, X: torch.Tensor) -> torch.Tensor:
    """PreCorrector's loss: ``M^{-1}`` against ``A`` on the smooth vectors ``A^{-1} b``.

    ``loss = ||M^{-1} Y - B||_F / ||B||_F`` with ``B = X`` and ``Y = A^{-1} B``
    (exact solves, :func:`exact_solve`: one sparse LU per matrix, cached).
    Since ``M^{-1} Y - B = (M^{-1} - A) A^{-1} B``, for Gaussian ``B`` it
    estimates ``||(M^{-1} - A) A^{-1}||_F`` (Hutchinson): the error of the
    factor weighted towards the low-frequency eigenvectors of ``A`` (small
    eigenvalues, amplified by ``A^{-1}``), which CG reduces slowest
    (Trifonov et al., 2024).

    Parameters and returns as :func:`sketched_loss`.
    """
    A = matrix_of(problem)
    B = _block(X)
    Y = exact_solve(A, B)
    return (_inverse(model, problem, A, "low_frequency_loss")(Y) - B).norm() / B.norm()


def inverse_loss(model, problem, X: torch.Tensor) -> torch.Tensor:
    """How far ``A M`` is from the identity: ``||A M R - R||_F / ||R||_F``, ``R = X``.

    For Gaussian ``R`` an estimate of ``||A M - I||_F / sqrt(n)``, the
    quantity a right-preconditioned GMRES converges faster the smaller it is;
    it needs only ``M``'s application, so it serves any preconditioner (an
    approximate inverse, an ILU factor, a Schwarz method), at the cost of the
    solves inside ``M``.

    Parameters
    ----------
    model : preconditioner, or a solver with one as ``M``
    problem : Problem or CSRMatrix
    X : Tensor
        ``(n,)`` or ``(n, J)``.

    Examples
    --------
    >>> import torch
    >>> from learnsolve.problems import poisson_2d
    >>> from learnsolve.solvers import IncompleteLU
    >>> from learnsolve.solvers.losses import inverse_loss
    >>> A = poisson_2d(8, dtype=torch.float64).A
    >>> R = torch.randn(64, 4, dtype=torch.float64)
    >>> bool(inverse_loss(IncompleteLU(fill=1), A, R) < inverse_loss(IncompleteLU(), A, R))
    True
    """
    A = matrix_of(problem)
    R = _block(X)
    apply = _preconditioner(model, problem).setup(A)
    return (A @ apply(R) - R).norm() / R.norm()
