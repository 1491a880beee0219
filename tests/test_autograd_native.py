"""The autograd kernels written in C++ (cuda/autograd/): the products spmv and spmm
(product.cpp), the triangular solve sptrsv (sptrsv.cpp), the sum csr_add_values
(add.cpp) and the SpGEMM spgemm_numeric (spgemm.cpp).

Gradients and double backward of y = op(A) x, x = op(T)^{-1} b, alpha A + beta B
and A B for every combination of inputs requiring grad, transposed or not, with
and without the cached transpose arrays, on the awkward patterns; that the kernels
registered are the C++ ones; that a backward computes only the gradients asked for
(which ops run, seen by a dispatch mode); and that only what it reads is saved.
"""
from __future__ import annotations

import gc
import re
import weakref

import numpy as np
import pytest
import scipy.sparse as sp
import torch
import torch.autograd.forward_ad as fwAD
from torch.autograd import gradcheck, gradgradcheck
from torch.utils._python_dispatch import TorchDispatchMode

import learnsolve as ls
from cases import make, randn
from learnsolve.core._ops import ops
from learnsolve.linalg.triangular import triangular_levels

PRODUCTS = ("spmv", "spmm")
# which inputs require grad: (values, the dense operand: x of a product, b of a solve)
REQUIRES = {"values": (True, False), "x": (False, True), "both": (True, True)}
CASES = ["square", "wide", "tall", "empty_rows_cols", "nnz0", "no_rows", "no_cols"]


def _operands(case, product, transpose, cached, device="cpu", k=3):
    """(crow, col, values, x, t_crow, t_col, t_perm) of op(A) x, float64."""
    S, A = make(case, torch.float64, device)
    rows = A.shape[0] if transpose else A.shape[1]
    x = randn(rows, *((k,) if product == "spmm" else ()), device=device)
    transposed = A.pattern.transpose_arrays() if cached or transpose else (None,) * 3
    return A.crow_indices, A.pattern.kernel_col(), A.values.clone(), x, *transposed


def _function(product, operands, requires, transpose):
    """A function of the inputs that require grad, and those inputs."""
    crow, col, values, x, *transposed = operands
    need_values, need_x = REQUIRES[requires]
    op = getattr(ops, product)

    def f(*inputs):
        it = iter(inputs)
        v = next(it) if need_values else values
        u = next(it) if need_x else x
        return op(crow, col, v, u, *transposed, transpose)

    inputs = tuple(t.clone().requires_grad_() for t, need in ((values, need_values),
                                                             (x, need_x)) if need)
    return f, inputs


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("product", PRODUCTS)
@pytest.mark.parametrize("requires", REQUIRES)
@pytest.mark.parametrize("transpose, cached", [(False, False), (False, True), (True, True)],
                         ids=["A", "A-cached-transpose", "A^T"])
def test_gradcheck_and_gradgradcheck(case, product, requires, transpose, cached, device):
    operands = _operands(case, product, transpose, cached, device)
    f, inputs = _function(product, operands, requires, transpose)
    assert gradcheck(f, inputs)
    assert gradgradcheck(f, inputs)


@pytest.mark.parametrize("product", PRODUCTS)
@pytest.mark.parametrize("transpose", [False, True])
def test_matches_dense_gradients(product, transpose):
    S, A = make("empty_rows_cols", torch.float64)
    D = torch.tensor(S.toarray()).requires_grad_()
    col = A.pattern.kernel_col()
    values = A.values.clone().requires_grad_()
    x = randn(A.shape[0] if transpose else A.shape[1],
              *((2,) if product == "spmm" else ()), requires_grad=True)
    y = getattr(ops, product)(A.crow_indices, col, values, x, *A.pattern.transpose_arrays(),
                              transpose)
    y_dense = (D.T if transpose else D) @ x
    torch.testing.assert_close(y, y_dense)
    g = torch.randn_like(y)
    grad_values, grad_x = torch.autograd.grad(y, (values, x), g)
    dense_values, dense_x = torch.autograd.grad(y_dense, (D, x), g)
    row = A.row_indices()
    torch.testing.assert_close(grad_values, dense_values[row, A.col_indices])
    torch.testing.assert_close(grad_x, dense_x)


