"""Differentiable iterative solvers and preconditioners whose parameters are trained.

Solvers (``solver(A, b, x0=None) -> Solution``): :class:`Jacobi` (one weight
or one per node, paper eq. 35), :class:`Heavyball` (eq. 37),
:class:`PCG` (preconditioned conjugate gradients, differentiated by
unrolling, with checkpoints, or implicitly) and :class:`GMRES` (unrolled or
implicit). Preconditioners derive from :class:`Preconditioner`: ``setup(A)``
returns a :class:`PreconditionerOperator` (``M @ r``, ``symmetric``,
``transpose()`` where it exists), ``setup_symmetric(A)`` the variant CG
needs, ``for_problem(problem)`` binds what a problem carries. The learned incomplete factorisation
:class:`IncompleteFactor` (``M = (L L^T)^{-1}`` or ``(L U)^{-1}``, applied by
triangular solves, started from IC(k) / ILU(k)), the paper's learned
approximate inverses :class:`LowerFactor` (``M = L L^T``, section 4.3) and
:class:`SPAI` (section 4.6), and the fixed baselines :class:`Jacobi`,
:class:`IncompleteCholesky` (IC(k)), :class:`IncompleteLU` (ILU(k)),
:class:`ClassicalSPAI` and :class:`AMG` (pyamg). The paper's losses, each a model's default training
loss: :func:`jacobi_loss` (eq. 36), :func:`heavyball_loss` (eq. 40),
:func:`pcg_loss` (eq. 42) and :func:`spai_loss` (eq. 50); for factors also
:func:`sketched_loss` (NeuralIF), :func:`low_frequency_loss` (PreCorrector)
and :func:`inverse_loss` (see :mod:`learnsolve.solvers.losses`). Domain decomposition: :class:`RAS` (restricted
additive Schwarz, section 4.5: a preconditioner, with a symmetric additive
variant for PCG, and a stationary iteration) with a :class:`RobinInterface` or
a learned :class:`~learnsolve.nn.InterfaceNet`, trained with :func:`ras_loss`
(eq. 49), or for the Krylov method that uses it with :func:`pcg_loss` and
:func:`gmres_loss`; ``coarse="nicolaides"`` adds a coarse level. :class:`GMRES`
for nonsymmetric preconditioners.
"""
from .amg import AMG
from .base import (DeferredSolution, IterativeSolver, Preconditioner, PreconditionerOperator,
                   Solution)
from .cg import PCG, check_spd, pcg_loss
from .gmres import GMRES, gmres_loss
from .factor import LowerFactor
from .incomplete import IncompleteCholesky, IncompleteFactor, IncompleteLU
from .heavyball import Heavyball, heavyball_loss
from .jacobi import Jacobi, jacobi_loss
from .losses import inverse_loss, low_frequency_loss, sketched_loss
from .neural import NeuralFactor
from .schwarz import RAS, RobinInterface, Subdomains, best_robin, ras_loss
from .spai import SPAI, ClassicalSPAI, spai_classical, spai_loss

__all__ = ["AMG", "ClassicalSPAI", "DeferredSolution", "GMRES", "Heavyball", "IncompleteCholesky", "IncompleteFactor",
           "IncompleteLU", "IterativeSolver", "Jacobi",
           "LowerFactor", "NeuralFactor", "PCG", "Preconditioner", "PreconditionerOperator", "RAS", "RobinInterface", "SPAI", "Solution",
           "Subdomains", "best_robin", "check_spd", "gmres_loss", "heavyball_loss", "inverse_loss", "jacobi_loss", "low_frequency_loss",
           "pcg_loss", "ras_loss", "sketched_loss", "spai_classical", "spai_loss"]
