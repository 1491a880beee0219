"""The sparse-autodiff core: CSRMatrix and differentiable sparse operations."""
from .arith import add, matmul, multiply, sampled_matmul, scale
from .construct import (block_diag, diag, diags, eye, from_coo, from_dense, from_scipy,
                        from_torch, kron)
from .csr import CSRMatrix
from .fill import fill_pattern, level_of_fill
from .module import CSRBuffer

__all__ = ["CSRBuffer", "CSRMatrix", "add", "block_diag", "diag", "diags", "eye", "from_coo",
           "fill_pattern", "from_dense", "from_scipy", "from_torch", "kron", "level_of_fill", "matmul", "multiply", "sampled_matmul",
           "scale"]
