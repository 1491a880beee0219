"""Differentiable iterative solvers and preconditioners whose parameters are trained."""
from .base import IterativeSolver, Preconditioner, Solution
from .heavyball import Heavyball, heavyball_loss
from .jacobi import Jacobi, jacobi_loss

__all__ = ["Heavyball", "IterativeSolver", "Jacobi", "Preconditioner", "Solution",
           "heavyball_loss", "jacobi_loss"]
