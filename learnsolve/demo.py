"""The main demo: learn a sparse matrix, then learn a preconditioner.

1. The 2D Poisson matrix ``A*`` on a 32 x 32 grid is hidden; we see only its
   products ``A* x`` with random vectors. A matrix with the same pattern and
   all values 1 is fitted to those products with Adam. The gradient with
   respect to the matrix has the matrix's pattern: one number per stored
   entry, never a dense N x N array.
2. The paper's learned preconditioner (section 4.3): ``M = L L^T`` with ``L``
   lower bidiagonal, trained by the :class:`~learnsolve.Trainer` through 4
   unrolled PCG iterations (the loss of eq. 42), then compared in PCG with no
   preconditioner, Jacobi, IC(0) and smoothed-aggregation AMG.

Run with ``python -m learnsolve.demo``.
"""
from __future__ import annotations

import time

import torch

from learnsolve import Trainer
from learnsolve.problems import poisson_2d
from learnsolve.solvers import PCG, LowerFactor


def fit_matrix(n: int = 32, steps: int = 300, samples: int = 16, seed: int = 0) -> float:
    """Fit the values of the hidden matrix; return their final relative error."""
    generator = torch.Generator().manual_seed(seed)
    target = poisson_2d(n, dtype=torch.float64).A
    values = torch.nn.Parameter(torch.ones(target.nnz, dtype=torch.float64))
    optimizer = torch.optim.Adam([values], lr=0.05)
    print(f"fitting the {target.shape[0]} x {target.shape[1]} 2D Poisson matrix "
          f"({target.nnz} stored entries) from products with random vectors")
    start = time.perf_counter()
    for step in range(steps + 1):
        X = torch.randn(target.shape[1], samples, dtype=torch.float64, generator=generator)
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


def learn_preconditioner(n: int = 8, epochs: int = 300, seed: int = 0, progress: bool = True):
    """Train ``PCG(M=LowerFactor.banded(A, 1))`` on the n x n 2D Poisson problem and
    return the evaluation table (iterations to a relative residual of 1e-6)."""
    problem = poisson_2d(n, dtype=torch.float64)
    print(f"\nlearning M = L L^T (L lower bidiagonal) for PCG on {problem}")
    trainer = Trainer(PCG(M=LowerFactor.banded(problem.A, 1)), lr=1e-2, epochs=epochs,
                      rhs_per_problem=16, seed=seed, progress=progress).fit(problem)
    print(f"loss (eq. 42) from {trainer.history_.loss[0]:.3f} to "
          f"{trainer.history_.loss[-1]:.3f} in {epochs} epochs")
    evaluation = trainer.evaluate([problem])
    print(evaluation)
    return evaluation


def main() -> None:
    fit_matrix()
    learn_preconditioner()


if __name__ == "__main__":
    main()
