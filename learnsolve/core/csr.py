"""CSRMatrix: a sparse matrix whose values are the only differentiable part."""
from __future__ import annotations

import importlib.abc
import importlib.util
import operator
import sys
import warnings

import torch

from . import validation as V
from ._ops import ops
from .pattern import Pattern

__all__ = ["CSRMatrix"]


class CSRMatrix:
    """A sparse matrix in canonical compressed sparse row form.

    The pattern (``crow_indices``, ``col_indices``, ``shape``) is structure;
    ``values`` are data, and the only part that carries gradients. A gradient
    with respect to a ``CSRMatrix`` is therefore a gradient with respect to its
    stored values, with the matrix's own sparsity. To optimise a sparse matrix,
    make its values an ``nn.Parameter`` and rebuild the matrix with
    :meth:`with_values`.

    Canonical form: the columns of each row are sorted and distinct. Explicit
    zeros are kept (they are part of the pattern).

    Parameters
    ----------
    crow_indices : Tensor
        Row pointers, integer, length ``rows + 1``, ``crow_indices[0] == 0``.
    col_indices : Tensor
        Column of each stored entry, integer, sorted and distinct in each row.
    values : Tensor
        Value of each stored entry, float32 or float64.
    shape : tuple of int
        ``(rows, cols)``.
    check : bool, default True
        Check that the columns of each row are sorted and distinct. ``False``
        skips that, for arrays known to be canonical (a kernel given unsorted
        or duplicate columns computes a wrong answer, but reads nothing out of
        bounds). What keeps the kernels in bounds is checked either way: the
        lengths, the row pointers (from 0 to nnz, non-decreasing) and the
        column range. Both are one native pass over the arrays (about 4 ms
        per 5 million entries on one core).

    Raises
    ------
    TypeError
        An index array that is not integer, values not float32/float64.
    ValueError
        Lengths that do not fit ``shape``, decreasing row pointers, a column
        out of range, unsorted or duplicate columns in a row (with
        ``check``), arrays on different devices or on the meta device.

    Notes
    -----
    Traceable by ``torch.compile(fullgraph=True)``: the products, sums,
    scalings, ``with_values``, ``T`` and the triangular solves trace into one
    graph, Python's operators included (``A @ x``, ``x @ A``, ``A @ B``,
    ``A + B``, ``t * A``: dynamo is taught them when it is imported, see
    ``_trace_operators``). What the operations cache on the pattern (the
    transpose, the pattern of ``A + B`` or ``A @ B``, the triangular levels)
    is best computed before, by a first eager use: computed inside a compiled
    function it makes the next call compile again, and that of ``A + B``
    cannot be computed there (its size is data-dependent).

    Examples
    --------
    >>> import torch, learnsolve
    >>> A = learnsolve.CSRMatrix(torch.tensor([0, 2, 3]), torch.tensor([0, 1, 1]),
    ...                          torch.tensor([2.0, -1.0, 3.0]), (2, 2))
    >>> A @ torch.tensor([1.0, 1.0])
    tensor([1., 3.])
    """

    __slots__ = ("_pattern", "values")
    __array_priority__ = 1000  # numpy defers binary operators to us

    def __init__(self, crow_indices: torch.Tensor, col_indices: torch.Tensor,
                 values: torch.Tensor, shape: tuple[int, int], *, check: bool = True):
        crow_indices = V.check_index_tensor(crow_indices, "crow_indices")
        col_indices = V.check_index_tensor(col_indices, "col_indices")
        values = V.check_values(values)
        shape = V.check_shape(shape)
        V.check_csr_arrays(crow_indices, col_indices, values, shape, canonical=bool(check))
        self._pattern = Pattern(crow_indices, col_indices, shape)
        self.values = values

    def __reduce__(self):
        # The pattern pickles without its caches; matrices that share a
        # pattern share it again after a pickle or deep copy of both.
        return (CSRMatrix.from_pattern, (self._pattern, self.values))

    @classmethod
    def from_pattern(cls, pattern: Pattern, values: torch.Tensor) -> "CSRMatrix":
        """The matrix with structure ``pattern`` (shared, with its caches) and
        ``values`` (one per stored entry, on the pattern's device), without
        re-checking the structure: how a new matrix on a known pattern is made.

        Examples
        --------
        >>> import torch, learnsolve
        >>> A = learnsolve.CSRMatrix.from_dense(torch.eye(2))
        >>> B = learnsolve.CSRMatrix.from_pattern(A.pattern, torch.tensor([2.0, 3.0]))
        >>> B.pattern is A.pattern, B.to_dense().diagonal().tolist()
        (True, [2.0, 3.0])
        """
        if not isinstance(values, torch.Tensor) or values.shape != (pattern.nnz,):
            got = tuple(values.shape) if isinstance(values, torch.Tensor) else \
                type(values).__name__
            raise ValueError(f"values: expected a tensor of shape ({pattern.nnz},) (one per "
                             f"stored entry), got {got}")
        if values.device != pattern.device:
            raise ValueError(f"values: expected device {pattern.device} (the pattern's), got "
                             f"{values.device}")
        self = cls.__new__(cls)
        self._pattern = pattern
        self.values = values
        return self

    @property
    def pattern(self) -> Pattern:
        """The structure (row pointers, column indices, shape) and what is cached on
        it; shared by every matrix made from this one's structure."""
        return self._pattern

    # ------------------------------------------------------------------ properties
    @property
    def crow_indices(self) -> torch.Tensor:
        return self._pattern.crow

    @property
    def col_indices(self) -> torch.Tensor:
        return self._pattern.col

    @property
    def shape(self) -> tuple[int, int]:
        return self._pattern.shape

    @property
    def nnz(self) -> int:
        """Number of stored entries (explicit zeros included)."""
        return self._pattern.nnz

    @property
    def dtype(self) -> torch.dtype:
        return self.values.dtype

    @property
    def device(self) -> torch.device:
        return self.values.device

    @property
    def requires_grad(self) -> bool:
        return self.values.requires_grad

    def requires_grad_(self, requires_grad: bool = True) -> "CSRMatrix":
        """Make the values a leaf that records gradients (in place); returns self."""
        self.values.requires_grad_(requires_grad)
        return self

    def row_indices(self) -> torch.Tensor:
        """The row of every stored entry (int64, length nnz; the COO row array)."""
        return self._pattern.row()

    # ------------------------------------------------------------------ copies
    def with_values(self, values: torch.Tensor) -> "CSRMatrix":
        """The same pattern with other values (differentiable in ``values``).

        Examples
        --------
        >>> import torch, learnsolve
        >>> A = learnsolve.eye(3, dtype=torch.float64)
        >>> w = torch.nn.Parameter(torch.ones(3, dtype=torch.float64))
        >>> (A.with_values(w) @ torch.ones(3, dtype=torch.float64)).sum().backward()
        >>> w.grad
        tensor([1., 1., 1.], dtype=torch.float64)
        """
        values = V.check_values(values)
        if values.shape[0] != self.nnz:
            raise ValueError(f"values: expected length {self.nnz} (the matrix's nnz), "
                             f"got {values.shape[0]}")
        V.check_same_device("the matrix", self.values, "values", values)
        return CSRMatrix.from_pattern(self._pattern, values)

    def detach(self) -> "CSRMatrix":
        return CSRMatrix.from_pattern(self._pattern, self.values.detach())

    def clone(self) -> "CSRMatrix":
        """A copy with its own index arrays and values (differentiable in the values)."""
        pattern = Pattern(self.crow_indices.clone(), self.col_indices.clone(), self.shape)
        return CSRMatrix.from_pattern(pattern, self.values.clone())

    def to(self, *args, **kwargs) -> "CSRMatrix":
        """Move to a device and/or convert the values' dtype, as ``Tensor.to``.

        Examples
        --------
        >>> import torch, learnsolve
        >>> learnsolve.eye(2).to(torch.float64).dtype
        torch.float64
        """
        device = kwargs.pop("device", None)
        dtype = kwargs.pop("dtype", None)
        if kwargs:
            raise TypeError(f"to: unexpected keyword arguments {sorted(kwargs)}")
        for arg in args:
            if isinstance(arg, torch.dtype):
                dtype = arg
            elif isinstance(arg, (torch.device, str, int)):
                device = arg
            else:
                raise TypeError(f"to: expected a device or a dtype, got {type(arg).__name__}")
        if dtype is not None and dtype not in V.FLOAT_DTYPES:
            raise TypeError(f"dtype: expected float32 or float64, got {dtype}")
        values = self.values.to(device=device, dtype=dtype)
        pattern = self._pattern.to(values.device)
        return CSRMatrix.from_pattern(pattern, values)

    def cpu(self) -> "CSRMatrix":
        return self.to("cpu")

    def double(self) -> "CSRMatrix":
        return self.to(torch.float64)

    def float(self) -> "CSRMatrix":
        return self.to(torch.float32)

    # ------------------------------------------------------------------ conversions
    @classmethod
    def from_dense(cls, dense: torch.Tensor) -> "CSRMatrix":
        """The nonzero entries of a dense 2-D tensor (differentiable in ``dense``)."""
        from .construct import from_dense
        return from_dense(dense)

    @classmethod
    def from_scipy(cls, matrix, *, dtype: torch.dtype | None = None,
                   device=None) -> "CSRMatrix":
        """From any scipy.sparse matrix or array (duplicates summed, explicit zeros kept)."""
        from .construct import from_scipy
        return from_scipy(matrix, dtype=dtype, device=device)

    @classmethod
    def from_torch(cls, tensor: torch.Tensor) -> "CSRMatrix":
        """From a torch sparse CSR or COO tensor."""
        from .construct import from_torch
        return from_torch(tensor)

    @classmethod
    def from_coo(cls, row: torch.Tensor, col: torch.Tensor, values: torch.Tensor,
                 shape: tuple[int, int]) -> "CSRMatrix":
        """From coordinates in any order; duplicates are summed (differentiably)."""
        from .construct import from_coo
        return from_coo(row, col, values, shape)

    def to_dense(self) -> torch.Tensor:
        """The dense matrix (differentiable in the values)."""
        out = self.values.new_zeros(self.shape)
        return out.index_put((self.row_indices(), self.col_indices), self.values)

    def to_scipy(self):
        """A ``scipy.sparse.csr_array`` with a copy of the (detached) data."""
        import scipy.sparse as sp
        return sp.csr_array((self.values.detach().cpu().numpy().copy(),
                             self.col_indices.cpu().numpy().copy(),
                             self.crow_indices.cpu().numpy().copy()), shape=self.shape)

    def to_torch(self) -> torch.Tensor:
        """A torch sparse CSR tensor sharing the arrays (differentiable in the values)."""
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
            return torch.sparse_csr_tensor(self.crow_indices, self.col_indices, self.values,
                                           self.shape, check_invariants=False)

    # ------------------------------------------------------------------ algebra
    def __matmul__(self, other):
        return _arith.matmul(self, other)

    def __rmatmul__(self, other):
        return _arith.rmatmul(other, self)

    def __add__(self, other):
        return _arith.add(self, other)

    def __sub__(self, other):
        return _arith.add(self, other, beta=-1.0)

    def __mul__(self, other):
        return _arith.multiply(self, other)

    __rmul__ = __mul__

    def __truediv__(self, other):
        alpha = V.check_scalar(other, "divisor")
        return _arith.scale(self, 1.0 / alpha)

    def __neg__(self):
        return CSRMatrix.from_pattern(self._pattern, -self.values)

    def transpose(self) -> "CSRMatrix":
        """A^T; its pattern is cached, so the values are one gather (differentiable)."""
        pattern, perm = self._pattern.transpose()
        return CSRMatrix.from_pattern(pattern, ops.gather_scaled(self.values, perm))

    @property
    def T(self) -> "CSRMatrix":
        return self.transpose()

    def diagonal(self, k: int = 0) -> torch.Tensor:
        """The k-th diagonal as a dense vector (zeros where none is stored)."""
        return _arith.diagonal(self, k)

    def row_sum(self) -> torch.Tensor:
        """The sum of each row (differentiable)."""
        return self.values.new_zeros(self.shape[0]).index_add(0, self.row_indices(), self.values)

    def tril(self, k: int = 0) -> "CSRMatrix":
        """The entries on and below the k-th diagonal (explicit zeros kept)."""
        return _arith.triangle(self, k, lower=True)

    def triu(self, k: int = 0) -> "CSRMatrix":
        """The entries on and above the k-th diagonal (explicit zeros kept)."""
        return _arith.triangle(self, k, lower=False)

    def __repr__(self) -> str:
        grad = ", requires_grad=True" if self.requires_grad else ""
        return (f"CSRMatrix(shape={self.shape}, nnz={self.nnz}, dtype={self.dtype}, "
                f"device={self.device}{grad})")


