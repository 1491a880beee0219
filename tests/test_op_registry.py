"""Every native op of the ``learnsolve`` namespace has a fake kernel, a typed wrapper
in ``ops`` with the schema's parameters, and an opcheck sample here.

The set of ops comes from the dispatcher (what ``cuda/registration.cpp`` defines),
so a new op without a fake, a wrapper or a sample fails these tests.
"""
from __future__ import annotations

import inspect
from pathlib import Path

import pytest
import torch
from torch._library.simple_registry import singleton
from torch.library import opcheck

import learnsolve as ls
from cases import m_matrix, make, randn
from learnsolve.core import native
from learnsolve.core._ops import ops


def native_ops() -> set[str]:
    """The names of the ops the extension defines in the ``learnsolve`` namespace."""
    return {name.split("::", 1)[1] for name in torch._C._dispatch_get_all_op_names()
            if name.startswith("learnsolve::")}


def schema(name: str):
    return getattr(torch.ops.learnsolve, name).default._schema


def test_the_namespace_is_found():
    assert {"spmv", "sptrsv", "csr_check"} <= native_ops()


@pytest.mark.parametrize("name", sorted(native_ops()))
def test_op_has_a_fake_kernel(name):
    """Registered with ``torch.library.register_fake`` (or a C++ Meta kernel)."""
    qualname = f"learnsolve::{name}"
    python_fake = singleton.find(qualname).fake_impl.kernel is not None
    assert python_fake or torch._C._dispatch_has_kernel_for_dispatch_key(qualname, "Meta")


# schema type -> annotation of the wrapper's parameter (``from __future__ import annotations``)
ANNOTATIONS = {"Tensor": "torch.Tensor", "Optional[Tensor]": "torch.Tensor | None",
               "int": "int", "bool": "bool", "float": "float",
               "Optional[float]": "float | None", "Optional[int]": "int | None"}


@pytest.mark.parametrize("name", sorted(native_ops()))
def test_op_has_a_typed_wrapper(name):
    """``ops.<name>`` takes the schema's arguments: names in order, types, defaults."""
    wrapper = getattr(ops, name, None)
    assert inspect.isfunction(wrapper), f"no typed wrapper ops.{name} in learnsolve/core/native.py"
    assert wrapper.__doc__ and wrapper.__doc__.strip()
    parameters = list(inspect.signature(wrapper).parameters.values())
    arguments = schema(name).arguments
    assert [p.name for p in parameters] == [a.name for a in arguments]
    for p, a in zip(parameters, arguments):
        assert p.annotation == ANNOTATIONS[str(a.type)], (p.name, p.annotation, str(a.type))
        assert p.kind == (p.KEYWORD_ONLY if a.kwarg_only else p.POSITIONAL_OR_KEYWORD)
        if a.has_default_value():
            assert p.default == a.default_value, p.name
        else:
            assert p.default is p.empty, p.name


def test_wrappers_are_the_ops():
    """``ops`` holds the wrappers and no wrapper of an op that no longer exists."""
    assert set(native.__all__) == native_ops()
    assert ops is native


def test_nothing_outside_core_calls_the_raw_ops():
    package = Path(ls.__file__).parent
    offenders = [str(path.relative_to(package)) for path in package.rglob("*.py")
                 if path.parent.name != "core" and "torch.ops.learnsolve" in path.read_text()]
    assert offenders == []


# ------------------------------------------------------------------ opcheck samples
# One small valid float64 input per op (a few where one is not enough); float
# inputs require grad so that the autograd-registration check runs, except for
# the ops without a gradient (NO_GRADIENT), whose inputs never do. Several ops
# are also opchecked next to their own tests (test_spmv_spmm, test_spgemm,
# test_triangular, test_add_multiply, test_incomplete, test_preconditioners) on
# other variants; the samples here cover what those do not (transposed products,
# alpha/no alpha, the SpGEMM backward ops, csr_check).

def _leaf(t):
    return t.detach().clone().requires_grad_()


def _square(seed=0):
    return make("square", seed=seed)[1]


