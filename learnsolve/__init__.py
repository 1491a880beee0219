"""learnsolve: differentiable sparse linear algebra for learning how to solve sparse systems.

The gradient with respect to a sparse matrix keeps the matrix's sparsity: a
:class:`CSRMatrix` carries gradients in its stored values only. On that core:
sparse solves (:mod:`learnsolve.linalg`), problem generators
(:mod:`learnsolve.problems`), learned solvers and preconditioners
(:mod:`learnsolve.solvers`), graph layers (:mod:`learnsolve.nn`) and the
:class:`Trainer` with its callbacks (:mod:`learnsolve.train`).
"""
from . import linalg, nn, problems, solvers, train
from .core import (CSRBuffer, CSRMatrix, add, block_diag, diag, diags, eye, kron, matmul,
                   multiply, sampled_matmul, scale)
from .train import Trainer

__all__ = ["CSRBuffer", "CSRMatrix", "Trainer", "add", "block_diag", "diag", "diags", "eye",
           "kron", "linalg", "matmul", "multiply", "nn", "problems", "sampled_matmul", "scale",
           "solvers", "train"]
__version__ = "0.1.0"