@pytest.mark.parametrize("op", [*PRODUCTS, "sptrsv", "csr_add_values", "spgemm_numeric",
                                "sampled_matmul", "gather_scaled", "scatter_add_scaled"])
def test_the_autograd_kernel_is_the_cpp_one(op):
    """Registered in C++ at the Autograd key, not by torch.library.register_autograd
    (whose kernels the dispatcher lists as registered in torch/library.py)."""
    name = f"learnsolve::{op}"
    assert torch._C._dispatch_has_kernel_for_dispatch_key(name, "Autograd")
    autograd = [line for line in torch._C._dispatch_dump(name).splitlines()
                if line.startswith("Autograd")]
    assert len(autograd) == 1
    assert re.search(r"cuda/autograd/\w+\.cpp", autograd[0]), autograd[0]
    assert "library.py" not in autograd[0]


def test_no_graph_without_grad():
    crow, col, values, x, *transposed = _operands("square", "spmv", False, True)
    assert ops.spmv(crow, col, values, x, *transposed).grad_fn is None
    values.requires_grad_()
    with torch.no_grad():
        y = ops.spmv(crow, col, values, x, *transposed)
    assert y.grad_fn is None and not y.requires_grad
    y = ops.spmv(crow, col, values, x, *transposed)
    assert y.requires_grad and y.grad_fn is not None


def test_forward_mode_is_refused_not_dropped():
    """No jvp: a tangent raises instead of being lost, with or without grad mode."""
    crow, col, values, x, *transposed = _operands("square", "spmv", False, True)
    with fwAD.dual_level():
        dual = fwAD.make_dual(x, torch.ones_like(x))
        with pytest.raises(RuntimeError, match="jvp"):
            ops.spmv(crow, col, values, dual, *transposed)
        with torch.no_grad(), pytest.raises(RuntimeError, match="jvp"):
            ops.spmv(crow, col, values, dual, *transposed)


class _LearnsolveOps(TorchDispatchMode):
    """Records the learnsolve ops that run (below autograd) while active."""

    def __init__(self):
        super().__init__()
        self.names = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func.namespace == "learnsolve":
            self.names.append(func._opname)
        return func(*args, **(kwargs or {}))


def _backward_ops(product, transpose, cached, requires, wrt, create_graph=False):
    """The learnsolve ops that run in the backward of op(A) x, for the inputs in
    ``requires`` requiring grad and the gradient taken with respect to ``wrt``."""
    crow, col, values, x, *transposed = _operands("square", product, transpose, cached)
    values.requires_grad_("values" in requires)
    x.requires_grad_("x" in requires)
    y = getattr(ops, product)(crow, col, values, x, *transposed, transpose)
    inputs = tuple(t for name, t in (("values", values), ("x", x)) if name in wrt)
    with _LearnsolveOps() as mode:
        grads = torch.autograd.grad(y, inputs, torch.ones_like(y), create_graph=create_graph)
    assert all(g is not None for g in grads)
    return sorted(mode.names)


