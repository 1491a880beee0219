"""CSRMatrix: validation, canonical form, conversions, copies."""
import numpy as np
import pytest
import scipy.sparse as sp
import torch
from torch.autograd import gradcheck

import learnsolve as ls
from cases import CASES, assert_close, dense_of, make

CSR = ls.CSRMatrix


def _arrays():
    return torch.tensor([0, 2, 2, 3]), torch.tensor([0, 2, 1]), torch.tensor([1.0, 2.0, 3.0])


def test_properties():
    crow, col, values = _arrays()
    A = CSR(crow, col, values, (3, 4))
    assert A.shape == (3, 4) and A.nnz == 3 and A.dtype == torch.float32
    assert A.device == torch.device("cpu") and not A.requires_grad
    assert A.crow_indices.dtype == torch.int64 and A.col_indices.dtype == torch.int64
    assert "nnz=3" in repr(A)


def test_int32_indices_become_int64():
    crow, col, values = _arrays()
    A = CSR(crow.int(), col.int(), values, (3, 4))
    assert A.crow_indices.dtype == torch.int64 and A.col_indices.dtype == torch.int64


@pytest.mark.parametrize("change, error, message", [
    (dict(crow=torch.tensor([0.0, 2.0, 2.0, 3.0])), TypeError, r"crow_indices: expected an integer"),
    (dict(col=torch.tensor([0.0, float("nan"), 1.0])), TypeError, r"col_indices: expected an integer"),
    (dict(values=torch.tensor([1, 2, 3])), TypeError, r"values: expected dtype float32 or float64"),
    (dict(values=[1.0, 2.0, 3.0]), TypeError, r"values: expected a torch.Tensor"),
    (dict(crow=torch.tensor([0, 2, 3])), ValueError, r"crow_indices: expected length 4"),
    (dict(crow=torch.tensor([1, 2, 2, 3])), ValueError, r"crow_indices\[0\] == 0"),
    (dict(crow=torch.tensor([0, 2, 2, 2])), ValueError, r"crow_indices\[-1\] == 3"),
    (dict(crow=torch.tensor([0, 3, 2, 3])), ValueError, r"non-decreasing.*after row 1"),
    (dict(col=torch.tensor([0, 4, 1])), ValueError, r"col_indices: expected values in \[0, 4\)"),
    (dict(col=torch.tensor([0, -1, 1])), ValueError, r"col_indices: expected values in"),
    (dict(col=torch.tensor([2, 0, 1])), ValueError, r"row 0 is unsorted or has a duplicate"),
    (dict(col=torch.tensor([2, 2, 1])), ValueError, r"row 0 is unsorted or has a duplicate"),
    (dict(values=torch.tensor([1.0, 2.0])), ValueError, r"values: expected length 3"),
    (dict(values=torch.ones(3, 1)), ValueError, r"values: expected a 1-D tensor"),
    (dict(shape=(3, -1)), ValueError, r"shape: expected two non-negative integers"),
    (dict(shape=(3,)), ValueError, r"shape: expected two non-negative integers"),
    (dict(shape=(3.5, 4)), ValueError, r"shape: expected two non-negative integers"),
])
def test_validation_errors(change, error, message):
    crow, col, values = _arrays()
    args = dict(crow=crow, col=col, values=values, shape=(3, 4))
    args.update(change)
    with pytest.raises(error, match=message):
        CSR(args["crow"], args["col"], args["values"], args["shape"])


def test_unsorted_across_rows_is_fine():
    """Columns may decrease from one row to the next; only within a row must they increase."""
    A = CSR(torch.tensor([0, 1, 2]), torch.tensor([3, 0]), torch.tensor([1.0, 2.0]), (2, 4))
    assert A.nnz == 2


def test_check_false_skips_validation():
    crow, col, values = _arrays()
    A = CSR(crow, torch.tensor([2, 0, 1]), values, (3, 4), check=False)
    assert A.nnz == 3


def test_device_mismatch():
    """Arrays on different devices (meta stands in for a GPU) are refused."""
    crow, col, values = _arrays()
    with pytest.raises(ValueError, match=r"values: expected a tensor on cpu"):
        CSR(crow, col, values.to("meta"), (3, 4))
    with pytest.raises(ValueError, match=r"col_indices: expected a tensor on cpu"):
        CSR(crow, col.to("meta"), values, (3, 4))


