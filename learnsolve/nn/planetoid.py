"""The Planetoid citation graphs (Cora, CiteSeer, PubMed) from local files.

The raw files are those of Yang et al.'s Planetoid and Kipf & Welling's GCN
repositories, ``ind.<name>.{x,y,tx,ty,allx,ally,graph,test.index}``: pickled
scipy sparse matrices (features), numpy arrays (one-hot labels), a dict of
neighbour lists (the graph) and a text file of test node indices. They are
read with a restricted unpickler that only builds numpy arrays, scipy sparse
matrices and plain containers (a pickle can run arbitrary code otherwise).
Nothing is downloaded.
"""
from __future__ import annotations

import io
import os
import pickle
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import torch

from ..core.construct import from_coo
from .datasets import GraphData

__all__ = ["load_planetoid", "PLANETOID_NAMES", "PLANETOID_FILES"]

PLANETOID_NAMES = {"cora": "Cora", "citeseer": "CiteSeer", "pubmed": "PubMed"}
PLANETOID_FILES = ("x", "y", "tx", "ty", "allx", "ally", "graph", "test.index")
SOURCES = ("https://github.com/kimiyoung/planetoid/tree/master/data",
           "https://github.com/tkipf/gcn/tree/master/gcn/data")
NUM_VAL = 500

_BUILTINS = {"list", "dict", "set", "frozenset", "tuple", "object", "int", "float", "str",
             "bytes", "bytearray", "complex", "bool", "slice", "range"}
_NUMPY = {"_reconstruct", "ndarray", "dtype", "scalar", "_frombuffer", "matrix"}


class _Refused(pickle.UnpicklingError):
    """A pickle that asks for something other than data."""


class _Unpickler(pickle.Unpickler):
    """Builds numpy arrays, scipy sparse matrices and plain containers only."""

    def find_class(self, module: str, name: str):
        if module in ("builtins", "__builtin__") and name in _BUILTINS:
            return getattr(__import__("builtins"), name)
        if module in ("copyreg", "copy_reg") and name == "_reconstructor":
            import copyreg
            return copyreg._reconstructor
        if module == "_codecs" and name == "encode":  # bytes in protocol-2 pickles
            import codecs
            return codecs.encode
        if module == "collections" and name in ("defaultdict", "OrderedDict"):
            import collections
            return getattr(collections, name)
        if module.split(".")[0] == "numpy" and name in _NUMPY:
            # numpy >= 2 moved numpy.core to numpy._core; old pickles name the former
            module = module.replace("numpy.core", "numpy._core", 1)
            return super().find_class(module, name)
        if module.startswith("scipy.sparse"):
            found = getattr(sp, name, None)
            if isinstance(found, type) and issubclass(found, (sp.spmatrix, sp.sparray)):
                return found  # old module paths (scipy.sparse.csr) resolve to the class
        raise _Refused(f"refusing to load {module}.{name}: a Planetoid file "
                                     f"holds only numpy arrays, scipy sparse matrices and "
                                     f"plain containers")


def _read(path: Path):
    if path.name.endswith("test.index"):
        return np.array([int(line) for line in path.read_text().split()], dtype=np.int64)
    data = path.read_bytes()
    try:
        return _Unpickler(io.BytesIO(data), encoding="latin1").load()
    except _Refused as error:
        raise ValueError(f"{path}: {error}") from None
    except Exception as error:
        raise ValueError(f"{path}: not a readable Planetoid file ({type(error).__name__}: "
                         f"{error})") from None


def _find_folder(root: Path, name: str) -> tuple[Path | None, list[Path]]:
    """The folder holding the files: ``root`` itself or torch_geometric's
    ``root/<Name>/raw`` layout. Returns (folder or None, folders searched)."""
    candidates = [root, root / PLANETOID_NAMES[name] / "raw", root / name / "raw"]
    for folder in candidates:
        if all((folder / f"ind.{name}.{suffix}").is_file() for suffix in PLANETOID_FILES):
            return folder, candidates
    return None, candidates


def _missing_error(root: Path, name: str, searched: list[Path]) -> FileNotFoundError:
    expected = ", ".join(f"ind.{name}.{suffix}" for suffix in PLANETOID_FILES)
    missing = [f"ind.{name}.{suffix}" for suffix in PLANETOID_FILES
               if not (root / f"ind.{name}.{suffix}").is_file()]
    where = ", ".join(str(folder) for folder in searched)
    return FileNotFoundError(
        f"Planetoid dataset {PLANETOID_NAMES[name]!r}: the raw files are not in {root} "
        f"(missing: {', '.join(missing)}; also looked in: {where}). Put the 8 files {expected} "
        f"in {root}; they are in the 'data' folder of {SOURCES[0]} or {SOURCES[1]} "
        f"(learnsolve downloads nothing).")


def _dense(matrix) -> np.ndarray:
    return matrix.toarray() if sp.issparse(matrix) else np.asarray(matrix)


