"""The native ops ``torch.ops.learnsolve.*`` as typed functions, with their fakes and gradients.

``ops`` is :mod:`.native`: one typed wrapper per op (``ops.spmv(...)``), the only
way the rest of the package calls the native ops. The schemas and the CPU/CUDA
kernels live in ``cuda/``; importing this module loads them (``learnsolve._C``)
and attaches what PyTorch needs on top: a fake kernel per op (:mod:`._fake`:
shapes for ``torch.compile`` and ``opcheck``) and, for the ops with
floating-point inputs, the vector-Jacobian products of table 1 of the paper
(:mod:`._autograd`, :mod:`._autograd_sptrsv`; the notation is there).
"""
from __future__ import annotations

from . import _autograd_sptrsv, _fake  # register the fakes and the formulas
from . import native as ops
from ._autograd import transpose_arrays
from ._autograd_sptrsv import triangle_mask

del _autograd_sptrsv, _fake

__all__ = ["ops", "transpose_arrays", "triangle_mask"]