@pytest.mark.parametrize("case", CASES)
def test_scipy_round_trip(case, dtype):
    S, A = make(case, dtype)
    assert A.dtype == dtype
    back = A.to_scipy()
    assert back.shape == S.shape and back.nnz == S.nnz
    np.testing.assert_array_equal(back.toarray(), S.toarray().astype(back.dtype))
    values, col = A.values.clone(), A.col_indices.clone()
    back.data[:] = 7.0  # a copy: changing it leaves A alone
    back.indices[:] = -1
    assert torch.equal(A.values, values) and torch.equal(A.col_indices, col)


@pytest.mark.parametrize("fmt", ["coo", "csc", "lil", "dok", "bsr", "dia"])
def test_from_scipy_any_format_and_index_width(fmt):
    S = sp.random_array((6, 5), density=0.5, format="csr", rng=np.random.default_rng(0))
    A = CSR.from_scipy(S.asformat(fmt))
    np.testing.assert_array_equal(A.to_dense().numpy(), S.toarray())
    S64 = S.copy()
    S64.indices, S64.indptr = S64.indices.astype(np.int64), S64.indptr.astype(np.int64)
    assert torch.equal(CSR.from_scipy(S64).col_indices, A.col_indices)


def test_from_scipy_sums_duplicates_sorts_keeps_zeros_and_leaves_input():
    S = sp.csr_array((np.array([1.0, 2.0, 0.0, 4.0]), np.array([2, 0, 1, 2]), np.array([0, 4])),
                     shape=(1, 3))
    A = CSR.from_scipy(S)
    assert A.col_indices.tolist() == [0, 1, 2] and A.values.tolist() == [2.0, 0.0, 5.0]
    assert S.indices.tolist() == [2, 0, 1, 2]  # input untouched
    f32 = CSR.from_scipy(S.astype(np.float32))
    assert f32.dtype == torch.float32
    assert CSR.from_scipy(S, dtype=torch.float32).dtype == torch.float32
    with pytest.raises(TypeError, match=r"matrix: expected a scipy.sparse"):
        CSR.from_scipy(np.eye(3))
    with pytest.raises(TypeError, match=r"matrix: expected real data"):
        CSR.from_scipy(S.astype(np.complex128))


def test_from_coo_sums_duplicates_differentiably():
    row = torch.tensor([2, 0, 2, 1, 2])
    col = torch.tensor([1, 3, 1, 0, 0])
    values = torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0], dtype=torch.float64, requires_grad=True)
    A = CSR.from_coo(row, col, values, (3, 4))
    assert A.nnz == 4 and A.col_indices.tolist() == [3, 0, 0, 1]
    assert_close(A.to_dense(), torch.sparse_coo_tensor(torch.stack([row, col]), values.detach(),
                                                       (3, 4), check_invariants=True).to_dense(), torch.float64)
    assert gradcheck(lambda v: CSR.from_coo(row, col, v, (3, 4)).values, (values,))


@pytest.mark.parametrize("args, error, message", [
    ((torch.tensor([0, 3]), torch.tensor([0, 0]), torch.ones(2), (3, 3)), ValueError, r"row: expected indices in \[0, 3\)"),
    ((torch.tensor([0, 1]), torch.tensor([0, 5]), torch.ones(2), (3, 3)), ValueError, r"col: expected indices in \[0, 3\)"),
    ((torch.tensor([0, 1]), torch.tensor([0]), torch.ones(2), (3, 3)), ValueError, r"expected equal lengths"),
    ((torch.tensor([0.0, 1.0]), torch.tensor([0, 1]), torch.ones(2), (3, 3)), TypeError, r"row: expected an integer"),
])
def test_from_coo_errors(args, error, message):
    with pytest.raises(error, match=message):
        CSR.from_coo(*args)


