"""What a solver makes of the matrix it is given: a CSRMatrix where the entries are
known (scipy and torch sparse matrices are converted once), else a matrix-free
:class:`Operator` (a scipy LinearOperator, a dense tensor, a callable)."""
from __future__ import annotations

from typing import Callable, Union

import numpy as np
import scipy.sparse as sp
import torch
from scipy.sparse.linalg import LinearOperator
from torch.autograd.function import once_differentiable

from ..core import validation as V
from ..core.csr import CSRMatrix

__all__ = ["Apply", "Operator", "SystemMatrix", "as_operator"]

Apply = Callable[[torch.Tensor], torch.Tensor]

#: What a solver takes as ``A`` (see :func:`as_operator`).
SystemMatrix = Union[CSRMatrix, "sp.sparray", "sp.spmatrix", LinearOperator, torch.Tensor, Apply]


class Operator:
    """A square matrix-free operator ``x -> A x`` on tensors: what a solver
    makes of an ``A`` given without its entries (see :func:`as_operator`).

    ``A @ x`` takes ``x`` of shape ``(n,)`` or ``(n, k)`` and checks that the
    product is a tensor shaped like ``x``, of the operator's dtype and on its
    device, and that it keeps ``x``'s graph when ``x`` requires grad (a
    callable that leaves torch would cut the gradient silently).

    Attributes
    ----------
    shape : tuple of int
        ``(n, n)``.
    dtype, device
        Those of the products.
    requires_grad : bool
        Whether the operator holds a tensor that requires grad (a dense
        tensor ``A``); unknown, so False, for a callable.
    name : str
        The argument it was given as, for the error messages.
    """

    def __init__(self, product: Apply, shape: tuple[int, int], dtype: torch.dtype,
                 device: torch.device, *, requires_grad: bool = False, name: str = "A"):
        self._product = product
        self.shape = (int(shape[0]), int(shape[1]))
        self.dtype, self.device = dtype, torch.device(device)
        self.requires_grad = requires_grad
        self.name = name

    def __matmul__(self, x: torch.Tensor) -> torch.Tensor:
        y = self._product(x)
        name = self.name
        if not isinstance(y, torch.Tensor) or y.shape != x.shape:
            got = tuple(y.shape) if isinstance(y, torch.Tensor) else type(y).__name__
            raise ValueError(f"{name}: expected {name} x shaped like x {tuple(x.shape)}, got {got}")
        V.check_same_dtype(name, self, f"{name} x", y)
        V.check_same_device(name, self, f"{name} x", y)
        if torch.is_grad_enabled() and x.requires_grad and not y.requires_grad:
            raise ValueError(f"{name}: expected {name} x to be differentiable in x (x requires "
                             f"grad), got a tensor without a graph: compute {name} x with torch "
                             f"operations, or solve under torch.no_grad()")
        return y

    def __repr__(self) -> str:
        return f"Operator(shape={self.shape}, dtype={self.dtype}, device={self.device})"


class _NumpyProduct(torch.autograd.Function):
    """``A x`` for a scipy LinearOperator ``A``, computed in numpy (``matvec`` for a
    vector, ``matmat`` for a block); the backward is the product with ``A^T``
    (``rmatvec``/``rmatmat``, or ``A`` itself for a symmetric ``A``)."""

    @staticmethod
    def forward(ctx, x, linear_operator, symmetric, name):
        ctx.args = linear_operator, symmetric, name
        return _numpy_product(linear_operator, x, False, name)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        linear_operator, symmetric, name = ctx.args
        return _numpy_product(linear_operator, grad, not symmetric, name), None, None, None


def _numpy_product(linear_operator: LinearOperator, x: torch.Tensor, adjoint: bool,
                   name: str) -> torch.Tensor:
    """``A x`` (``A^T x`` with ``adjoint``) through numpy, in ``x``'s dtype and device."""
    array = x.detach().cpu().numpy()
    if not adjoint:
        y = linear_operator.matmat(array) if x.dim() == 2 else linear_operator.matvec(array)
    else:
        try:
            y = linear_operator.rmatmat(array) if x.dim() == 2 else linear_operator.rmatvec(array)
        except (NotImplementedError, TypeError) as error:
            raise NotImplementedError(
                f"{name}: the gradient through a product with a LinearOperator needs its "
                f"transpose, rmatvec (and rmatmat), which it does not define; solve under "
                f"torch.no_grad() or give {name} an rmatvec") from error
    y = np.ascontiguousarray(y)
    return torch.from_numpy(y.reshape(-1) if x.dim() == 1 else y).to(x.device, x.dtype)