def load_planetoid(root: str | os.PathLike, name: str, *, dtype: torch.dtype = torch.float32,
                   device=None, normalize_features: bool = False) -> GraphData:
    """Cora, CiteSeer or PubMed from the raw Planetoid files in a local folder.

    Parameters
    ----------
    root : path
        The folder holding ``ind.<name>.x``, ``.y``, ``.tx``, ``.ty``,
        ``.allx``, ``.ally``, ``.graph`` and ``.test.index`` (``<name>`` in
        lower case: ``ind.cora.x``); torch_geometric's layout
        ``root/<Name>/raw/`` is found too.
    name : {"Cora", "CiteSeer", "PubMed"}
        Case-insensitive.
    dtype, device
        Of the adjacency and the features.
    normalize_features : bool, default False
        Divide each node's features by their sum (Kipf & Welling's
        preprocessing, torch_geometric's ``NormalizeFeatures``).

    Returns
    -------
    GraphData
        Symmetric 0/1 adjacency without self loops (each undirected edge
        stored twice; duplicates and the datasets' few self loops removed, as
        torch_geometric does), dense features, labels, and the standard
        split: the first ``len(y)`` nodes (20 per class) for training, the
        next 500 for validation, the 1000 nodes of ``test.index`` for testing.

    Raises
    ------
    FileNotFoundError
        A file is missing; the message names the folder, the expected files
        and where to get them.
    ValueError
        An unknown name, or a file that is not a Planetoid file.

    Notes
    -----
    The processing is that of Kipf & Welling's ``load_data`` and
    torch_geometric's ``read_planetoid_data``: the test nodes (``tx``,
    ``ty``) follow the others (``allx``, ``ally``) and are put in the order
    of ``test.index``. CiteSeer's ``test.index`` skips 15 nodes that are
    isolated in the graph; they get zero features and label 0 (the argmax of
    an all-zero one-hot row, as torch_geometric) and belong to no mask.

    Examples
    --------
    >>> from learnsolve.nn import load_planetoid
    >>> load_planetoid("/nonexistent", "Cora")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    FileNotFoundError: Planetoid dataset 'Cora': the raw files are not in /nonexistent ...
    """
    key = str(name).lower()
    if key not in PLANETOID_NAMES:
        raise ValueError(f"name: expected one of {sorted(PLANETOID_NAMES.values())}, got "
                         f"{name!r}")
    root = Path(root).expanduser()
    folder, searched = _find_folder(root, key)
    if folder is None:
        raise _missing_error(root, key, searched)
    raw = {suffix: _read(folder / f"ind.{key}.{suffix}") for suffix in PLANETOID_FILES}

    x, tx, allx = (_dense(raw[s]).astype(np.float64) for s in ("x", "tx", "allx"))
    y, ty, ally = (_dense(raw[s]) for s in ("y", "ty", "ally"))
    test_index = raw["test.index"]
    test_sorted = np.sort(test_index)
    if key == "citeseer":
        # isolated nodes in the graph that test.index does not list: zero rows in tx, ty
        full = np.arange(test_sorted.min(), test_sorted.max() + 1)
        tx_full = np.zeros((full.size, tx.shape[1]))
        tx_full[test_sorted - test_sorted.min()] = tx
        ty_full = np.zeros((full.size, ty.shape[1]), dtype=ty.dtype)
        ty_full[test_sorted - test_sorted.min()] = ty
        tx, ty = tx_full, ty_full
    features = np.concatenate([allx, tx])
    labels = np.concatenate([ally, ty]).argmax(axis=1)
    features[test_index] = features[test_sorted]
    labels[test_index] = labels[test_sorted]
    n = features.shape[0]
    if normalize_features:
        sums = features.sum(axis=1, keepdims=True)
        features = features / np.where(sums == 0, 1.0, sums)

    graph = raw["graph"]
    if not isinstance(graph, dict):
        raise ValueError(f"{folder / f'ind.{key}.graph'}: expected a dict of neighbour lists, "
                         f"got {type(graph).__name__}")
    counts = [len(neighbours) for neighbours in graph.values()]
    rows = np.repeat(np.fromiter(graph.keys(), dtype=np.int64, count=len(graph)), counts)
    cols = np.fromiter((c for neighbours in graph.values() for c in neighbours),
                       dtype=np.int64, count=sum(counts))
    if rows.size and max(rows.max(), cols.max()) >= n:
        raise ValueError(f"{folder / f'ind.{key}.graph'}: node {max(rows.max(), cols.max())} "
                         f"out of range for {n} nodes (the rows of allx and tx)")
    off_diagonal = rows != cols
    rows, cols = rows[off_diagonal], cols[off_diagonal]
    both = np.unique(np.concatenate([rows * n + cols, cols * n + rows]))
    row, col = torch.from_numpy(both // n), torch.from_numpy(both % n)
    adjacency = from_coo(row, col, torch.ones(both.size, dtype=dtype), (n, n))
    if device is not None:
        adjacency = adjacency.to(device)

    train = torch.zeros(n, dtype=torch.bool)
    train[: y.shape[0]] = True
    val = torch.zeros(n, dtype=torch.bool)
    val[y.shape[0]: y.shape[0] + NUM_VAL] = True
    test = torch.zeros(n, dtype=torch.bool)
    test[torch.from_numpy(test_sorted)] = True
    move = dict(device=adjacency.device)
    return GraphData(adjacency, torch.from_numpy(features).to(dtype=dtype, **move),
                     torch.from_numpy(labels.astype(np.int64)).to(**move), train.to(**move),
                     val.to(**move), test.to(**move), num_classes=int(y.shape[1]),
                     name=PLANETOID_NAMES[key])
