"""The random right-hand sides a training step and the validation loss are computed on.

Each problem's block ``X`` of ``(n, J)`` unit 2-norm columns is drawn by
:meth:`Problem.random_rhs <learnsolve.problems.Problem.random_rhs>` from a
generator of its own, seeded from a stream seed and the problem's *position*
(:func:`position_seed`):
its place in the epoch's shuffled order for training (the stream seed drawn
once per epoch from the trainer's generator), its index among the validation
problems for ``val_loss``. The numbers are drawn in float32 (torch's vectorised
sampler, about 4 times faster than float64's: a 65,536 x 8 block of normal
numbers in 2 ms instead of 9), each exact in a float64 problem's dtype, on the
CPU so that every device sees the same numbers, then normalised in the problem's
dtype and moved to its device once.

So a problem's vectors do not depend on which other problems share its step,
nor on which process draws them: the same whatever ``problems_per_step`` is,
and the same in a distributed training, where each process draws only the
vectors of its own share of the problems (:mod:`learnsolve.train.distributed`).
"""
from __future__ import annotations

from typing import Iterator, Sequence

import torch

from ..problems.problem import Problem

__all__ = ["draw_rhs", "fixed_rhs", "position_seed", "stream_seed"]


def stream_seed(generator: torch.Generator) -> int:
    """A seed for the vectors of an epoch, drawn from the trainer's ``generator``.

    Examples
    --------
    >>> g = torch.Generator().manual_seed(0)
    >>> stream_seed(g) == stream_seed(torch.Generator().manual_seed(0))
    True
    """
    return int(torch.randint(0, 2 ** 62, (1,), generator=generator))


_MASK = (1 << 64) - 1


def position_seed(seed: int, position: int) -> int:
    """The seed of the vectors of the problem at ``position`` of a stream seeded with
    ``seed``: splitmix64 of ``seed + (position + 1) * 0x9E3779B97F4A7C15`` (mod 2**64),
    halved to fit ``torch.Generator.manual_seed``. Every bit of it depends on every bit
    of both (torch's CPU generator keeps the low 32), at a microsecond a call (numpy's
    SeedSequence costs 40).

    Examples
    --------
    >>> position_seed(0, 0), position_seed(0, 1) != position_seed(1, 0)
    (8147104208329303767, True)
    """
    z = (seed + (position + 1) * 0x9E3779B97F4A7C15) & _MASK
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK
    return (z ^ (z >> 31)) >> 1


def draw_rhs(problems: Sequence[Problem], count: int, seed: int, positions: Sequence[int],
             distribution: str = "normal") -> list[torch.Tensor]:
    """One block of ``count`` random unit vectors per problem, problem ``k`` drawn (in
    float32) from a generator seeded with ``position_seed(seed, positions[k])``.

    Examples
    --------
    >>> from learnsolve.problems import poisson_1d
    >>> X = draw_rhs([poisson_1d(4), poisson_1d(6, dtype=torch.float64)], 3, seed=0,
    ...              positions=[0, 1])
    >>> [(tuple(x.shape), x.dtype) for x in X]
    [((4, 3), torch.float32), ((6, 3), torch.float64)]
    >>> torch.allclose(X[1].norm(dim=0), torch.ones(3, dtype=torch.float64))
    True
    >>> torch.equal(draw_rhs([poisson_1d(6, dtype=torch.float64)], 3, 0, [1])[0], X[1])
    True
    """
    if len(problems) != len(positions):
        raise ValueError(f"positions: expected one per problem ({len(problems)}), got "
                         f"{len(positions)}")
    return [problem.random_rhs(count, seed=position_seed(seed, position),
                               distribution=distribution, normalize=True,
                               draw_dtype=torch.float32)
            for problem, position in zip(problems, positions)]


def fixed_rhs(problems: Sequence[Problem], count: int, seed: int,
              distribution: str = "normal", positions: Sequence[int] | None = None
              ) -> Iterator[tuple[Problem, torch.Tensor]]:
    """``(problem, X)`` for each problem, ``X`` from a generator seeded with ``seed`` and
    the problem's position (default: its index in ``problems``): the same vectors at
    every call, so that the validation losses of every epoch compare. Drawn one
    problem at a time, as they are used.

    Examples
    --------
    >>> from learnsolve.problems import poisson_1d
    >>> first = [X for _, X in fixed_rhs([poisson_1d(4)], 2, seed=0)]
    >>> again = [X for _, X in fixed_rhs([poisson_1d(4)], 2, seed=0)]
    >>> torch.equal(first[0], again[0])
    True
    """
    positions = range(len(problems)) if positions is None else positions
    for problem, position in zip(problems, positions):
        yield problem, draw_rhs([problem], count, seed, [position], distribution)[0]
