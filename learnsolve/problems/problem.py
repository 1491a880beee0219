"""Problem: a sparse system with what solvers and learned methods need around it;
ProblemSet: a seeded, reproducible collection of problems with a train/test split."""
from __future__ import annotations

import dataclasses
import numbers
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch

from ..core import validation as V
from ..core.validation import check_count
from ..core.csr import CSRMatrix

__all__ = ["Problem", "ProblemSet"]


def as_tensor(x, dtype: torch.dtype, device=None) -> torch.Tensor:
    """A numpy array or tensor as a tensor of ``dtype`` on ``device``."""
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(np.ascontiguousarray(x))
    return torch.as_tensor(x).to(device=device, dtype=dtype)


def _check_vector(x, name: str, n: int, A: CSRMatrix, matrix_ok: bool) -> torch.Tensor | None:
    if x is None:
        return None
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(x)
    V.check_tensor(x, name)
    if not (x.is_floating_point() and x.shape[:1] == (n,) and
            (x.dim() == 1 or (matrix_ok and x.dim() == 2))):
        expected = f"({n},) or ({n}, k)" if matrix_ok else f"({n},)"
        raise ValueError(f"{name}: expected a float tensor of shape {expected}, got "
                         f"{x.dtype} {tuple(x.shape)}")
    return x.to(device=A.device, dtype=A.dtype)