@pytest.mark.parametrize("create_graph", [False, True])
def test_only_the_gradients_needed_are_computed(create_graph):
    def run(*args):
        return _backward_ops(*args, create_graph=create_graph)

    # spmv, A x: both at once in the fused pass; each alone, its own op
    assert run("spmv", False, True, ("values", "x"), ("values", "x")) == ["spmv_backward"]
    assert run("spmv", False, True, ("values",), ("values",)) == ["sampled_matmul"]
    assert run("spmv", False, True, ("x",), ("x",)) == ["spmv"]
    # both require grad, but the gradient of one only is asked for (needs_input_grad)
    assert run("spmv", False, True, ("values", "x"), ("values",)) == ["sampled_matmul"]
    assert run("spmv", False, True, ("values", "x"), ("x",)) == ["spmv"]
    # no cached transpose: computed for d x only
    assert run("spmv", False, False, ("x",), ("x",)) == ["spmv", "transpose"]
    assert run("spmv", False, False, ("values",), ("values",)) == ["sampled_matmul"]
    # A^T x, and the products with a matrix
    assert run("spmv", True, True, ("values", "x"), ("values", "x")) == ["sampled_matmul",
                                                                          "spmv"]
    assert run("spmm", False, True, ("values", "x"), ("values", "x")) == ["sampled_matmul",
                                                                          "spmm"]
    assert run("spmm", True, True, ("values",), ("values",)) == ["sampled_matmul"]
    assert run("spmm", True, True, ("values", "x"), ("x",)) == ["spmm"]


def test_only_what_the_backward_reads_is_saved():
    """d x = op(A)^T g reads A's values but not x; d values reads x but not A's values.
    What is saved may not change in place before the backward; the rest may."""
    crow, col, values, x, *transposed = _operands("square", "spmv", False, True)
    for wanted in ("x", "values"):      # the gradient asked for; the other operand is read
        operands = {"values": values, "x": x}
        leaf = operands[wanted] = operands[wanted].clone().requires_grad_()
        read = operands["values" if wanted == "x" else "x"]
        y = ops.spmv(crow, col, operands["values"], operands["x"], *transposed)
        with torch.no_grad():
            leaf.add_(1.0)                  # not saved: may change
        assert torch.autograd.grad(y.sum(), leaf)[0] is not None
        y = ops.spmv(crow, col, operands["values"], operands["x"], *transposed)
        read.add_(1.0)                      # saved: may not
        with pytest.raises(RuntimeError, match="modified by an inplace operation"):
            torch.autograd.grad(y.sum(), leaf)


# ------------------------------------------------------------------ triangular solve

def _solve_matrix(n=9, seed=4, device="cpu"):
    """A random matrix with entries in both triangles and a dominant diagonal."""
    rng = np.random.default_rng(seed)
    S = sp.random_array((n, n), density=0.35, format="csr", rng=rng)
    S = sp.csr_array(S + sp.diags_array(rng.uniform(2.0, 3.0, n) * (1 + abs(S).sum(axis=1))))
    S.sort_indices()
    return ls.CSRMatrix.from_scipy(S, device=device)


def _solve_operands(A, lower, cached, transpose):
    transposed = A.pattern.transpose_arrays() if cached or transpose else (None,) * 3
    return (A.crow_indices, A.col_indices, *triangular_levels(A.pattern, lower)), transposed


def _solve_function(A, lower, unit, transpose, cached, requires, b):
    """A function of the inputs of x = op(T)^{-1} b that require grad, and those inputs."""
    (crow, col, *levels), transposed = _solve_operands(A, lower, cached, transpose)
    need_values, need_b = REQUIRES[requires]

    def f(*inputs):
        it = iter(inputs)
        v = next(it) if need_values else A.values
        u = next(it) if need_b else b
        return ops.sptrsv(crow, col, v, u, *levels, lower, unit, *transposed, transpose)

    inputs = tuple(t.clone().requires_grad_() for t, need in ((A.values, need_values),
                                                             (b, need_b)) if need)
    return f, inputs


@pytest.mark.parametrize("requires", REQUIRES)
@pytest.mark.parametrize("lower", [True, False], ids=["lower", "upper"])
@pytest.mark.parametrize("unit", [False, True], ids=["", "unit"])
@pytest.mark.parametrize("transpose, cached", [(False, False), (False, True), (True, True)],
                         ids=["T", "T-cached-transpose", "T^T"])
