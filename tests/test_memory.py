"""No backward allocates more than O(nnz + rows + cols): a gradient with
respect to a sparse matrix is a vector over its pattern, never dense."""
import pytest
import torch
from torch.profiler import ProfilerActivity, profile

import learnsolve as ls
from learnsolve.problems import poisson_2d


def allocated_bytes(fn) -> int:
    """Bytes allocated by the ops that fn runs (each op's own allocations)."""
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    return sum(max(event.self_cpu_memory_usage, 0) for event in prof.events())


@pytest.fixture(scope="module")
def A():
    return poisson_2d(60, dtype=torch.float64).A  # 3600 x 3600, 17 760 entries: dense would be 100 MB


CASES = {
    "spmv": lambda B, x, X: B @ x,
    "spmm": lambda B, x, X: B @ X,
    "rmatmul": lambda B, x, X: x @ B,
    "sampled": lambda B, x, X: ls.sampled_matmul(B, X, X).values,
    "spgemm": lambda B, x, X: (B @ B).values,
    "add": lambda B, x, X: (B - 2.0 * B.T).values,
    "hadamard": lambda B, x, X: (B * B.T).values,
    "transpose": lambda B, x, X: B.T.values,
}


@pytest.mark.parametrize("op", CASES)
def test_backward_memory_is_linear_in_the_pattern(A, op):
    values = A.values.clone().requires_grad_()
    x = torch.randn(A.shape[1], dtype=torch.float64, requires_grad=True)
    X = torch.randn(A.shape[1], 4, dtype=torch.float64, requires_grad=True)
    B = A.with_values(values)
    out = CASES[op](B, x, X)
    grad = torch.randn_like(out)
    used = allocated_bytes(lambda: torch.autograd.backward(out, grad))
    # The pattern of the output (A A has about 2.6 nnz(A) entries), the dense
    # operands (4 columns) and the gradients themselves, a few times over.
    budget = 8 * 8 * (max(A.nnz, out.numel()) + 4 * (A.shape[0] + A.shape[1]))
    assert 0 < used <= budget, f"{op}: backward allocated {used} bytes, budget {budget}"
