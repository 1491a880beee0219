"""Learn the values of a sparse matrix by gradient descent.

The 2D Poisson matrix ``A*`` on a 32 x 32 grid is hidden; we see only its
products ``A* x`` with random vectors. A matrix with the same pattern and all
values 1 is fitted to those products with Adam. The gradient with respect to
the matrix has the matrix's pattern: one number per stored entry, never a
dense N x N array. Run with ``python -m learnsolve.demo``.
"""
from __future__ import annotations

import time

import torch

from learnsolve.problems import poisson_2d


def main(n: int = 32, steps: int = 300, samples: int = 16, seed: int = 0) -> float:
    """Fit the values and return the final relative error of the matrix."""
    torch.manual_seed(seed)
    target = poisson_2d(n, dtype=torch.float64).A
    values = torch.nn.Parameter(torch.ones(target.nnz, dtype=torch.float64))
    optimizer = torch.optim.Adam([values], lr=0.05)
    print(f"fitting the {target.shape[0]} x {target.shape[1]} 2D Poisson matrix "
          f"({target.nnz} stored entries) from products with random vectors")
    start = time.perf_counter()
    for step in range(steps + 1):
        X = torch.randn(target.shape[1], samples, dtype=torch.float64)
        residual = target.with_values(values) @ X - target @ X
        loss = residual.square().mean()
        optimizer.zero_grad()
        loss.backward()
        if step == 0:
            print(f"the gradient holds {values.grad.numel()} numbers, one per stored entry")
        if step % 50 == 0:
            print(f"step {step:4d}   loss {loss.item():.3e}")
        optimizer.step()
    error = ((values.detach() - target.values).norm() / target.values.norm()).item()
    print(f"relative error of the learned values: {error:.2e} "
          f"({time.perf_counter() - start:.1f} s)")
    return error


if __name__ == "__main__":
    main()
