"""Proving that a by-value function's pickle cannot have changed, without pickling it.

``_functions`` pickles a by-value function at every call, so that it runs as it is at that moment
(issue 8). Where every part of its pickled state is immutable or travels by name, and is still the
very object it was at the last pickle, the bytes would be the same: ``Frozen`` records those
objects and checks them by identity (a few microseconds, against tens to hundreds for
cloudpickle). Anything mutable makes ``Frozen.of`` refuse, and the function is pickled again.
"""

from __future__ import annotations

import functools
import types
from typing import Any

from ._serialize import resolve

__all__ = ["Frozen"]

_ABSENT = object()
_ATOMS = frozenset({int, float, complex, bool, str, bytes, type(None), type(...), range})


class Frozen:
    """The state a plain function's pickle is made from, kept only when it cannot change unseen.

    cloudpickle pickles a function as its code, the globals its code (and nested code) names,
    its closure cells, defaults, keyword defaults, ``__dict__``, names, docstring and annotations.
    When each of those values is immutable (atoms, and tuples and frozensets of them) or travels
    by name (a module, a class or function a worker imports), the pickle depends only on which
    objects they are: while ``unchanged()`` finds the same objects, the bytes are the same.
    A rebound global, a refilled cell, new defaults or a redefinition are new objects, so they
    are seen; a mutable value could change in place unseen, so ``of()`` refuses it (None).
    """

    __slots__ = ("annotations", "cells", "code", "defaults", "globals", "kwdefaults", "names")

    @classmethod
    def of(cls, function: object) -> Frozen | None:
        if type(function) is not types.FunctionType or function.__dict__:
            return None
        code = function.__code__
        namespace = function.__globals__
        values = tuple((name, namespace.get(name, _ABSENT)) for name in _global_names(code))
        try:
            cells = tuple(cell.cell_contents for cell in function.__closure__ or ())
        except ValueError:  # an empty cell (a name assigned later in the enclosing function)
            return None
        kwdefaults = tuple((function.__kwdefaults__ or {}).items())
        annotations = tuple(function.__annotations__.items())
        everything = (
            *(value for _, value in values if value is not _ABSENT),
            *cells,
            *(function.__defaults__ or ()),
            *(value for _, value in kwdefaults),
            *(value for _, value in annotations),
        )
        if not all(_travels_unchanged(value, 0) for value in everything):
            return None
        names = (function.__name__, function.__qualname__, function.__module__, function.__doc__)
        return cls(code, values, cells, function.__defaults__, kwdefaults, annotations, names)

    def __init__(
        self,
        code: types.CodeType,
        globals_: tuple[tuple[str, object], ...],
        cells: tuple[object, ...],
        defaults: tuple[object, ...] | None,
        kwdefaults: tuple[tuple[str, object], ...],
        annotations: tuple[tuple[str, object], ...],
        names: tuple[object, ...],
    ) -> None:
        self.code = code
        self.globals = globals_
        self.cells = cells
        self.defaults = defaults
        self.kwdefaults = kwdefaults
        self.annotations = annotations
        self.names = names

    def unchanged(self, function: Any) -> bool:
        namespace = function.__globals__
        closure = function.__closure__ or ()
        try:
            cells = tuple(cell.cell_contents for cell in closure)
        except ValueError:  # a cell emptied since
            return False
        return (
            function.__code__ is self.code
            and not function.__dict__
            and all(namespace.get(name, _ABSENT) is value for name, value in self.globals)
            and _same(cells, self.cells)
            and function.__defaults__ is self.defaults
            and _same(
                (function.__name__, function.__qualname__, function.__module__, function.__doc__),
                self.names,
            )
            and _same(tuple((function.__kwdefaults__ or {}).items()), self.kwdefaults)
            and _same(tuple(function.__annotations__.items()), self.annotations)
        )


def _same(now: tuple[Any, ...], then: tuple[Any, ...]) -> bool:
    """The same objects in the same places (pairs compared by their parts)."""
    if len(now) != len(then):
        return False
    for a, b in zip(now, then, strict=True):
        if isinstance(a, tuple) and isinstance(b, tuple):
            if not _same(a, b):
                return False
        elif a is not b:
            return False
    return True


@functools.lru_cache(maxsize=1024)
def _global_names(code: types.CodeType) -> tuple[str, ...]:
    """The global names a code object and the code nested in it may read (cloudpickle's set)."""
    names = dict.fromkeys(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names.update(dict.fromkeys(_global_names(const)))
    return tuple(names)


def _travels_unchanged(value: object, depth: int) -> bool:
    """True if ``value`` pickles to the same bytes for as long as it is the same object."""
    kind = type(value)
    if kind in _ATOMS or kind is types.ModuleType:
        return True
    if kind is tuple or kind is frozenset:
        return depth < 4 and all(_travels_unchanged(item, depth + 1) for item in value)  # type: ignore[attr-defined]
    if isinstance(value, type) or kind in (types.FunctionType, types.BuiltinFunctionType):
        # by name only: a class or function a worker imports (its qualified name is all that goes)
        module = getattr(value, "__module__", None)
        qualname = getattr(value, "__qualname__", "")
        if module is None or module == "__main__" or "<locals>" in qualname:
            return False
        try:
            return resolve(module, qualname) is value
        except Exception:  # noqa: BLE001 - not importable by name: it travels by value
            return False
    return False