# The algebra (arith imports this module: imported once CSRMatrix exists, not at each
# operator call).
from . import arith as _arith  # noqa: E402


# ---------------------------------------------------------------------- torch.compile
#: The binary operators of CSRMatrix: operator -> (the method Python calls when the
#: matrix is the left operand, when it is the right one; None where there is none).
_OPERATORS = {operator.matmul: ("__matmul__", "__rmatmul__"),
              operator.mul: ("__mul__", "__rmul__"),
              operator.add: ("__add__", None),
              operator.sub: ("__sub__", None),
              operator.truediv: ("__truediv__", None)}


def _trace_operators(builtin) -> None:
    """Make dynamo trace an operator with a CSRMatrix operand as Python runs it: by
    the matrix's method (``A @ x`` by ``A.__matmul__(x)``, ``x @ A`` by
    ``A.__rmatmul__(x)``). ``builtin`` is the module
    ``torch._dynamo.variables.builtin``.

    Dynamo (torch 2.13) puts a binary operator with a tensor operand into the
    graph as it is, ``operator.matmul(A, x)``, which fails for an operand that
    is not a tensor ("Failed to convert args/kwargs to proxy"), and it has no
    rule for ``@`` between two Python objects; a call of the method traces.
    This wraps ``BuiltinVariable.call_function``, through which dynamo traces
    every operator, and changes nothing where no operand is a CSRMatrix.
    """
    from torch._dynamo.variables.user_defined import UserDefinedObjectVariable

    call_function = builtin.BuiltinVariable.call_function

    def call_operator(self, tx, args, kwargs):
        methods = _OPERATORS.get(self.fn)
        if methods is not None and len(args) == 2 and not kwargs:
            for (matrix, other), method in zip((args, args[::-1]), methods):
                if (method is not None and isinstance(matrix, UserDefinedObjectVariable)
                        and issubclass(matrix.python_type(), CSRMatrix)):
                    return matrix.call_method(tx, method, [other], {})
        return call_function(self, tx, args, kwargs)

    builtin.BuiltinVariable.call_function = call_operator


