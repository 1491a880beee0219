"""Problem sets on disk: written by :meth:`ProblemSet.save`, read lazily by
:meth:`ProblemSet.load`, one file per problem, so that a set larger than memory
streams from disk and each training process reads only its own problems.

Format (version 1) of a directory:

- ``problem-000000.pt``, ``problem-000001.pt``, ...: one ``torch.save`` file
  per problem, ``{"format": "learnsolve-problem", "version": 1, "problem":
  <node>}``, where a node is ``None``, a bool, int, float, str, a (CPU,
  dense) tensor, a list of nodes, or a dict tagged with its ``"type"``:
  ``{"type": "dict", "items": {str: node}}``, ``{"type": "tuple", "items":
  [node]}``, ``{"type": "ndarray", "data": tensor}``, ``{"type": "numpy
  scalar", "data": tensor}`` or ``{"type": "object", "class": name,
  "arguments": {str: node}}`` for the classes of :data:`CLASSES`, rebuilt
  through their constructors (so their checks run) from those arguments.
  The problem is such an object: its matrix, ``b``, coordinates, boundary
  flags, solution, mesh, partition, name, seed and ``info``. Its random
  stream's state is not saved: a loaded problem's stream starts from its
  ``seed``, as after :meth:`Problem.reseed`.
- ``index.json``: ``{"format": "learnsolve-problem-set", "version": 1,
  "seed": <the set's seed>, "count": N, "problems": [{"file", "index",
  "name", "num_nodes", "nnz", "dtype"}, ...]}``, ``index`` being the
  problem's index in the set it was saved from (what :meth:`ProblemSet.seed_of`
  derives its seed from).

Each file is written under a temporary name in the directory and renamed into
place, the index last: an interrupted save leaves no index, or none pointing
at a partial file. Reading never unpickles objects: files are read with
``torch.load(weights_only=True)`` (a file holding anything but tensors,
numbers, strings, lists and dicts is refused, not run) and only the classes of
:data:`CLASSES` are built.

Examples
--------
>>> import pathlib, tempfile, torch
>>> from learnsolve.problems import ProblemSet, poisson_1d
>>> with tempfile.TemporaryDirectory() as tmp:
...     _ = ProblemSet([poisson_1d(n, dtype=torch.float64) for n in (3, 4)]).save(tmp)
...     (pathlib.Path(tmp) / "problem-000001.pt").unlink()
...     problems = ProblemSet.load(tmp)                 # reads index.json alone
...     problems[0].num_nodes                           # reads problem-000000.pt
...     try:
...         problems[1]
...     except FileNotFoundError as error:
...         print(error)  # doctest: +ELLIPSIS
3
.../problem-000001.pt: expected a problem file listed in index.json, but there is no such file
"""
from __future__ import annotations

import dataclasses
import json
import multiprocessing
import os
import pickle
import re
import tempfile
import zipfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch

from ..core.csr import CSRMatrix
from ..core.validation import check_bool, check_count
from .decomposition import Partition
from .diffusion import JumpCoefficient, LognormalCoefficient
from .mesh import Mesh
from .problem import Problem, ProblemSet

__all__ = ["save", "load", "read_problem", "encode", "decode", "CLASSES", "FORMAT", "VERSION"]

FORMAT = "learnsolve-problem-set"
PROBLEM_FORMAT = "learnsolve-problem"
VERSION = 1
INDEX = "index.json"
DTYPES = {"float32": torch.float32, "float64": torch.float64}
_PROBLEM_FILE = re.compile(r"problem-[0-9]{6,}\.pt")
_OWN_FILE = re.compile(r"index\.json|problem-[0-9]{6,}\.pt|\.(index\.json|problem-[0-9]{6,}\.pt)"
                       r"\.[A-Za-z0-9_]+\.tmp")
# What torch.load raises on a zip archive that is corrupt or holds more than weights.
_READ_ERRORS = (pickle.UnpicklingError, RuntimeError, EOFError, KeyError, ValueError)


def _init_fields(obj) -> dict:
    """A dataclass's constructor arguments: its fields that ``__init__`` takes."""
    return {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj) if f.init}