@pytest.mark.parametrize("columns", [(), (2,)], ids=["vector", "matrix"])
def test_sptrsv_gradcheck_and_gradgradcheck(requires, lower, unit, transpose, cached, columns,
                                            device):
    A = _solve_matrix(device=device)
    b = randn(A.shape[0], *columns, device=device)
    f, inputs = _solve_function(A, lower, unit, transpose, cached, requires, b)
    assert gradcheck(f, inputs)
    assert gradgradcheck(f, inputs)


@pytest.mark.parametrize("requires", REQUIRES)
def test_sptrsv_empty_matrix(requires):
    A = ls.CSRMatrix.from_scipy(sp.csr_array((0, 0)))
    f, inputs = _solve_function(A, True, False, False, False, requires,
                                torch.zeros(0, dtype=torch.float64))
    x = f(*inputs)
    assert x.shape == (0,) and x.requires_grad
    grads = torch.autograd.grad(x.sum(), inputs)
    assert [g.shape for g in grads] == [t.shape for t in inputs]


def _solve_backward_ops(requires, wrt, create_graph=False, cached=True):
    A = _solve_matrix()
    b = randn(A.shape[0])
    (crow, col, *levels), transposed = _solve_operands(A, True, cached, False)
    values = A.values.clone().requires_grad_("values" in requires)
    b.requires_grad_("b" in requires)
    x = ops.sptrsv(crow, col, values, b, *levels, True, False, *transposed, False)
    inputs = tuple(t for name, t in (("values", values), ("b", b)) if name in wrt)
    with _LearnsolveOps() as mode:
        grads = torch.autograd.grad(x, inputs, torch.ones_like(x), create_graph=create_graph)
    assert all(g is not None for g in grads)
    return sorted(mode.names)


def test_sptrsv_only_the_gradients_needed_are_computed():
    run = _solve_backward_ops
    # without a graph of the backward: both in one fused call; d b alone, the solve only
    assert run(("values", "b"), ("values", "b")) == ["sptrsv_backward"]
    assert run(("values",), ("values",)) == ["sptrsv_backward"]
    assert run(("b",), ("b",)) == ["sptrsv"]
    assert run(("values", "b"), ("b",)) == ["sptrsv"]
    assert run(("b",), ("b",), cached=False) == ["sptrsv", "transpose"]
    # with one (double backward): differentiable ops, the sampled product for d values only
    assert run(("values", "b"), ("values", "b"), True) == ["sampled_matmul", "sptrsv"]
    assert run(("values", "b"), ("b",), True) == ["sptrsv"]


# ------------------------------------------------------------------ alpha A + beta B, and A B

ADD_INPUTS = ("values_a", "values_b", "alpha", "beta")
ADD_REQUIRES = [(name,) for name in ADD_INPUTS] + [("values_a", "beta"), ADD_INPUTS]
SPGEMM_REQUIRES = [("values_a",), ("values_b",), ("values_a", "values_b")]


def _add_operands(case="square", device="cpu"):
    """{values_a, map_a, values_b, map_b, nnz, alpha, beta} of alpha A + beta B, A and B
    of different patterns (entries in A only, in B only, in both), float64."""
    A, B = make(case, device=device)[1], make(case, device=device, seed=1)[1]
    union, map_a, map_b = A.pattern.union(B.pattern)
    scalar = lambda x: torch.tensor(x, dtype=torch.float64, device=device)  # noqa: E731
    return {"values_a": A.values.clone(), "map_a": map_a, "values_b": B.values.clone(),
            "map_b": map_b, "nnz": union.nnz, "alpha": scalar(0.7), "beta": scalar(-1.3)}


def _spgemm_operands(pair=("square", "square"), device="cpu"):
    """{crow_a, ..., col_c, ncols} of C = A B, float64; B of the case ``pair[1]``, or
    where None, the transpose of another matrix of A's case."""
    A, B = make(pair[0], device=device)[1], make(pair[1] or pair[0], device=device, seed=1)[1]
    B = B if pair[1] else B.T
    C = A.pattern.product(B.pattern)
    return {"crow_a": A.crow_indices, "col_a": A.col_indices, "values_a": A.values.clone(),
            "crow_b": B.crow_indices, "col_b": B.col_indices, "values_b": B.values.clone(),
            "crow_c": C.crow, "col_c": C.col, "ncols": B.shape[1]}


