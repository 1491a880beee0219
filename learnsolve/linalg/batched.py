"""Many small sparse systems factored once and solved together."""
from __future__ import annotations

from typing import Sequence

import torch

from ..core.construct import block_diag
from ..core.csr import CSRMatrix
from .direct import SparseLU

__all__ = ["BatchedLU", "splu_batched"]


class BatchedLU:
    """LU factorisations of a list of square sparse matrices, solved in one call.

    Domain decomposition solves one small system per subdomain, hundreds per
    iteration. Here the matrices are put on the diagonal of one block-diagonal
    matrix and factored once (SuperLU's ordering keeps the blocks apart, so
    the factors are those of the blocks); a solve for all blocks and any
    number of right-hand sides is one call, whose cost is the arithmetic of
    the blocks' triangular solves and does not grow with a Python loop over
    the blocks. Differentiable like :class:`SparseLU`, in every block's
    values and in the right-hand sides; the backward reuses the factors.

    Create it with :func:`splu_batched`.

    Attributes
    ----------
    matrix : CSRMatrix
        The block-diagonal matrix that was factored.
    sizes : list of int
        The order of each block.
    offsets : torch.Tensor
        ``offsets[i]`` is the first row of block ``i`` in a stacked vector
        (int64, length ``len(sizes) + 1``).
    """

    def __init__(self, matrices: Sequence[CSRMatrix], *, permc_spec: str = "COLAMD"):
        matrices = list(matrices)
        for i, A in enumerate(matrices):
            if isinstance(A, CSRMatrix) and A.shape[0] != A.shape[1]:
                raise ValueError(f"matrices[{i}]: expected a square matrix, got shape {A.shape}")
        self.matrix = block_diag(matrices)
        self.sizes = [A.shape[0] for A in matrices]
        sizes = torch.tensor(self.sizes, dtype=torch.long)
        self.offsets = torch.cat([sizes.new_zeros(1), sizes.cumsum(0)])
        self._lu = SparseLU(self.matrix, permc_spec=permc_spec)

    def __len__(self) -> int:
        return len(self.sizes)

    def solve(self, b, trans: bool = False):
        """Solve every block's system, ``A_i x_i = b_i`` (or ``A_i^T x_i = b_i``).

        Parameters
        ----------
        b : torch.Tensor or sequence of torch.Tensor
            The right-hand sides stacked, shape ``(sum(sizes),)`` or
            ``(sum(sizes), k)``; or one tensor per block, shapes ``(n_i,)`` or
            ``(n_i, k)`` with the same ``k`` for all.
        trans : bool
            Solve with the transposed blocks.

        Returns
        -------
        torch.Tensor or list of torch.Tensor
            The solutions, in the form ``b`` was given.

        Examples
        --------
        >>> import torch, learnsolve
        >>> from learnsolve.linalg import splu_batched
        >>> blocks = [2.0 * learnsolve.eye(2), 4.0 * learnsolve.eye(1)]
        >>> lu = splu_batched(blocks)
        >>> lu.solve(torch.tensor([2.0, 4.0, 4.0]))
        tensor([1., 2., 1.])
        >>> lu.solve([torch.ones(2), torch.ones(1)])
        [tensor([0.5000, 0.5000]), tensor([0.2500])]
        """
        if isinstance(b, torch.Tensor):
            return self._lu.solve(b, trans)
        parts = list(b)
        if len(parts) != len(self.sizes):
            raise ValueError(f"b: expected {len(self.sizes)} right-hand sides (one per block), "
                             f"got {len(parts)}")
        for i, (part, size) in enumerate(zip(parts, self.sizes)):
            if not isinstance(part, torch.Tensor):
                raise TypeError(f"b[{i}]: expected a torch.Tensor, got {type(part).__name__}")
            if part.dim() not in (1, 2) or part.shape[0] != size or (
                    part.shape[1:] != parts[0].shape[1:]):
                raise ValueError(f"b[{i}]: expected shape ({size},) or ({size}, k) with the k "
                                 f"of b[0], got {tuple(part.shape)}")
        x = self._lu.solve(torch.cat(parts), trans)
        return list(torch.split(x, self.sizes))


def splu_batched(matrices: Sequence[CSRMatrix], *, permc_spec: str = "COLAMD") -> BatchedLU:
    """Factor many small square sparse matrices at once, to solve them together.

    Parameters
    ----------
    matrices : sequence of CSRMatrix
        Square, nonsingular, of any orders; same dtype and device.
    permc_spec : str
        SuperLU's column ordering (see :func:`splu`).

    Returns
    -------
    BatchedLU

    Raises
    ------
    torch.linalg.LinAlgError
        If a block is singular.

    Examples
    --------
    >>> import torch, learnsolve
    >>> from learnsolve.linalg import splu_batched
    >>> T = learnsolve.diags([-1.0, 2.0, -1.0], [-1, 0, 1], shape=(3, 3), dtype=torch.float64)
    >>> lu = splu_batched([T, 2 * T])
    >>> x = lu.solve(torch.ones(6, dtype=torch.float64))
    >>> x
    tensor([1.5000, 2.0000, 1.5000, 0.7500, 1.0000, 0.7500], dtype=torch.float64)
    """
    return BatchedLU(matrices, permc_spec=permc_spec)