@dataclass(eq=False)
class Problem:
    """A linear system ``A x = b`` with the data learned solvers use around it.

    Parameters
    ----------
    A : CSRMatrix
        The square system matrix.
    b : Tensor (n,) or (n, k), optional
        A fixed right-hand side. Without one, :meth:`rhs` draws random ones.
    coordinates : Tensor (n, d), optional
        Coordinates of the unknowns (the free nodes of a mesh or grid).
    boundary : Tensor (n,) of bool, optional
        The unknowns coupled to an eliminated Dirichlet node (next to the
        boundary of the domain).
    mesh : Mesh, optional
        The whole mesh, Dirichlet nodes included; unknown ``i`` is mesh node
        ``mesh.free[i]``.
    partition : Partition, optional
        A decomposition of the unknowns into overlapping subdomains.
    solution : Tensor, optional
        The exact solution (of the continuous problem, at the unknowns) when
        ``b`` is fixed and it is known.
    name : str
    seed : int
        Seed of the problem's own stream of random right-hand sides.
    info : dict
        Anything else (grid shape, mesh size, coefficient, ...).

    ``b``, ``coordinates`` and ``solution`` are converted to the dtype and
    device of ``A``; ``boundary`` to its device.

    Examples
    --------
    >>> import torch
    >>> from learnsolve.problems import poisson_1d
    >>> p = poisson_1d(4, dtype=torch.float64)
    >>> p.rhs(2, generator=torch.Generator().manual_seed(0)).shape
    torch.Size([4, 2])
    >>> p.to(torch.float32).A.dtype
    torch.float32
    """

    A: CSRMatrix
    b: torch.Tensor | None = None
    coordinates: torch.Tensor | None = None
    boundary: torch.Tensor | None = None
    mesh: Any = None
    partition: Any = None
    solution: torch.Tensor | None = None
    name: str = ""
    seed: int = 0
    info: dict = field(default_factory=dict)
    _generator: torch.Generator | None = field(default=None, init=False, repr=False)

    def __post_init__(self):
        if not isinstance(self.A, CSRMatrix):
            raise TypeError(f"A: expected a CSRMatrix, got {type(self.A).__name__}")
        m, n = self.A.shape
        if m != n:
            raise ValueError(f"A: expected a square matrix, got shape {self.A.shape}")
        self.b = _check_vector(self.b, "b", n, self.A, matrix_ok=True)
        self.solution = _check_vector(self.solution, "solution", n, self.A, matrix_ok=True)
        if self.coordinates is not None:
            c = self.coordinates
            c = torch.from_numpy(c) if isinstance(c, np.ndarray) else \
                V.check_tensor(c, "coordinates")
            if c.dim() != 2 or c.shape[0] != n or not c.is_floating_point():
                raise ValueError(f"coordinates: expected a float tensor of shape ({n}, d), got "
                                 f"{c.dtype} {tuple(c.shape)}")
            self.coordinates = c.to(device=self.A.device, dtype=self.A.dtype)
        if self.boundary is not None:
            d = self.boundary
            d = torch.from_numpy(d) if isinstance(d, np.ndarray) else V.check_tensor(d, "boundary")
            if d.dtype != torch.bool or d.shape != (n,):
                raise ValueError(f"boundary: expected a bool tensor of shape ({n},), got "
                                 f"{d.dtype} {tuple(d.shape)}")
            self.boundary = d.to(self.A.device)
        if self.mesh is not None:
            from .mesh import Mesh
            if not isinstance(self.mesh, Mesh):
                raise TypeError(f"mesh: expected a Mesh, got {type(self.mesh).__name__}")
            if self.mesh.num_free != n:
                raise ValueError(f"mesh: expected {n} free nodes (one per unknown), got "
                                 f"{self.mesh.num_free}")
        if self.partition is not None:
            from .decomposition import Partition
            if not isinstance(self.partition, Partition):
                raise TypeError(f"partition: expected a Partition, got "
                                f"{type(self.partition).__name__}")
            if self.partition.num_nodes != n:
                raise ValueError(f"partition: expected a partition of {n} nodes, got one of "
                                 f"{self.partition.num_nodes}")
        self.seed = check_count(self.seed, "seed", 0)

    # ------------------------------------------------------------------ properties
    @property
    def num_nodes(self) -> int:
        """The number of unknowns."""
        return self.A.shape[0]

    @property
    def dtype(self) -> torch.dtype:
        return self.A.dtype

    @property
    def device(self) -> torch.device:
        return self.A.device

    # ------------------------------------------------------------------ right-hand sides
    def rhs(self, k: int | None = None, *, generator: torch.Generator | None = None
            ) -> torch.Tensor:
        """The fixed right-hand side ``b`` if there is one, else a random one (see
        :meth:`random_rhs`)."""
        if self.b is not None:
            if k is not None and (self.b.dim() == 1 or self.b.shape[1] != k):
                raise ValueError(f"k: this problem has a fixed right-hand side of shape "
                                 f"{tuple(self.b.shape)}; use random_rhs for {k} random ones")
            return self.b
        return self.random_rhs(k, generator=generator)

    def random_rhs(self, k: int | None = None, *, seed: int | None = None,
                   generator: torch.Generator | None = None, distribution: str = "normal",
                   normalize: bool = False, draw_dtype: torch.dtype | None = None
                   ) -> torch.Tensor:
        """Random right-hand sides: shape ``(n,)``, or ``(n, k)`` for ``k`` columns.

        Drawn on the CPU (so the same numbers on every device), then moved to
        the problem's device and dtype. The stream: ``generator`` if given,
        else a fresh one seeded with ``seed``, else the problem's own stream
        (seeded with ``problem.seed``; each call continues it, :meth:`reseed`
        restarts it).

        Parameters
        ----------
        distribution : {"normal", "uniform"}
            Standard normal entries, or uniform in ``[0, 1)`` (paper eq. 49).
        normalize : bool
            Scale each column to unit 2-norm.
        draw_dtype : torch.dtype, optional
            The dtype the numbers are drawn in (default: the problem's), then
            converted. ``torch.float32`` for a float64 problem draws normal
            numbers about 4 times faster (torch's vectorised float32 sampler),
            each exact in float64 with a 24-bit significand: what random
            training vectors need (the Trainer draws so).

        Examples
        --------
        >>> import torch
        >>> from learnsolve.problems import poisson_1d
        >>> p = poisson_1d(5)
        >>> torch.equal(p.random_rhs(seed=3), p.random_rhs(seed=3))
        True
        >>> float(p.random_rhs(3, normalize=True).norm(dim=0)[0])
        1.0
        """
        if k is not None:
            k = check_count(k, "k")
        if distribution not in ("normal", "uniform"):
            raise ValueError(f"distribution: expected 'normal' or 'uniform', got "
                             f"{distribution!r}")
        if generator is None:
            if seed is not None:
                generator = torch.Generator().manual_seed(check_count(seed, "seed", 0))
            else:
                if self._generator is None:
                    self.reseed()
                generator = self._generator
        elif not isinstance(generator, torch.Generator):
            raise TypeError(f"generator: expected a torch.Generator, got "
                            f"{type(generator).__name__}")
        if draw_dtype is None:
            draw_dtype = self.dtype
        elif draw_dtype not in (torch.float32, torch.float64):
            raise TypeError(f"draw_dtype: expected torch.float32 or torch.float64, got "
                            f"{draw_dtype!r}")
        shape = (self.num_nodes,) if k is None else (self.num_nodes, k)
        draw = torch.randn if distribution == "normal" else torch.rand
        x = draw(shape, generator=generator, dtype=draw_dtype,
                 device=generator.device).to(self.dtype)
        if normalize:
            x = x / x.norm(dim=0).clamp_min(torch.finfo(x.dtype).tiny)
        return x.to(self.device)

    def reseed(self, seed: int | None = None) -> "Problem":
        """Restart the problem's own random stream (from ``seed``, default ``self.seed``)."""
        if seed is not None:
            self.seed = check_count(seed, "seed", 0)
        self._generator = torch.Generator().manual_seed(self.seed)
        return self

    # ------------------------------------------------------------------ copies
    def to(self, *args, **kwargs) -> "Problem":
        """A copy on another device and/or with another float dtype, as ``Tensor.to``.

        The matrix, right-hand side, coordinates, solution, boundary flags and
        partition move; the mesh (numpy) stays as it is. The copy's random
        stream restarts from ``seed``.
        """
        A = self.A.to(*args, **kwargs)

        def move(x):
            return None if x is None else x.to(device=A.device, dtype=A.dtype)

        return dataclasses.replace(
            self, A=A, b=move(self.b), coordinates=move(self.coordinates),
            solution=move(self.solution),
            boundary=None if self.boundary is None else self.boundary.to(A.device),
            partition=None if self.partition is None else self.partition.to(A.device),
            info=dict(self.info))

    def with_partition(self, num_parts: int, overlap: int = 1, *, method: str = "auto"
                       ) -> "Problem":
        """A copy with ``partition`` set to :func:`partition` of this problem.

        Examples
        --------
        >>> from learnsolve.problems import poisson_2d
        >>> p = poisson_2d(8).with_partition(4, overlap=1)
        >>> p.partition.num_parts, [len(c) for c in p.partition.parts]
        (4, [16, 16, 16, 16])
        """
        from .decomposition import partition
        return dataclasses.replace(self, partition=partition(self, num_parts, overlap,
                                                             method=method),
                                   info=dict(self.info))

    def mesh_values(self, x) -> np.ndarray:
        """Values at all mesh nodes from values at the unknowns: Dirichlet nodes get
        their boundary values (0 unless the problem has others). For plotting."""
        if self.mesh is None:
            raise ValueError("problem: expected a problem with a mesh")
        x = np.asarray(x.detach().cpu() if isinstance(x, torch.Tensor) else x, np.float64)
        if x.shape != (self.num_nodes,):
            raise ValueError(f"x: expected shape ({self.num_nodes},), got {x.shape}")
        out = np.zeros(self.mesh.num_nodes)
        out[self.mesh.free] = x
        g = self.info.get("dirichlet_values")
        if g is not None:
            out[self.mesh.boundary] = g
        return out

    def __repr__(self) -> str:
        parts = [f"{self.name!r}" if self.name else None, f"n={self.num_nodes}",
                 f"nnz={self.A.nnz}", f"dtype={self.dtype}", f"device={self.device}",
                 "fixed b" if self.b is not None else "random b",
                 None if self.mesh is None else f"mesh={self.mesh.num_triangles} triangles",
                 None if self.partition is None else
                 f"partition={self.partition.num_parts} parts, overlap {self.partition.overlap}"]
        return f"Problem({', '.join(p for p in parts if p)})"