def _call(op, operands, requires):
    """A function of the operands named in ``requires``, and those operands (leaves)."""
    def f(*inputs):
        return getattr(ops, op)(**{**operands, **dict(zip(requires, inputs))})

    return f, tuple(operands[name].clone().requires_grad_() for name in requires)


@pytest.mark.parametrize("case", ["square", "empty_rows_cols", "nnz0"])
@pytest.mark.parametrize("requires", ADD_REQUIRES, ids="+".join)
def test_add_gradcheck_and_gradgradcheck(case, requires, device):
    f, inputs = _call("csr_add_values", _add_operands(case, device), requires)
    assert gradcheck(f, inputs)
    assert gradgradcheck(f, inputs)


@pytest.mark.parametrize("pair", [("square", "square"), ("wide", "tall"), ("tall", "wide"),
                                  ("empty_rows_cols", None), ("nnz0", None)],
                         ids=lambda pair: f"{pair[0]}x{pair[1] or 'T'}")
@pytest.mark.parametrize("requires", SPGEMM_REQUIRES, ids="+".join)
def test_spgemm_gradcheck_and_gradgradcheck(pair, requires, device):
    f, inputs = _call("spgemm_numeric", _spgemm_operands(pair, device), requires)
    assert gradcheck(f, inputs)
    assert gradgradcheck(f, inputs)


def test_spgemm_of_one_leaf_with_itself():
    """C = A A with A's values one leaf: the gradients as A and as B summed."""
    A = make("square")[1]
    C = A.pattern.product(A.pattern)

    def f(values):
        return ops.spgemm_numeric(A.crow_indices, A.col_indices, values, A.crow_indices,
                                  A.col_indices, values, C.crow, C.col, A.shape[1])

    values = A.values.clone().requires_grad_()
    assert gradcheck(f, (values,))
    assert gradgradcheck(f, (values,))


@pytest.mark.parametrize("op, operands, requires", [
    ("csr_add_values", _add_operands, ("alpha",)),
    ("csr_add_values", _add_operands, ("beta",)),
    ("spgemm_numeric", _spgemm_operands, ("values_b",))])
def test_add_and_spgemm_graph_only_where_needed(op, operands, requires):
    """A graph wherever one differentiable input requires grad (a scale alone
    included), none without grad mode."""
    f, inputs = _call(op, operands(), requires)
    out = f(*inputs)
    assert out.requires_grad and out.grad_fn is not None
    with torch.no_grad():
        out = f(*inputs)
    assert out.grad_fn is None and not out.requires_grad
    assert f(*(t.detach() for t in inputs)).grad_fn is None


@pytest.mark.parametrize("op, operands, tangent_of", [
    ("csr_add_values", _add_operands, "alpha"), ("spgemm_numeric", _spgemm_operands, "values_b")])
def test_add_and_spgemm_refuse_forward_mode(op, operands, tangent_of):
    operands = operands()
    with fwAD.dual_level():
        t = operands[tangent_of]
        operands[tangent_of] = fwAD.make_dual(t, torch.ones_like(t))
        with pytest.raises(RuntimeError, match="jvp"):
            getattr(ops, op)(**operands)


def _ops_backward(op, operands, requires, wrt, create_graph):
    """The learnsolve ops that run in the backward of ``op``, for the operands in
    ``requires`` requiring grad and the gradient taken with respect to ``wrt``."""
    f, inputs = _call(op, operands, requires)
    out = f(*inputs)
    with _LearnsolveOps() as mode:
        grads = torch.autograd.grad(out, tuple(inputs[requires.index(name)] for name in wrt),
                                    torch.ones_like(out), create_graph=create_graph)
    assert all(g is not None for g in grads)
    return sorted(mode.names)


