"""The sparse-autodiff core: CSRMatrix and differentiable sparse operations.

What is where:

- :mod:`~learnsolve.core.csr`: :class:`CSRMatrix` (index arrays in a shared
  :class:`~learnsolve.core.pattern.Pattern`, differentiable ``values``);
  :mod:`~learnsolve.core.pattern`: the structure and everything cached from it,
  as named methods (``transpose``, ``triangular_levels``, ``level_of_fill``,
  ``ordering``, ...), with ``clear_cache``; :mod:`~learnsolve.core.cache`: what
  depends on a matrix's values (``MatrixCache``, ``values_cache``).
- :mod:`~learnsolve.core.native`: a typed wrapper per native op (the one way
  to call ``torch.ops.learnsolve``, imported elsewhere as ``ops`` from
  :mod:`~learnsolve.core._ops`), with their fake kernels in ``_fake`` and
  gradients in ``_autograd`` / ``_autograd_sptrsv``.
- :mod:`~learnsolve.core.arith`, :mod:`~learnsolve.core.construct`,
  :mod:`~learnsolve.core.fill`: products, sums, constructors, fill patterns and
  orderings; :mod:`~learnsolve.core.module`: a CSRMatrix held by an ``nn.Module``.
- :mod:`~learnsolve.core.validation`: the shared argument checks
  (``check_count``, ``check_dtype``, ...).
"""
from .arith import add, matmul, multiply, sampled_matmul, scale
from .construct import (block_diag, diag, diags, eye, from_coo, from_dense, from_scipy,
                        from_torch, kron)
from .csr import CSRMatrix
from .fill import fill_pattern, level_of_fill
from .module import CSRBuffer

__all__ = ["CSRBuffer", "CSRMatrix", "add", "block_diag", "diag", "diags", "eye", "from_coo",
           "fill_pattern", "from_dense", "from_scipy", "from_torch", "kron", "level_of_fill", "matmul", "multiply", "sampled_matmul",
           "scale"]
