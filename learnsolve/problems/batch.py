"""Several problems as one: a block-diagonal system, like PyG's ``Batch`` of graphs.

A learned preconditioner trained on thousands of small problems spends its time in
Python and in per-call overheads, not in arithmetic: one problem per native call
wastes the machine. :func:`batch_problems` puts the matrices of a step in one
block-diagonal :class:`~learnsolve.CSRMatrix` (one graph for a network, one
triangular solve for all factors), and :func:`block_rhs` the right-hand sides of
each problem in its own rows and columns, so that every column of the batch is a
system of one problem: a Krylov method, which treats the columns independently,
runs on each as it would alone, and a loss that is a mean over columns (the
residual-history losses ``pcg_loss`` and ``gmres_loss``) is the mean of the
problems' losses.
"""
from __future__ import annotations

from typing import Sequence

import torch

from ..core.construct import block_diag
from .problem import Problem

__all__ = ["batch_problems", "block_rhs", "unbatch"]


def batch_problems(problems: Sequence[Problem]) -> Problem:
    """The problems as one block-diagonal problem.

    Its ``A`` is the block-diagonal matrix of their matrices (in order; its values
    are their concatenation, differentiable in each), ``coordinates`` and
    ``boundary`` are concatenated where every problem has them, and
    ``info["offsets"]`` is the first row of each block (``len(problems) + 1``
    entries, the last the total size). Right-hand sides, partitions and meshes
    are not carried over.

    Examples
    --------
    >>> import torch
    >>> from learnsolve.problems import batch_problems, poisson_1d, poisson_2d
    >>> batch = batch_problems([poisson_1d(3), poisson_2d(2)])
    >>> batch.A.shape, batch.info["offsets"]
    ((7, 7), [0, 3, 7])
    """
    problems = list(problems)
    if not problems or not all(isinstance(p, Problem) for p in problems):
        raise TypeError("problems: expected a non-empty sequence of Problems")
    first = problems[0]
    for i, p in enumerate(problems[1:], 1):
        if (p.dtype, p.device) != (first.dtype, first.device):
            raise ValueError(f"problems[{i}]: expected dtype {first.dtype} on {first.device} "
                             f"(those of problems[0]), got {p.dtype} on {p.device}")
    sizes = [p.num_nodes for p in problems]
    offsets = [0]
    for n in sizes:
        offsets.append(offsets[-1] + n)

    def joined(name: str):
        parts = [getattr(p, name) for p in problems]
        if any(part is None for part in parts) or len({part.shape[1:] for part in parts}) > 1:
            return None
        return torch.cat(parts)

    return Problem(block_diag([p.A for p in problems]), coordinates=joined("coordinates"),
                   boundary=joined("boundary"), name=f"batch of {len(problems)} problems",
                   seed=first.seed, info={"offsets": offsets,
                                          "names": [p.name for p in problems]})


def block_rhs(batch: Problem, blocks: Sequence[torch.Tensor]) -> torch.Tensor:
    """The right-hand sides of the problems of ``batch``, each in its own rows and
    columns: ``blocks[p]`` of shape ``(n_p, J_p)`` (or ``(n_p,)``) lands in the
    rows of block ``p`` and in columns of its own, zero elsewhere; the result is
    ``(sum n_p, sum J_p)``, differentiable in the blocks.

    Examples
    --------
    >>> import torch
    >>> from learnsolve.problems import batch_problems, block_rhs, poisson_1d
    >>> batch = batch_problems([poisson_1d(2), poisson_1d(1)])
    >>> block_rhs(batch, [torch.ones(2, 2), 2 * torch.ones(1, 1)])
    tensor([[1., 1., 0.],
            [1., 1., 0.],
            [0., 0., 2.]])
    """
    offsets = batch.info.get("offsets")
    if offsets is None:
        raise ValueError("batch: expected a problem made by batch_problems (info['offsets'])")
    if len(blocks) != len(offsets) - 1:
        raise ValueError(f"blocks: expected one block per problem ({len(offsets) - 1}), got "
                         f"{len(blocks)}")
    columns = []
    for p, X in enumerate(blocks):
        X = X if X.dim() == 2 else X[:, None]
        rows = offsets[p + 1] - offsets[p]
        if X.shape[0] != rows:
            raise ValueError(f"blocks[{p}]: expected {rows} rows (problem {p}), got "
                             f"{X.shape[0]}")
        columns.append(torch.nn.functional.pad(
            X, (0, 0, offsets[p], offsets[-1] - offsets[p + 1])))
    return torch.cat(columns, dim=1)


def unbatch(batch: Problem, x: torch.Tensor) -> list[torch.Tensor]:
    """The rows of each problem of ``batch`` in ``x`` (a vector or a block over the
    batch's unknowns): the inverse of the row stacking of :func:`batch_problems`.

    Examples
    --------
    >>> import torch
    >>> from learnsolve.problems import batch_problems, poisson_1d, unbatch
    >>> batch = batch_problems([poisson_1d(2), poisson_1d(1)])
    >>> [part.tolist() for part in unbatch(batch, torch.arange(3.0))]
    [[0.0, 1.0], [2.0]]
    """
    offsets = batch.info["offsets"]
    return [x[offsets[p]:offsets[p + 1]] for p in range(len(offsets) - 1)]