@pytest.mark.parametrize("create_graph", [False, True])
def test_add_and_spgemm_compute_only_the_gradients_needed(create_graph):
    def add(wrt, requires=ADD_INPUTS):
        return _ops_backward("csr_add_values", _add_operands(), requires, wrt, create_graph)

    def spgemm(wrt, requires=("values_a", "values_b")):
        return _ops_backward("spgemm_numeric", _spgemm_operands(), requires, wrt, create_graph)

    # one gather per gradient asked for (d scale: <G[map], values>, unscaled)
    assert add(ADD_INPUTS) == ["gather_scaled"] * 4
    assert add(("values_a",)) == ["gather_scaled"]
    assert add(("beta",)) == ["gather_scaled"]
    assert add(("values_b",), requires=("values_b",)) == ["gather_scaled"]
    assert spgemm(("values_a", "values_b")) == ["spgemm_grad_b", "spgemm_masked"]
    assert spgemm(("values_a",)) == ["spgemm_masked"]
    assert spgemm(("values_b",)) == ["spgemm_grad_b"]
    assert spgemm(("values_b",), requires=("values_b",)) == ["spgemm_grad_b"]


# ------------------------------------------------------------------ sampled product, moves

def _sampled_operands(cached, columns=3, case="wide", device="cpu"):
    """{crow, col, x, y, t_crow, t_col, t_perm} of (X Y^T) ⊙ mask(A), float64; vectors
    where ``columns`` is None."""
    S, A = make(case, torch.float64, device)
    shape = () if columns is None else (columns,)
    transposed = A.pattern.transpose_arrays() if cached else (None,) * 3
    return dict(zip(("crow", "col", "x", "y", "t_crow", "t_col", "t_perm"),
                    (A.crow_indices, A.pattern.kernel_col(), randn(A.shape[0], *shape),
                     randn(A.shape[1], *shape, seed=1), *transposed)))


def _move_operands(op, scaled=True):
    """{source, index, (size,) alpha} of a gather or a scatter, float64, with repeated
    and missing positions; alpha None where not ``scaled``."""
    index = torch.tensor([5, 0, 0, 3, 2])
    alpha = torch.tensor(1.5, dtype=torch.float64) if scaled else None
    if op == "gather_scaled":
        return {"source": randn(6), "index": index, "alpha": alpha}
    return {"source": randn(5), "index": index, "size": 6, "alpha": alpha}


@pytest.mark.parametrize("columns", [None, 3], ids=["vectors", "matrices"])
@pytest.mark.parametrize("cached", [False, True], ids=["", "cached-transpose"])
@pytest.mark.parametrize("requires", [("x",), ("y",), ("x", "y")], ids="+".join)
@pytest.mark.parametrize("case", ["wide", "empty_rows_cols", "nnz0"])
def test_sampled_gradcheck_and_gradgradcheck(case, requires, cached, columns, device):
    f, inputs = _call("sampled_matmul", _sampled_operands(cached, columns, case, device),
                      requires)
    assert gradcheck(f, inputs)
    assert gradgradcheck(f, inputs)


@pytest.mark.parametrize("op", ["gather_scaled", "scatter_add_scaled"])
@pytest.mark.parametrize("requires", [("source",), ("alpha",), ("source", "alpha")],
                         ids="+".join)
def test_moves_gradcheck_and_gradgradcheck(op, requires):
    f, inputs = _call(op, _move_operands(op), requires)
    assert gradcheck(f, inputs)
    assert gradgradcheck(f, inputs)


@pytest.mark.parametrize("op", ["gather_scaled", "scatter_add_scaled"])
def test_moves_without_a_scale(op):
    """alpha omitted: a scale of one, and a gradient for the source alone."""
    f, inputs = _call(op, _move_operands(op, scaled=False), ("source",))
    assert gradcheck(f, inputs)
    assert gradgradcheck(f, inputs)
    scaled, _ = _call(op, _move_operands(op), ("source",))
    torch.testing.assert_close(f(*inputs) * 1.5, scaled(*inputs))