def _child_seed(seed: int, index: int) -> int:
    """The seed of problem ``index`` of a set seeded with ``seed``: independent streams,
    the same whatever the size of the set."""
    state = np.random.SeedSequence(seed, spawn_key=(index,)).generate_state(1, np.uint64)[0]
    return int(state >> np.uint64(1))  # < 2**63: fits torch.Generator.manual_seed


class _FactoryProblem:
    """Problem ``i`` of a factory set: ``factory(seed_i, i)``, renamed ``"<name>, #i"``.
    A class rather than a closure, so that a set pickles where its factory does."""

    def __init__(self, factory: Callable[[int, int], Problem], seed: int):
        self.factory, self.seed = factory, seed

    def __call__(self, i: int) -> Problem:
        problem = self.factory(_child_seed(self.seed, i), i)
        if not isinstance(problem, Problem):
            raise TypeError(f"factory: expected it to return a Problem, got "
                            f"{type(problem).__name__} for index {i}")
        return dataclasses.replace(problem, name=f"{problem.name or 'problem'}, #{i}",
                                   info=dict(problem.info))


class _ListedProblem:
    """Problem ``i`` of a set made from a list (picklable)."""

    def __init__(self, problems: list):
        self.problems = problems

    def __call__(self, i: int) -> Problem:
        return self.problems[i]

    def nnz(self, i: int) -> int:
        return self.problems[i].A.nnz