#: The classes a problem file may hold, by name: each with the constructor arguments that
#: rebuild an instance.
CLASSES = {
    "Problem": (Problem, _init_fields),
    "CSRMatrix": (CSRMatrix, lambda A: {"crow_indices": A.crow_indices,
                                        "col_indices": A.col_indices, "values": A.values,
                                        "shape": A.shape}),
    "Mesh": (Mesh, _init_fields),
    "Partition": (Partition, _init_fields),
    "LognormalCoefficient": (LognormalCoefficient, lambda k: {
        "seed": k.seed, "sigma": k.sigma, "correlation_length": k.correlation_length,
        "mean": k.mean, "num_modes": k.num_modes}),
    "JumpCoefficient": (JumpCoefficient, lambda k: {
        "seed": k.seed, "num_regions": k.num_regions, "contrast": k.contrast,
        "bounds": k.bounds}),
}
_SAVABLE = ("None, a bool, int, float, str, a dense tensor, a numpy array or scalar, a list, "
            "tuple or str-keyed dict of these, or a " + ", ".join(CLASSES))


# ---------------------------------------------------------------------------- encoding
def _tensor(x: torch.Tensor, where: str) -> torch.Tensor:
    """``x`` detached on the CPU, copied if it is a view of a larger storage (which
    ``torch.save`` would write whole)."""
    if x.layout != torch.strided:
        raise TypeError(f"{where}: cannot save a tensor of layout {x.layout} (expected a "
                        f"dense one)")
    x = x.detach().cpu()
    return x.clone() if x.untyped_storage().nbytes() > x.nbytes else x


def _array(x: np.ndarray, where: str) -> torch.Tensor:
    try:
        return torch.from_numpy(np.array(x, order="C"))     # a writable copy
    except TypeError as error:
        raise TypeError(f"{where}: cannot save a numpy array of dtype {x.dtype} (expected a "
                        f"dtype torch has)") from error


def _key(key, where: str) -> str:
    if type(key) is not str:
        raise TypeError(f"{where}: cannot save a dict key of type {type(key).__name__} "
                        f"(expected str keys), got {key!r}")
    return key


