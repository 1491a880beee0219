"""The sparse-autodiff core: CSRMatrix and differentiable sparse operations."""
from .arith import add, matmul, multiply, sampled_matmul, scale
from .construct import (block_diag, diag, diags, eye, from_coo, from_dense, from_scipy,
                        from_torch, kron)
from .csr import CSRMatrix
from .module import CSRBuffer

__all__ = ["CSRBuffer", "CSRMatrix", "add", "block_diag", "diag", "diags", "eye", "from_coo",
           "from_dense", "from_scipy", "from_torch", "kron", "matmul", "multiply", "sampled_matmul",
           "scale"]