class _MovedProblem:
    """Problem ``i`` of a set, moved or converted by ``Problem.to`` (picklable)."""

    def __init__(self, source: "ProblemSet", args: tuple, kwargs: dict):
        self.source, self.args, self.kwargs = source, args, kwargs

    def __call__(self, i: int) -> Problem:
        return self.source._get(i).to(*self.args, **self.kwargs)

    def nnz(self, i: int) -> int | None:
        return self.source._known_nnz(i)


class _FileProblem:
    """Problem ``i`` of a set of files: ``load_matrix(paths[i])``, read when first asked
    for and seeded as problem ``i`` of a factory set (picklable)."""

    def __init__(self, paths: tuple, seed: int, options: dict):
        self.paths, self.seed, self.options = paths, seed, options

    def __call__(self, i: int) -> Problem:
        from . import files     # looked up at each call: files imports this module
        return files.load_matrix(self.paths[i], seed=_child_seed(self.seed, i), **self.options)


class ProblemSet(Sequence):
    """A reproducible collection of problems: a distribution to train over.

    Built either from a list of problems, or from a factory ``factory(seed,
    index) -> Problem`` and a count. Problem ``i`` of a factory set is
    ``factory(seed_i, i)`` with ``seed_i`` derived from the set's ``seed`` and
    ``i`` alone (``numpy.random.SeedSequence(seed, spawn_key=(i,))``), so it is
    the same in every run, in every subset, and whatever ``count`` is; its
    name is the factory's with ``", #i"`` appended, so that the problems of
    a set, often all of one kind and size, are told apart (in evaluation
    tables and plots). Factory problems are made when first accessed and
    kept (``cache=True``). Problems given as a list keep their names.

    A set is a sequence: ``len``, iteration, ``set[i]``, ``set[a:b]`` and
    ``set[[i, j]]`` (subsets are sets sharing the cache).

    Examples
    --------
    >>> import torch
    >>> from learnsolve.problems import ProblemSet, fem_problem, random_polygon
    >>> def make(seed, index):
    ...     return fem_problem(random_polygon(0.3, seed=seed), seed=seed)
    >>> problems = ProblemSet(make, 10, seed=0)
    >>> train, test = problems.split(0.2)
    >>> len(train), len(test)
    (8, 2)
    >>> bool(torch.equal(ProblemSet(make, 3, seed=0)[1].A.values, problems[1].A.values))
    True
    >>> from learnsolve.problems import random_grid_problem
    >>> [p.name for p in ProblemSet(random_grid_problem, 2, seed=0)]
    ['2D diffusion, 32 x 32, #0', '2D diffusion, 32 x 32, #1']
    """

    def __init__(self, source: Callable[[int, int], Problem] | Sequence[Problem],
                 count: int | None = None, *, seed: int = 0, cache: bool = True):
        self.seed = check_count(seed, "seed", 0)
        if callable(source):
            if count is None:
                raise ValueError("count: expected the number of problems to make with the "
                                 "factory")
            count = check_count(count, "count", 0)
            self._make = _FactoryProblem(source, self.seed)
        else:
            problems = list(source)
            for i, p in enumerate(problems):
                if not isinstance(p, Problem):
                    raise TypeError(f"source: expected a factory or a sequence of Problem, "
                                    f"got {type(p).__name__} at index {i}")
            if count is not None and count != len(problems):
                raise ValueError(f"count: expected None or {len(problems)} (the number of "
                                 f"problems given), got {count}")
            count = len(problems)
            self._make = _ListedProblem(problems)
        self._indices = tuple(range(count))
        self._cache: dict[int, Problem] | None = {} if cache else None

    @classmethod
    def from_files(cls, paths: Sequence, *, dtype: torch.dtype | None = None, device=None,
                   symmetric: bool | None = None, seed: int = 0, cache: bool = True
                   ) -> "ProblemSet":
        """A set of the matrices of files (see :func:`~learnsolve.problems.load_matrix`),
        read lazily: each when its problem is first accessed, one file per problem.

        Creating the set reads no file; it checks that each exists and has a known
        suffix. Problem ``i`` is ``load_matrix(paths[i], dtype=dtype, device=device,
        symmetric=symmetric, seed=set.seed_of(i))``: named after its file, not
        renamed; its seed derived from ``seed`` and ``i`` as in a factory set;
        ``dtype`` (default: torch's default dtype) fixed when the set is made.
        ``cache=True`` keeps the problems read; ``cache=False`` reads the file at
        each access (one matrix in memory at a time when iterating). Subsets and
        :meth:`split` read nothing either.

        Parameters
        ----------
        paths : sequence of str or path-like
            The files, in order (:func:`~learnsolve.problems.matrix_files` lists
            a directory's).

        Examples
        --------
        >>> import pathlib, tempfile
        >>> from learnsolve.problems import ProblemSet, poisson_1d, save_matrix
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     paths = [save_matrix(poisson_1d(n), pathlib.Path(tmp) / f"p{n}.npz")
        ...              for n in range(2, 7)]
        ...     train, test = ProblemSet.from_files(paths, symmetric=True).split(0.4)
        ...     [p.name for p in train], [p.num_nodes for p in test]
        (['p3', 'p5', 'p6'], [2, 4])
        """
        import os

        from .files import _checked_path
        if isinstance(paths, (str, os.PathLike)):
            raise TypeError("paths: expected a sequence of files, got one path (matrix_files "
                            "lists the files of a directory)")
        paths = tuple(_checked_path(path)[0] for path in paths)
        problems = cls((), seed=seed, cache=cache)
        problems._make = _FileProblem(paths, problems.seed, dict(
            dtype=V.check_dtype(dtype), device=device, symmetric=symmetric))
        problems._indices = tuple(range(len(paths)))
        return problems

    def save(self, directory, *, workers: int = 1, overwrite: bool = False) -> Path:
        """Write the set to ``directory``: one file per problem and an ``index.json``;
        :meth:`load` reads it back lazily (format: :mod:`learnsolve.problems.store`).

        Everything a problem carries is written and reads back exactly: the matrix,
        ``b``, coordinates, boundary flags, solution, mesh, partition, name, seed and
        ``info`` (whose entries must be None, bools, numbers, strings, tensors, numpy
        arrays or scalars, lists, tuples and str-keyed dicts of these, meshes,
        partitions or coefficient fields; anything else is a TypeError naming the
        entry). Tensors are written detached, from the CPU. Not written: a problem's
        random stream's state (a loaded problem's restarts from its seed). Problems
        are made one at a time and not added to the set's cache.

        Parameters
        ----------
        directory : str or path-like
            Created if need be; it must be empty unless ``overwrite``.
        workers : int
            Processes making and writing the problems (``spawn``ed, one thread
            each); 1: all in this process. With more, the set is pickled to the
            workers: a factory set's factory must be a module-level function.
        overwrite : bool
            Replace a set saved in ``directory``: its files are removed first
            (other files are left alone; so not the directory this set reads from).

        Returns
        -------
        Path
            ``directory``.

        Examples
        --------
        >>> import tempfile
        >>> from learnsolve.problems import ProblemSet, random_grid_problem
        >>> problems = ProblemSet(random_grid_problem, 2, seed=0)
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     sorted(p.name for p in problems.save(tmp).iterdir())
        ['index.json', 'problem-000000.pt', 'problem-000001.pt']
        """
        from . import store     # looked up at each call: store imports this module
        return store.save(self, directory, workers=workers, overwrite=overwrite)

    @classmethod
    def load(cls, directory, *, device=None, cache: bool = False) -> "ProblemSet":
        """The set :meth:`save` wrote to ``directory``, read lazily.

        Only ``index.json`` is read here. Problem ``i`` is read, from its own file,
        when accessed, and checked (format, version, and its name, size, nnz and
        dtype against the index): a missing file is a FileNotFoundError, any other
        fault a ValueError naming the file. Files are read with
        ``torch.load(weights_only=True)``: one holding anything but tensors,
        numbers, strings, lists and dicts is refused, not run. Subsets,
        :meth:`split` and :meth:`to` read nothing. The set has the saved set's
        seed and the problems their indices in it, so :meth:`seed_of` is the
        saved set's.

        Parameters
        ----------
        device : torch.device or str, optional
            Where the problems go (default: the CPU).
        cache : bool
            Keep the problems read. Default: read the file at each access (one
            problem in memory at a time when iterating over a large set).

        Examples
        --------
        >>> import tempfile, torch
        >>> from learnsolve.problems import ProblemSet, random_grid_problem
        >>> problems = ProblemSet(random_grid_problem, 4, seed=0)
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     loaded = ProblemSet.load(problems.save(tmp))
        ...     train, test = loaded.split(0.5)                   # reads nothing
        ...     a, b = loaded[1], problems[1]                     # reads problem-000001.pt
        >>> bool(torch.equal(a.A.values, b.A.values)), a.name == b.name, a.seed == b.seed
        (True, True, True)
        >>> loaded.seed == problems.seed, loaded.seed_of(3) == problems.seed_of(3)
        (True, True)
        """
        from . import store
        return store.load(directory, device=device, cache=cache)

    @classmethod
    def _view(cls, parent: "ProblemSet", indices, make=None, cache=None) -> "ProblemSet":
        view = cls.__new__(cls)
        view.seed = parent.seed
        view._make = parent._make if make is None else make
        view._indices = tuple(indices)
        view._cache = parent._cache if cache is None else cache
        return view

    @property
    def indices(self) -> tuple[int, ...]:
        """The indices, in the set this one was taken from, of its problems."""
        return self._indices

    def seed_of(self, i: int) -> int:
        """The seed the factory gets for problem ``i`` of this set."""
        return _child_seed(self.seed, self._indices[i])

    def __len__(self) -> int:
        return len(self._indices)

    def nnz_of(self, i: int) -> int | None:
        """The stored entries of problem ``i``'s matrix if the set knows them without
        making or reading the problem (a set of a list of problems; a set loaded from
        disk, whose index has them), else None (a factory set, whatever it has made:
        the answer is the same in every process). What a distributed training balances
        its shares by."""
        return self._known_nnz(self._indices[i])

    def _known_nnz(self, source_index: int) -> int | None:
        nnz = getattr(self._make, "nnz", None)
        return None if nnz is None else nnz(source_index)

    def _get(self, source_index: int) -> Problem:
        if self._cache is None:
            return self._make(source_index)
        if source_index not in self._cache:
            self._cache[source_index] = self._make(source_index)
        return self._cache[source_index]

    def __getitem__(self, item):
        if isinstance(item, torch.Tensor) and item.dim() == 0:
            item = int(item)
        if isinstance(item, slice):
            return ProblemSet._view(self, self._indices[item])
        if isinstance(item, (Sequence, np.ndarray, torch.Tensor)) and not isinstance(item, str):
            return ProblemSet._view(self, [self._indices[int(i)] for i in item])
        if isinstance(item, bool) or not isinstance(item, numbers.Integral):
            raise TypeError(f"index: expected an integer, a slice or a sequence of integers, "
                            f"got {type(item).__name__}")
        return self._get(self._indices[int(item)])  # IndexError when out of range

    def __iter__(self) -> Iterator[Problem]:
        for i in self._indices:
            yield self._get(i)

    def split(self, test_fraction: float = 0.2, *, shuffle: bool = True
              ) -> tuple["ProblemSet", "ProblemSet"]:
        """``(train, test)``: ``round(test_fraction * len)`` problems for testing.

        With ``shuffle`` the split is a permutation seeded with the set's seed
        (the same in every run); otherwise the test set is the tail.
        """
        if not 0.0 <= test_fraction <= 1.0:
            raise ValueError(f"test_fraction: expected a number in [0, 1], got {test_fraction}")
        n = len(self)
        n_test = int(round(test_fraction * n))
        order = np.arange(n)
        if shuffle:
            order = np.random.default_rng([self.seed, 0x5EED]).permutation(n)
        train = sorted(order[:n - n_test].tolist())
        test = sorted(order[n - n_test:].tolist())
        return self[train], self[test]

    def to(self, *args, **kwargs) -> "ProblemSet":
        """The same set with each problem moved/converted by ``Problem.to`` (lazily)."""
        return ProblemSet._view(self, self._indices, make=_MovedProblem(self, args, kwargs),
                                cache={} if self._cache is not None else None)

    def __repr__(self) -> str:
        return f"ProblemSet({len(self)} problems, seed={self.seed})"
