"""The caches of what depends on a matrix's values (a factorisation, a hierarchy, a
check), in one place: :class:`MatrixCache`, a value computed from some objects
(tensors, patterns) and kept until one of them is replaced or changed in place, held
by the module that computes it (one entry: the matrix it was last set up for) or, for
one entry per live values tensor, by :func:`values_cache`. What depends on the
structure alone is cached on the :class:`~learnsolve.core.pattern.Pattern`."""
from __future__ import annotations

import weakref
from functools import partial
from typing import Callable

import torch

__all__ = ["MatrixCache", "values_cache"]


def _version(obj) -> int | None:
    """What a cached value of ``obj`` depends on: a tensor's version counter (bumped by
    in-place changes), 0 for other objects (immutable, as a Pattern), None for an
    inference tensor, which has no version counter and so can never be trusted
    unchanged."""
    if isinstance(obj, torch.Tensor):
        return None if obj.is_inference() else obj._version
    return 0


class MatrixCache:
    """A value computed from some objects, kept until one of them is replaced or,
    for a tensor, changed in place.

    The objects are held weakly (the cache keeps nothing alive) and compared by
    identity and version counter; an inference tensor, whose in-place changes
    cannot be seen, is never taken as unchanged. A copy or a pickle starts
    empty.
    """

    def __init__(self):
        self._key: tuple = ()
        self._value = None

    def __reduce__(self):
        return (type(self), ())

    def get(self, objects: tuple, compute: Callable):
        fresh = len(self._key) == len(objects) and all(
            ref() is obj and version is not None and version == _version(obj)
            for (ref, version), obj in zip(self._key, objects))
        if not fresh:
            self._value = compute()
            self._key = tuple((weakref.ref(obj), _version(obj)) for obj in objects)
        return self._value


#: ``(id(values), name) -> (weak reference to values, MatrixCache)``: dropped with the tensor.
_BY_VALUES: dict[tuple[int, str], tuple[weakref.ref, MatrixCache]] = {}


def values_cache(values: torch.Tensor, name: str) -> MatrixCache:
    """The :class:`MatrixCache` named ``name`` of one values tensor, kept while that
    tensor lives: one entry per matrix where many matrices share a pattern (a
    problem family on one grid), where a module's single entry would be
    recomputed at every switch."""
    key = (id(values), name)
    entry = _BY_VALUES.get(key)
    if entry is None or entry[0]() is not values:
        entry = _BY_VALUES[key] = (weakref.ref(values, partial(_forget, key)), MatrixCache())
    return entry[1]


def _forget(key: tuple, ref: weakref.ref, entries: dict = _BY_VALUES) -> None:
    """Drop ``key``'s entry when its tensor dies, unless a newer tensor (with the same
    id) replaced it. ``entries`` is bound at definition: at interpreter exit the
    module's globals may be gone before the last tensors are."""
    entry = entries.get(key)
    if entry is not None and entry[0] is ref:
        del entries[key]