class _AfterImport(importlib.abc.MetaPathFinder):
    """An import hook that runs ``hook(module)`` once the module ``name`` has been
    executed, then removes itself: a program that never compiles never imports
    dynamo (about 0.9 s), and one that does is ready before dynamo traces."""

    def __init__(self, name: str, hook):
        self.name, self.hook = name, hook

    def find_spec(self, fullname, path, target=None):
        if fullname != self.name:
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(fullname)
        execute, hook = spec.loader.exec_module, self.hook

        def execute_then_hook(module):
            execute(module)
            hook(module)

        spec.loader.exec_module = execute_then_hook
        return spec


def _install(builtin) -> None:
    """:func:`_trace_operators`, or a warning where this torch's dynamo differs: then
    ``torch.compile`` traces the methods (``A.__matmul__(x)``), not the operators, and
    nothing else changes."""
    try:
        _trace_operators(builtin)
    except (AttributeError, ImportError, TypeError) as error:
        warnings.warn(f"learnsolve: torch.compile cannot be taught CSRMatrix's operators in "
                      f"this torch ({error}); in compiled code call the methods "
                      f"(A.__matmul__(x)) instead of the operators", RuntimeWarning)


if "torch._dynamo.variables.builtin" in sys.modules:
    _install(sys.modules["torch._dynamo.variables.builtin"])
else:
    sys.meta_path.insert(0, _AfterImport("torch._dynamo.variables.builtin", _install))