def _transposed(name):
    """A product through the cached transpose pattern (transpose=True)."""
    A = _square()
    x = randn(12, requires_grad=True) if name == "spmv" else randn(12, 2, requires_grad=True)
    return (A.crow_indices, A.col_indices, _leaf(A.values), x, *A.pattern.transpose_arrays(),
            True)


def _sampled_matmul():
    A = _square()
    return (A.crow_indices, A.col_indices, randn(12, 2, requires_grad=True),
            randn(12, 2, seed=1, requires_grad=True), *A.pattern.transpose_arrays())


def _spmv_backward():
    A = _square()
    return (A.crow_indices, A.col_indices, _leaf(A.values), randn(12, requires_grad=True),
            randn(12, seed=1, requires_grad=True))


def _moves(with_alpha=True):
    A = _square()
    alpha = (torch.tensor(0.5, dtype=torch.float64, requires_grad=True),) if with_alpha else ()
    return A, _leaf(A.values), A.pattern.transpose_arrays()[2], alpha


def _gather(with_alpha):
    A, values, perm, alpha = _moves(with_alpha)
    return (values, perm, *alpha)


def _scatter():
    A, values, perm, alpha = _moves()
    return (values, perm, A.nnz, *alpha)


def _add_values():
    A, B = _square(), _square(seed=1)
    union, map_a, map_b = A.pattern.union(B.pattern)
    return (_leaf(A.values), map_a, _leaf(B.values), map_b, union.nnz,
            torch.tensor(0.5, dtype=torch.float64, requires_grad=True),
            torch.tensor(2.0, dtype=torch.float64))


def _pattern_pair():
    A, B = _square(), _square(seed=1)
    return A.crow_indices, A.col_indices, B.crow_indices, B.col_indices


def _product():
    """(A, B, C = A B) with values that require grad."""
    A, B = _square(), _square(seed=1)
    C = A @ B
    return A, B, C, _leaf(A.values), _leaf(B.values)


def _spgemm_numeric():
    A, B, C, va, vb = _product()
    return (A.crow_indices, A.col_indices, va, B.crow_indices, B.col_indices, vb,
            C.crow_indices, C.col_indices, 12)


def _spgemm_grad_b():
    A, B, C, va, vb = _product()
    return (A.crow_indices, A.col_indices, va, C.crow_indices, C.col_indices,
            randn(C.nnz, requires_grad=True), B.crow_indices, B.col_indices, 12)


def _spgemm_masked():
    A, B, C, va, vb = _product()
    return (A.crow_indices, A.col_indices, C.crow_indices, C.col_indices,
            randn(C.nnz, requires_grad=True), B.crow_indices, B.col_indices, vb, 12)


def _m_matrix():
    """A 12x12 symmetric M-matrix: a full diagonal, well conditioned, factorisable."""
    return ls.CSRMatrix.from_scipy(m_matrix(12, 0.3, 4))


def _solve_operands():
    A = _m_matrix()
    return A, (*A.pattern.triangular_levels(True), True, False, *A.pattern.transpose_arrays())


def _sptrsv():
    A, flags = _solve_operands()
    return (A.crow_indices, A.col_indices, _leaf(A.values), randn(12, 2, requires_grad=True),
            *flags, False)


def _sptrsv_backward():
    A, flags = _solve_operands()
    x = ops.sptrsv(A.crow_indices, A.col_indices, A.values, randn(12, 2), *flags, False)
    return (A.crow_indices, A.col_indices, A.values, x, randn(12, 2, seed=1), *flags, False)


def _factor(lower):
    F = _m_matrix().tril() if lower else _m_matrix()
    return F.crow_indices, F.col_indices, F.values


def _cg_step(preconditioned: bool, given_q: bool):
    """One PCG iteration out of place, with M = diag(d) or none, A p computed or given."""
    A = _m_matrix()
    x, r, p = (randn(12, seed=seed) for seed in range(3))
    d = randn(12, seed=3).abs() + 0.5 if preconditioned else None
    q = A @ p if given_q else None
    outputs = [torch.empty(12, dtype=torch.float64) for _ in range(3)]
    dots = torch.empty(3 if preconditioned else 2, dtype=torch.float64)
    return (A.crow_indices, A.col_indices, A.values, x, r, p, r @ r, d, q, *outputs, dots)