def encode(value, where: str):
    """``value`` as a node of the format (see the module's docstring); a TypeError naming
    ``where`` (and the path within it) for what cannot be saved."""
    if value is None or type(value) in (bool, int, float, str):
        return value
    if isinstance(value, torch.Tensor):
        return _tensor(value, where)
    if isinstance(value, np.ndarray):
        return {"type": "ndarray", "data": _array(value, where)}
    if isinstance(value, np.generic):
        return {"type": "numpy scalar", "data": _array(np.asarray(value), where)}
    if type(value) is list:
        return [encode(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if type(value) is tuple:
        return {"type": "tuple", "items": [encode(v, f"{where}[{i}]")
                                           for i, v in enumerate(value)]}
    if type(value) is dict:
        return {"type": "dict", "items": {_key(k, where): encode(v, f"{where}[{k!r}]")
                                          for k, v in value.items()}}
    cls, arguments = CLASSES.get(type(value).__name__, (None, None))
    if type(value) is not cls:
        raise TypeError(f"{where}: cannot save a value of type {type(value).__qualname__} "
                        f"(expected {_SAVABLE})")
    return {"type": "object", "class": cls.__name__,
            "arguments": {k: encode(v, f"{where}.{k}") for k, v in arguments(value).items()}}


# ---------------------------------------------------------------------------- decoding
def _fields(node: dict, keys: tuple, where: str) -> list:
    """The values of ``keys`` in the tagged dict ``node``, which must have no other key."""
    if set(node) != {"type", *keys}:
        raise ValueError(f"{where}: expected the keys {sorted(['type', *keys])} for a "
                         f"{node['type']!r} node, got {sorted(map(str, node))}")
    return [node[k] for k in keys]


def _expect(value, kind: type, where: str, what: str):
    if type(value) is not kind:
        raise ValueError(f"{where}: expected {what}, got {type(value).__name__}")
    return value


def _decode_object(node: dict, where: str):
    name, arguments = _fields(node, ("class", "arguments"), where)
    if name not in CLASSES:
        raise ValueError(f"{where}: expected an object of one of the classes {list(CLASSES)}, "
                         f"got {name!r}")
    cls = CLASSES[name][0]
    arguments = {_expect(k, str, where, "str argument names"): decode(v, f"{where}.{k}")
                 for k, v in _expect(arguments, dict, where, "a dict of arguments").items()}
    try:
        return cls(**arguments)
    except (TypeError, ValueError, AttributeError, IndexError) as error:
        raise ValueError(f"{where}: expected the arguments of a valid {name}, but {error}"
                         ) from error


def _decode_array(node: dict, where: str) -> np.ndarray:
    data, = _fields(node, ("data",), where)
    try:
        array = _expect(data, torch.Tensor, where, "a tensor").numpy()
    except (TypeError, RuntimeError) as error:
        raise ValueError(f"{where}: expected a tensor numpy can hold, but {error}") from error
    return array if node["type"] == "ndarray" else array[()]


def decode(node, where: str):
    """The value a node of the format stands for (the inverse of :func:`encode`); a
    ValueError naming ``where`` for a node that is not one."""
    if node is None or type(node) in (bool, int, float, str) or type(node) is torch.Tensor:
        return node
    if type(node) is list:
        return [decode(v, f"{where}[{i}]") for i, v in enumerate(node)]
    kind = node.get("type") if type(node) is dict else None
    if kind in ("ndarray", "numpy scalar"):
        return _decode_array(node, where)
    if kind == "object":
        return _decode_object(node, where)
    if kind == "tuple":
        items, = _fields(node, ("items",), where)
        return tuple(decode(v, f"{where}[{i}]")
                     for i, v in enumerate(_expect(items, list, where, "a list of items")))
    if kind == "dict":
        items, = _fields(node, ("items",), where)
        return {_expect(k, str, where, "str keys"): decode(v, f"{where}[{k!r}]")
                for k, v in _expect(items, dict, where, "a dict of items").items()}
    raise ValueError(f"{where}: expected None, a bool, int, float, str, tensor, list or a "
                     f"dict tagged with a known 'type', got {type(node).__name__}"
                     + (f" of type {kind!r}" if type(node) is dict else ""))


# ---------------------------------------------------------------------------- writing
def _write_atomic(directory: Path, name: str, write) -> None:
    """``write(file)`` into a temporary file of ``directory``, then renamed to ``name``."""
    handle, temporary = tempfile.mkstemp(dir=directory, prefix=f".{name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as file:
            write(file)     # a file object, not a path: torch.save then names no path inside
        os.replace(temporary, directory / name)
    except BaseException:
        os.unlink(temporary)
        raise


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def _problem_at(problems: ProblemSet, position: int) -> Problem:
    """Problem ``position`` of ``problems``, from its cache if there, else made without
    being cached (a set larger than memory is saved one problem at a time)."""
    index = problems.indices[position]
    cache = problems._cache
    return cache[index] if cache and index in cache else problems._make(index)


def _save_problem(problems: ProblemSet, position: int, directory: Path) -> dict:
    """Write problem ``position`` of ``problems``; its entry of the index."""
    problem = _problem_at(problems, position)
    record = {"format": PROBLEM_FORMAT, "version": VERSION,
              "problem": encode(problem, f"problems[{position}]")}
    name = f"problem-{position:06d}.pt"
    _write_atomic(directory, name, lambda file: torch.save(record, file))
    return {"file": name, "index": problems.indices[position], "name": problem.name,
            "num_nodes": problem.num_nodes, "nnz": problem.A.nnz,
            "dtype": _dtype_name(problem.dtype)}


def _prepare(directory, overwrite: bool) -> Path:
    """``directory``, created if need be; emptied of a saved set's files with
    ``overwrite``, else required to be empty."""
    if not isinstance(directory, (str, os.PathLike)):
        raise TypeError(f"directory: expected a str or a path, got {type(directory).__name__}")
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise NotADirectoryError(f"directory: expected a directory, got the file {directory}")
    directory.mkdir(parents=True, exist_ok=True)
    present = sorted(directory.iterdir())
    if present and not overwrite:
        raise FileExistsError(f"directory: expected a new or empty directory, but {directory} "
                              f"holds {len(present)} entries ({present[0].name!r}, ...); pass "
                              f"overwrite=True to replace a problem set saved there")
    (directory / INDEX).unlink(missing_ok=True)       # first: no index to stale files
    for path in present:
        if _OWN_FILE.fullmatch(path.name) and path.is_file():
            path.unlink(missing_ok=True)
    return directory


_worker: dict = {}      # in a worker process: the pickled set given, then the set


def _start_worker(payload: bytes, directory: Path) -> None:
    torch.set_num_threads(1)
    _worker.update(payload=payload, directory=directory)


def _save_in_worker(position: int) -> dict:
    if "problems" not in _worker:
        try:
            _worker["problems"] = pickle.loads(_worker["payload"])
        except (AttributeError, ImportError, pickle.UnpicklingError) as error:
            raise TypeError(f"workers: a worker process could not rebuild the set ({error}): "
                            f"with workers > 1 its factory must be importable from a module "
                            f"(not defined in an interactive session); use workers=1 to save "
                            f"in this process") from error
    return _save_problem(_worker["problems"], position, _worker["directory"])


def _save_parallel(problems: ProblemSet, directory: Path, workers: int) -> list[dict]:
    try:
        payload = pickle.dumps(problems)
    except (pickle.PicklingError, AttributeError, TypeError) as error:
        raise TypeError(f"workers: with workers > 1 the set is sent to worker processes, so "
                        f"it must pickle: a factory set's factory must be a module-level "
                        f"function (or a functools.partial of one), not a lambda or a local "
                        f"function, and a list set's problems must pickle; got: {error}. Use "
                        f"workers=1 to save in this process") from error
    count = len(problems)
    with ProcessPoolExecutor(max_workers=min(workers, count),
                             mp_context=multiprocessing.get_context("spawn"),
                             initializer=_start_worker, initargs=(payload, directory)) as pool:
        try:
            return list(pool.map(_save_in_worker, range(count),
                                 chunksize=max(1, count // (8 * workers))))
        except BaseException:
            pool.shutdown(cancel_futures=True)      # not the rest of the set after an error
            raise


def save(problems: ProblemSet, directory, *, workers: int = 1, overwrite: bool = False
         ) -> Path:
    """Write ``problems`` to ``directory`` (see :meth:`ProblemSet.save`)."""
    if not isinstance(problems, ProblemSet):
        raise TypeError(f"problems: expected a ProblemSet, got {type(problems).__name__}")
    workers = check_count(workers, "workers")
    directory = _prepare(directory, check_bool(overwrite, "overwrite"))
    if workers > 1 and len(problems) > 1:
        entries = _save_parallel(problems, directory, workers)
    else:
        entries = [_save_problem(problems, i, directory) for i in range(len(problems))]
    index = {"format": FORMAT, "version": VERSION, "seed": problems.seed,
             "count": len(entries), "problems": entries}
    _write_atomic(directory, INDEX, lambda file: file.write(
        json.dumps(index, indent=1).encode()))
    return directory


# ---------------------------------------------------------------------------- reading
def _check_entry(entry, i: int, path: Path) -> dict:
    where = f"{path}: problems[{i}]"
    keys = {"file", "index", "name", "num_nodes", "nnz", "dtype"}
    if type(entry) is not dict or set(entry) != keys:
        raise ValueError(f"{where}: expected a dict with the keys {sorted(keys)}, got "
                         f"{sorted(entry) if type(entry) is dict else type(entry).__name__}")
    if type(entry["file"]) is not str or not _PROBLEM_FILE.fullmatch(entry["file"]):
        raise ValueError(f"{where}: expected a file name problem-NNNNNN.pt, got "
                         f"{entry['file']!r}")
    for key, minimum in (("index", 0), ("num_nodes", 1), ("nnz", 0)):
        if type(entry[key]) is not int or entry[key] < minimum:
            raise ValueError(f"{where}: expected {key} an integer >= {minimum}, got "
                             f"{entry[key]!r}")
    if type(entry["name"]) is not str or entry["dtype"] not in DTYPES:
        raise ValueError(f"{where}: expected a str name and a dtype in {list(DTYPES)}, got "
                         f"{entry['name']!r} and {entry['dtype']!r}")
    return entry


def _read_index(directory: Path) -> dict:
    path = directory / INDEX
    if not directory.is_dir():
        raise (NotADirectoryError if directory.exists() else FileNotFoundError)(
            f"{directory}: expected a directory written by ProblemSet.save")
    if not path.is_file():
        raise FileNotFoundError(f"{path}: expected the index of a problem set written by "
                                f"ProblemSet.save, but there is no such file")
    try:
        index = json.loads(path.read_bytes())
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{path}: expected a JSON index, but {error}") from error
    if type(index) is not dict or index.get("format") != FORMAT:
        raise ValueError(f"{path}: expected the index of a problem set (format {FORMAT!r}), "
                         f"got format {index.get('format') if type(index) is dict else None!r}")
    if index.get("version") != VERSION:
        raise ValueError(f"{path}: expected format version {VERSION}, got "
                         f"{index.get('version')!r}")
    problems, seed = index.get("problems"), index.get("seed")
    if type(problems) is not list or index.get("count") != len(problems):
        raise ValueError(f"{path}: expected 'problems', a list of 'count' entries")
    if type(seed) is not int or seed < 0:
        raise ValueError(f"{path}: expected 'seed', an integer >= 0, got {seed!r}")
    index["problems"] = [_check_entry(entry, i, path) for i, entry in enumerate(problems)]
    return index


def _load_record(path: Path):
    if not path.is_file():
        raise FileNotFoundError(f"{path}: expected a problem file listed in {INDEX}, but "
                                f"there is no such file")
    reason = None if zipfile.is_zipfile(path) else "it is not a zip archive"
    if reason is None:
        try:
            return torch.load(path, map_location="cpu", weights_only=True)
        except _READ_ERRORS as error:
            reason = f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
    raise ValueError(f"{path}: expected a problem file written by ProblemSet.save, read "
                     f"with torch.load(weights_only=True) (tensors, numbers, strings, lists "
                     f"and dicts only: anything else is refused, not run), but {reason}")


def read_problem(path, entry: dict, device=None) -> Problem:
    """The problem of the file ``path``, checked against its ``entry`` of the index and
    moved to ``device`` (default: left on the CPU)."""
    path = Path(path)
    record = _load_record(path)
    if type(record) is not dict or set(record) != {"format", "version", "problem"} or \
            record["format"] != PROBLEM_FORMAT:
        raise ValueError(f"{path}: expected a dict with format {PROBLEM_FORMAT!r}, version and "
                         f"problem")
    if record["version"] != VERSION:
        raise ValueError(f"{path}: expected format version {VERSION}, got "
                         f"{record['version']!r}")
    problem = decode(record["problem"], f"{path}: problem")
    if type(problem) is not Problem or type(problem.info) is not dict:
        raise ValueError(f"{path}: expected a Problem with a dict info, got "
                         f"{type(problem).__name__}")
    found = {"name": problem.name, "num_nodes": problem.num_nodes, "nnz": problem.A.nnz,
             "dtype": _dtype_name(problem.dtype)}
    for key, value in found.items():
        if value != entry[key]:
            raise ValueError(f"{path}: expected {key} {entry[key]!r} (as {INDEX} says), got "
                             f"{value!r}")
    return problem if device is None else problem.to(device)


class _StoredProblem:
    """Problem ``i`` of a saved set: its file read and checked against the index when
    asked for (picklable)."""

    def __init__(self, directory: Path, entries: dict, device):
        self.directory, self.entries, self.device = directory, entries, device

    def __call__(self, i: int) -> Problem:
        entry = self.entries[i]
        return read_problem(self.directory / entry["file"], entry, self.device)

    def nnz(self, i: int) -> int:
        return self.entries[i]["nnz"]


def load(directory, *, device=None, cache: bool = False) -> ProblemSet:
    """The set saved in ``directory`` (see :meth:`ProblemSet.load`)."""
    if not isinstance(directory, (str, os.PathLike)):
        raise TypeError(f"directory: expected a str or a path, got {type(directory).__name__}")
    directory = Path(directory)
    device = None if device is None else torch.device(device)
    index = _read_index(directory)
    problems = ProblemSet((), seed=index["seed"], cache=check_bool(cache, "cache"))
    problems._make = _StoredProblem(directory, {e["index"]: e for e in index["problems"]},
                                    device)
    problems._indices = tuple(e["index"] for e in index["problems"])
    return problems
