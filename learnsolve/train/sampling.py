"""The random right-hand sides a training step and the validation loss are computed on.

Each problem's block ``X`` of ``(n, J)`` unit 2-norm columns is drawn by
:meth:`Problem.random_rhs <learnsolve.problems.Problem.random_rhs>` from the
trainer's CPU generator, directly in the problem's dtype (no float64 draw cast
down), on the CPU so that every device sees the same numbers, and moved to the
problem's device once. The problems of a step draw in their order, so that
one stream gives the same vectors whatever ``problems_per_step`` is.
"""
from __future__ import annotations

from typing import Iterator, Sequence

import torch

from ..problems.problem import Problem

__all__ = ["draw_rhs", "fixed_rhs"]


def draw_rhs(problems: Sequence[Problem], count: int, generator: torch.Generator,
             distribution: str = "normal") -> list[torch.Tensor]:
    """One block of ``count`` random unit vectors per problem, drawn in turn from
    ``generator``.

    Examples
    --------
    >>> from learnsolve.problems import poisson_1d
    >>> g = torch.Generator().manual_seed(0)
    >>> X = draw_rhs([poisson_1d(4), poisson_1d(6, dtype=torch.float64)], 3, g)
    >>> [(tuple(x.shape), x.dtype) for x in X]
    [((4, 3), torch.float32), ((6, 3), torch.float64)]
    >>> X[1].norm(dim=0).tolist()
    [1.0, 1.0, 1.0]
    """
    return [problem.random_rhs(count, generator=generator, distribution=distribution,
                               normalize=True) for problem in problems]


def fixed_rhs(problems: Sequence[Problem], count: int, seed: int,
              distribution: str = "normal") -> Iterator[tuple[Problem, torch.Tensor]]:
    """``(problem, X)`` for each problem, from a generator seeded anew with ``seed``: the
    same vectors at every call (the validation loss of every epoch compares). Drawn one
    problem at a time, as they are used.

    Examples
    --------
    >>> from learnsolve.problems import poisson_1d
    >>> first = [X for _, X in fixed_rhs([poisson_1d(4)], 2, seed=0)]
    >>> again = [X for _, X in fixed_rhs([poisson_1d(4)], 2, seed=0)]
    >>> torch.equal(first[0], again[0])
    True
    """
    generator = torch.Generator().manual_seed(seed)
    for problem in problems:
        yield problem, draw_rhs([problem], count, generator, distribution)[0]