def as_operator(A: SystemMatrix, like, *, name: str = "A", shape: tuple[int, int] | None = None,
                symmetric: bool = False) -> CSRMatrix | Operator:
    """The square operand ``A`` of a solver (or its preconditioner) as the solver uses it.

    Parameters
    ----------
    A : CSRMatrix, scipy sparse matrix or LinearOperator, Tensor or callable
        - a :class:`~learnsolve.CSRMatrix` or an :class:`Operator`: returned as it is;
        - a scipy sparse matrix or array: converted once to a CSRMatrix in
          ``like``'s dtype and on its device (no gradient: it has none);
        - a torch sparse COO or CSR tensor: converted with
          :meth:`CSRMatrix.from_torch`, differentiable in its values;
        - a dense 2-D tensor: an :class:`Operator` ``x -> A @ x``
          (differentiable in ``A`` by autograd);
        - a ``scipy.sparse.linalg.LinearOperator``: an :class:`Operator` whose
          products go through numpy (``matvec``, ``matmat`` for a block) in
          ``like``'s dtype and device; no gradient reaches ``A``, and one
          through ``x`` takes the transpose product (``rmatvec``/``rmatmat``,
          or ``matvec`` itself with ``symmetric``);
        - a callable ``x -> A x``: an :class:`Operator` of size ``like.shape[0]``.
    like : Tensor, CSRMatrix or Operator
        What gives an operator without them its dtype, device and size: the
        right-hand side for ``A``, the matrix for a preconditioner.
    name : str
        The argument, for the error messages.
    shape : tuple of int, optional
        The shape ``A`` must have (by default any square one).
    symmetric : bool
        ``A`` is symmetric (the solver requires it): a LinearOperator's
        transpose product is its product.

    Returns
    -------
    CSRMatrix or Operator
        A CSRMatrix where ``A`` has entries; otherwise a matrix-free
        :class:`Operator`.

    Raises
    ------
    TypeError
        ``A`` of another type, complex, or a tensor not float32/float64.
    ValueError
        Not square (or not of ``shape``), a tensor not 2-D.

    Examples
    --------
    >>> import torch, scipy.sparse as sp
    >>> from learnsolve.solvers.operators import as_operator
    >>> b = torch.ones(3, dtype=torch.float64)
    >>> as_operator(sp.eye_array(3), b)
    CSRMatrix(shape=(3, 3), nnz=3, dtype=torch.float64, device=cpu)
    >>> A = as_operator(lambda x: 2 * x, b)
    >>> A.shape, A @ b
    ((3, 3), tensor([2., 2., 2.], dtype=torch.float64))
    """
    if sp.issparse(A) or isinstance(A, LinearOperator):
        if np.issubdtype(np.dtype(A.dtype), np.complexfloating):
            raise TypeError(f"{name}: expected real entries, got {np.dtype(A.dtype)}")
    if isinstance(A, torch.Tensor):
        if A.dim() != 2:
            raise ValueError(f"{name}: expected a 2-D tensor, got shape {tuple(A.shape)}")
        if A.dtype not in V.FLOAT_DTYPES:
            raise TypeError(f"{name}: expected dtype float32 or float64, got {A.dtype}")
    if sp.issparse(A):
        A = CSRMatrix.from_scipy(A, dtype=like.dtype, device=like.device)
    elif isinstance(A, torch.Tensor) and A.layout != torch.strided:
        if A.layout not in (torch.sparse_coo, torch.sparse_csr):
            raise TypeError(f"{name}: expected a sparse COO or CSR tensor, got layout {A.layout}")
        A = CSRMatrix.from_torch(A)
    if isinstance(A, (CSRMatrix, Operator)):  # already as a solver uses it
        operator = A
    elif isinstance(A, torch.Tensor):
        operator = Operator(A.__matmul__, A.shape, A.dtype, A.device,
                            requires_grad=A.requires_grad, name=name)
    elif isinstance(A, LinearOperator):
        def product(x):
            if torch.is_grad_enabled() and x.requires_grad:
                return _NumpyProduct.apply(x, A, symmetric, name)
            return _numpy_product(A, x, False, name)
        operator = Operator(product, A.shape, like.dtype, like.device, name=name)
    elif callable(A):
        n = like.shape[0]
        operator = Operator(A, (n, n), like.dtype, like.device, name=name)
    else:
        raise TypeError(f"{name}: expected a CSRMatrix, a scipy sparse matrix or LinearOperator, "
                        f"a torch tensor (sparse or dense) or a callable x -> {name} x, got "
                        f"{type(A).__name__}")
    if shape is not None and tuple(operator.shape) != tuple(shape):
        raise ValueError(f"{name}: expected the shape of A {tuple(shape)}, got "
                         f"{tuple(operator.shape)}")
    if operator.shape[0] != operator.shape[1]:
        raise ValueError(f"{name}: expected a square matrix, got shape {tuple(operator.shape)}")
    return operator