@pytest.mark.parametrize("case", CASES)
def test_dense_round_trip_and_gradient(case, dtype):
    S, A = make(case, dtype)
    D = dense_of(S, dtype)
    B = CSR.from_dense(D)
    assert B.nnz == int((D != 0).sum())
    assert torch.equal(B.to_dense(), D)
    # The values are gathered from the dense tensor: the gradient flows back
    # to the nonzero entries only.
    Dg = D.clone().requires_grad_()
    w = torch.randn(B.nnz, dtype=dtype)
    (CSR.from_dense(Dg).values * w).sum().backward()
    expected = torch.zeros_like(D)
    expected[D != 0] = w
    assert torch.equal(Dg.grad, expected)


def test_from_dense_errors():
    with pytest.raises(ValueError, match=r"dense: expected a 2-D tensor"):
        CSR.from_dense(torch.ones(3))
    with pytest.raises(TypeError, match=r"dense: expected dtype float32 or float64"):
        CSR.from_dense(torch.ones(3, 3, dtype=torch.int64))


@pytest.mark.parametrize("case", ["square", "empty_rows_cols", "nnz0"])
def test_torch_round_trip(case):
    S, A = make(case)
    T = A.to_torch()
    assert T.layout == torch.sparse_csr
    assert torch.equal(T.to_dense(), A.to_dense())
    assert torch.equal(CSR.from_torch(T).to_dense(), A.to_dense())
    assert torch.equal(CSR.from_torch(T.to_sparse_coo()).to_dense(), A.to_dense())


def test_from_torch_sums_uncoalesced_coo():
    T = torch.sparse_coo_tensor(torch.tensor([[1, 0, 1], [1, 1, 1]]), torch.tensor([1.0, 2.0, 3.0]),
                                (2, 2), check_invariants=True)
    A = CSR.from_torch(T)
    assert A.nnz == 2 and A.values.tolist() == [2.0, 4.0]
    with pytest.raises(TypeError, match=r"tensor: expected layout"):
        CSR.from_torch(torch.ones(2, 2))


def test_with_values_detach_clone_to():
    S, A = make("square", torch.float64)
    v = torch.arange(A.nnz, dtype=torch.float64, requires_grad=True)
    B = A.with_values(v)
    assert B.pattern is A.pattern and B.requires_grad
    assert not B.detach().requires_grad and B.detach().pattern is A.pattern
    C = B.clone()
    assert C.requires_grad and C.crow_indices.data_ptr() != A.crow_indices.data_ptr()
    assert torch.equal(C.to_dense(), B.to_dense())
    F = B.to(torch.float32)
    assert F.dtype == torch.float32 and F.pattern is A.pattern
    assert A.to(device="cpu", dtype=torch.float32).dtype == torch.float32
    assert A.float().double().dtype == torch.float64
    with pytest.raises(ValueError, match=r"values: expected length 36"):
        A.with_values(torch.ones(3, dtype=torch.float64))
    with pytest.raises(TypeError, match=r"values: expected dtype float32 or float64"):
        A.with_values(torch.ones(A.nnz, dtype=torch.int64))
    with pytest.raises(TypeError, match=r"dtype: expected float32 or float64"):
        A.to(torch.int32)
    with pytest.raises(TypeError, match=r"to: expected a device or a dtype"):
        A.to(3.0)


def test_requires_grad_():
    S, A = make("square", torch.float64)
    A = A.detach().clone()
    assert A.requires_grad_().requires_grad
    (A @ torch.ones(12, dtype=torch.float64)).sum().backward()
    assert A.values.grad.shape == (A.nnz,)


def test_caches_filled_in_inference_mode_serve_a_later_backward():
    """Index arrays cached while inference mode is on (the row index, the
    int32 columns, the transpose) must not be inference tensors: a later
    call that records gradients saves them for its backward."""
    A = ls.diags([-1.0, 2.0, -1.0], [-1, 0, 1], shape=(6, 6), dtype=torch.float64)
    x = torch.ones(6, dtype=torch.float64)
    with torch.inference_mode():
        A @ x
        A.row_indices()
        A.pattern.transpose()
        (A @ A).values
    values = A.values.clone().requires_grad_()
    B = A.with_values(values)
    ((B @ x.clone().requires_grad_()).sum() + (x @ B).sum() + (B @ B).values.sum()).backward()
    assert values.grad.shape == (A.nnz,)