@pytest.mark.parametrize("op, operands, wanted, read, not_read", [
    # d values_a = (G B^T) ⊙ mask(A) reads B's values, not A's; and so for B
    ("spgemm_numeric", _spgemm_operands, "values_a", "values_b", ("values_a",)),
    ("spgemm_numeric", _spgemm_operands, "values_b", "values_a", ("values_b",)),
    # d values_a = alpha G[map_a] reads alpha; B's side is not read at all
    ("csr_add_values", _add_operands, "values_a", "alpha", ("values_a", "values_b", "beta")),
    # d alpha = <G[map_a], values_a> reads A's values (and alpha, for its type)
    ("csr_add_values", _add_operands, "alpha", "values_a", ("values_b", "beta")),
    # d x = S(g) Y reads y, not x; d y = S(g)^T X reads x, not y
    ("sampled_matmul", lambda: _sampled_operands(True), "x", "y", ("x",)),
    ("sampled_matmul", lambda: _sampled_operands(True), "y", "x", ("y",)),
    # d source = scatter/gather(alpha g) reads alpha, not source
    ("gather_scaled", lambda: _move_operands("gather_scaled"), "source", "alpha", ("source",)),
    ("scatter_add_scaled", lambda: _move_operands("scatter_add_scaled"), "source", "alpha",
     ("source",)),
    # d alpha = <g, source[index]> reads the source
    ("gather_scaled", lambda: _move_operands("gather_scaled"), "alpha", "source", ()),
    ("scatter_add_scaled", lambda: _move_operands("scatter_add_scaled"), "alpha", "source", ())])
def test_save_only_what_the_backward_reads(op, operands, wanted, read, not_read):
    """What is saved may not change in place before the backward; the rest may."""
    operands = operands()
    leaf = operands[wanted] = operands[wanted].clone().requires_grad_()
    out = getattr(ops, op)(**operands)
    with torch.no_grad():
        for name in not_read:
            operands[name].add_(1.0)
    assert torch.autograd.grad(out.sum(), leaf)[0] is not None
    out = getattr(ops, op)(**operands)
    operands[read].add_(1.0)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        torch.autograd.grad(out.sum(), leaf)


@pytest.mark.parametrize("create_graph", [False, True])
def test_sampled_and_moves_compute_only_the_gradients_needed(create_graph):
    def run(op, wrt, requires):
        operands = _sampled_operands(True) if op == "sampled_matmul" else _move_operands(op)
        return _ops_backward(op, operands, requires, wrt, create_graph)

    assert run("sampled_matmul", ("x",), ("x", "y")) == ["spmm"]
    assert run("sampled_matmul", ("x", "y"), ("x", "y")) == ["spmm", "spmm"]
    assert run("gather_scaled", ("source",), ("source", "alpha")) == ["scatter_add_scaled"]
    assert run("gather_scaled", ("alpha",), ("source", "alpha")) == ["gather_scaled"]
    assert run("scatter_add_scaled", ("source",), ("source", "alpha")) == ["gather_scaled"]


# ------------------------------------------------------------------ the recorded nodes
# cuda/autograd/node.h: hand-written nodes, as torch's generated ones, not
# torch::autograd::Function's. What Function gave for free is checked here: the
# saved-tensor hooks, the error of a second backward, compiled autograd.

def _recorded(op):
    """(a function of the leaves, the leaves) of ``op`` with every differentiable
    input requiring grad, on a small matrix."""
    if op in PRODUCTS:
        f, inputs = _function(op, _operands("square", op, False, True), "both", False)
    elif op == "sptrsv":
        A = _solve_matrix()
        f, inputs = _solve_function(A, True, False, False, True, "both",
                                    randn(A.shape[0], dtype=torch.float64))
    elif op == "csr_add_values":
        f, inputs = _call(op, _add_operands(), ADD_INPUTS)
    elif op == "spgemm_numeric":
        f, inputs = _call(op, _spgemm_operands(("square", "square")), ("values_a", "values_b"))
    elif op == "sampled_matmul":
        f, inputs = _call(op, _sampled_operands(True), ("x", "y"))
    else:
        f, inputs = _call(op, _move_operands(op), ("source", "alpha"))
    return f, inputs