def _pattern_of(A, *rest):
    return (A.crow_indices, A.col_indices, *rest)


# op name -> the functions building its samples' arguments
SAMPLES = {
    "spmv": [lambda: _transposed("spmv")],
    "spmm": [lambda: _transposed("spmm")],
    "spmv_backward": [_spmv_backward],
    "sampled_matmul": [_sampled_matmul],
    "transpose": [lambda: _pattern_of(_square(), 12)],
    "gather_scaled": [lambda: _gather(True), lambda: _gather(False)],
    "scatter_add_scaled": [_scatter],
    "csr_merge": [lambda: (*_pattern_pair(), False)],
    "csr_add_values": [_add_values],
    "csr_check": [lambda: _pattern_of(_square(), 12)],
    "spgemm_symbolic": [lambda: (*_pattern_pair(), 12)],
    "spgemm_numeric": [_spgemm_numeric],
    "spgemm_grad_b": [_spgemm_grad_b],
    "spgemm_masked": [_spgemm_masked],
    "sptrsv_analysis": [lambda: _pattern_of(_m_matrix(), True)],
    "sptrsv": [_sptrsv],
    "sptrsv_backward": [_sptrsv_backward],
    "ic0": [lambda: _factor(lower=True)],
    "ilu": [lambda: _factor(lower=False)],
    "iluk_symbolic": [lambda: _pattern_of(_m_matrix(), 1)],
    "cg_step": [lambda: _cg_step(True, False), lambda: _cg_step(False, True)],
}

# Float outputs but no autograd formula: ic0 and ilu factor detached values (the
# preconditioners are not differentiated through the factorisation) and
# sptrsv_backward is the fused backward of sptrsv, called only under no_grad.
NO_GRADIENT = {"ic0", "ilu", "sptrsv_backward"}

ALL_TEST_UTILS = ("test_schema", "test_autograd_registration", "test_faketensor",
                  "test_aot_dispatch_dynamic")


def test_every_op_has_an_opcheck_sample():
    assert set(SAMPLES) == native_ops()


def _outputs(name, args):
    """What an op returns, as a tuple (empty for an op that only writes its arguments)."""
    result = getattr(ops, name)(*args)
    if result is None:
        return ()
    return result if isinstance(result, (tuple, list)) else (result,)


def _has_float_output(name):
    return any(out.is_floating_point() for out in _outputs(name, SAMPLES[name][0]()))


def test_every_op_with_a_float_output_has_an_autograd_kernel():
    """A formula, or (NO_GRADIENT) a backward that refuses: never the autograd
    fallback, which passes gradients through as if the op were the identity."""
    without = {name for name in native_ops() if _has_float_output(name)
               and not torch._C._dispatch_has_kernel_for_dispatch_key(f"learnsolve::{name}",
                                                                      "Autograd")}
    assert without == set()


@pytest.mark.parametrize("name, index", [(name, i) for name in sorted(SAMPLES)
                                         for i in range(len(SAMPLES[name]))])
def test_opcheck(name, index):
    """opcheck with every test util, except the autograd registration for the ops
    whose outputs are all integer (index arrays: nothing to differentiate) and for
    NO_GRADIENT (inputs that never require grad: the check would have nothing to do)."""
    args = SAMPLES[name][index]()
    skip = not _has_float_output(name) or name in NO_GRADIENT
    test_utils = [u for u in ALL_TEST_UTILS if not (skip and u == "test_autograd_registration")]
    opcheck(getattr(torch.ops.learnsolve, name), args, test_utils=test_utils)


@pytest.mark.parametrize("name", sorted(NO_GRADIENT))
def test_ops_without_a_gradient_refuse_to_pretend(name):
    """Called with inputs that require grad, an op without a gradient gives outputs
    whose backward refuses, naming the op."""
    args = [_leaf(a) if isinstance(a, torch.Tensor) and a.is_floating_point() else a
            for a in SAMPLES[name][0]()]
    out = next(o for o in _outputs(name, args) if o.is_floating_point())
    assert out.requires_grad
    with pytest.raises(RuntimeError, match=f"learnsolve::{name} is not differentiable"):
        out.sum().backward()