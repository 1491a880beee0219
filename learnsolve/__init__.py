"""learnsolve: differentiable sparse linear algebra for learning how to solve sparse systems.

The gradient with respect to a sparse matrix keeps the matrix's sparsity: a
:class:`CSRMatrix` carries gradients in its stored values only.
"""
from . import linalg, nn, problems
from .core import (CSRMatrix, add, block_diag, diag, diags, eye, kron, matmul, multiply,
                   sampled_matmul, scale)

__all__ = ["CSRMatrix", "add", "block_diag", "diag", "diags", "eye", "kron", "linalg", "matmul",
           "multiply", "nn", "problems", "sampled_matmul", "scale"]
__version__ = "0.1.0"