NODE_NAMES = {"spmv": "SpmvBackward", "spmm": "SpmmBackward", "sptrsv": "SptrsvBackward",
              "csr_add_values": "CsrAddValuesBackward", "spgemm_numeric": "SpgemmNumericBackward",
              "sampled_matmul": "SampledMatmulBackward", "gather_scaled": "GatherScaledBackward",
              "scatter_add_scaled": "ScatterAddScaledBackward"}
SAVED = {"spmv": 7, "spmm": 7, "sptrsv": 10, "csr_add_values": 6, "spgemm_numeric": 8,
         "sampled_matmul": 7, "gather_scaled": 3, "scatter_add_scaled": 3}


@pytest.mark.parametrize("op", NODE_NAMES)
def test_the_recorded_node_is_named_for_its_op(op):
    f, inputs = _recorded(op)
    assert f(*inputs).grad_fn.name() == f"learnsolve::{NODE_NAMES[op]}"


@pytest.mark.parametrize("op", NODE_NAMES)
def test_saved_tensor_hooks_see_every_saved_tensor(op):
    """torch.autograd.graph.saved_tensors_hooks (activation offloading, checkpointing)
    packs each tensor the node saves, and the backward reads the unpacked copies."""
    f, inputs = _recorded(op)
    expected = torch.autograd.grad(f(*inputs).sum(), inputs)
    packed = []

    def pack(t):
        packed.append(t)
        return t.clone()

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = f(*inputs)
    assert len(packed) == SAVED[op]
    with torch.no_grad():
        for t in packed:                    # the originals may now change: copies were saved
            if t.is_floating_point():
                t.add_(1.0)
    for got, want in zip(torch.autograd.grad(out.sum(), inputs), expected):
        torch.testing.assert_close(got, want)


@pytest.mark.parametrize("op", NODE_NAMES)
def test_a_second_backward_needs_retain_graph(op):
    f, inputs = _recorded(op)
    out = f(*inputs).sum()
    first = torch.autograd.grad(out, inputs, retain_graph=True)
    for got, want in zip(torch.autograd.grad(out, inputs), first):
        torch.testing.assert_close(got, want)
    out = f(*inputs).sum()
    torch.autograd.grad(out, inputs)
    with pytest.raises(RuntimeError, match="second time"):
        torch.autograd.grad(out, inputs)


@pytest.mark.parametrize("op", NODE_NAMES)
def test_compiled_autograd_gives_the_eager_gradients(op):
    """The backward traced by torch._dynamo.compiled_autograd (the node's
    compiled_args and apply_with_saved) gives the gradients of the eager one."""
    from torch._dynamo import compiled_autograd
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()
    f, inputs = _recorded(op)
    expected = torch.autograd.grad(f(*inputs).sum(), inputs)
    out = f(*inputs).sum()
    with compiled_autograd._enable(torch.compile(backend="eager")):
        out.backward()
    assert counters["compiled_autograd"]["captures"] == 1
    for leaf, want in zip(inputs, expected):
        torch.testing.assert_close(leaf.grad, want)


def test_the_saved_solution_makes_no_reference_cycle():
    """The solve saves its own output x (d values reads it) without x's grad_fn, the
    node itself: otherwise node and x would keep each other, and the saved values,
    alive after the caller let go of them."""
    A = _solve_matrix()
    f, inputs = _solve_function(A, True, False, False, True, "both",
                                randn(A.shape[0], dtype=torch.float64))
    released = weakref.ref(inputs[0])       # the values leaf, which the node saves
    x = f(*inputs)
    assert x.grad_fn is not None
    del x, inputs
    gc.collect()
    assert released() is None
