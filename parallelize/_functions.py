"""Function handles: how the engine names a function, and the snapshot a task carries of it.

A function travels to workers by reference, ``("ref", module, qualname)``, when a worker can
import it, or by value (see ``_serialize``). A by-value function must behave in the worker as it
does in the caller at the moment of the call (issue 8): the globals it reads, its closure cells,
its defaults and a redefinition all take effect on the next call. So nothing about its pickle is
cached across calls: every call (every map, once, at its start) pickles it again, and the key it
travels under names *those bytes*::

    handle_for(f) --> FunctionHandle (f, shared _Facts) --snapshot()--> a task's pinned handle
                                                                         key ("val", n), bytes
    same bytes as before? the same n (a memcmp, or one dict look-up): workers already have it
    new bytes? a new n: the dispatcher sends a DEFINE to each worker before its first task of it

Equal numbers mean equal bytes (numbers are never reused), so a worker never runs a stale copy:
this is exact, not a fingerprint. What it costs is one cloudpickle of the function per call (tens
of microseconds for a small function; more for one that reads large globals, README "How functions
reach the workers"), except where the pickle provably cannot have changed: a plain function whose
pickled state (code, the globals it names, closure cells, defaults, names) holds only immutable
values and things that travel by name, each still the very object it was at the last pickle
(``Frozen``). An identity check of a few names then stands in for the pickle; anything mutable
(a list, a dict, an object, a by-value function or class) means pickling again, every call.

Nothing here keeps a caller's function alive (issue 8, item 7): the cache maps a function,
weakly, to ``_Facts``, which holds strings, a number and bytes, never the function; a handle
holds its function only as long as the task or map that carries it.
"""

from __future__ import annotations

import functools
import itertools
import sys
import threading
import types
import warnings
import weakref
from collections.abc import Callable
from typing import Any

from ._errors import SerializationError
from ._frozen import Frozen
from ._serialize import FunctionKey, _short, dumps_by_value, main_defines, resolve, type_name, unwrap

__all__ = ["FunctionHandle", "handle_for", "reference_of"]

# By-value pickles at most this large are numbered by content across functions (a re-run notebook
# cell, the same bound method made again), in a table of at most _INTERNED entries. Larger ones are
# only compared with their own function's previous pickle: hashing them costs as much as sending.
_INTERN_BYTES = 64 * 1024
_INTERNED = 256


class _Facts:
    """What every handle of one function shares: never the function itself."""

    __slots__ = ("item_seconds", "label", "last", "pinned", "reference", "seconds")

    # last: (key, bytes, frozen): the last pickle, its key, and the state it was made from when
    # that state proves the next pickle would be the same bytes (else None).

    def __init__(self, label: str, reference: tuple[str, str, str] | None) -> None:
        self.label = label
        self.reference = reference  # None: the function travels by value
        # What a handle of a function that travels by reference is pinned to: one tuple shared
        # by every handle (one per Pool.submit), not one each.
        self.pinned: tuple[FunctionKey, None] | None = None if reference is None else (reference, None)
        # Seconds one call (one map item) takes, as dispatchers measure it; None until measured.
        # Decides how many tasks may wait in a busy worker's pipe (see _dispatcher._prefetch).
        self.seconds: float | None = None
        # Seconds one map item takes in a worker, as the last map's chunk sizer measured it: where
        # the function's next map starts sizing its chunks (see _chunking.ChunkSizer).
        self.item_seconds: float | None = None
        # The last pickle made of the function, and its key: replaced as a pair, so a thread that
        # reads it while another writes sees one pair or the other, never a mix.
        self.last: tuple[FunctionKey, bytes, Frozen | None] | None = None

    def pickle(self, function: Callable[..., Any]) -> tuple[FunctionKey, bytes]:
        """``function`` pickled now, and the key of exactly these bytes."""
        last = self.last
        if last is not None and last[2] is not None and last[2].unchanged(function):
            return last[0], last[1]
        frozen = Frozen.of(function)  # before pickling: a change made meanwhile forces a new pickle
        try:
            data = dumps_by_value(function)
        except Exception as exc:
            raise SerializationError(
                f"{self.label} cannot be sent to a worker: it is neither importable by name nor "
                f"picklable by value ({type(exc).__name__}: {exc})"
            ) from exc
        if last is not None and last[1] == data:
            self.last = (last[0], last[1], frozen)
            return last[0], last[1]  # unchanged: same key, and the same bytes object for the dispatcher
        key: FunctionKey = ("val", _number_of(data))
        self.last = (key, data, frozen)
        return key, data


class FunctionHandle:
    """One function as the engine knows it: a label, a key a worker finds it by, its speed.

    ``handle_for`` gives one that holds the function and shares its ``_Facts`` with every other
    handle of the same function. A task or a map carries ``snapshot()``: its key and, for a
    by-value function, its pickle are made on first use (when the task is encoded) and then
    kept, so a task re-sent after a crash or a map's later chunks run the same function.
    """

    __slots__ = ("_facts", "_pinned", "_snapshot", "function")

    def __init__(self, function: Callable[..., Any], facts: _Facts | None = None) -> None:
        self.function = function
        self._facts = facts if facts is not None else _facts_of(function)
        self._pinned: tuple[FunctionKey, bytes | None] | None = self._facts.pinned
        self._snapshot = False

    def snapshot(self) -> FunctionHandle:
        """A handle whose by-value pickle, once made, stays (one per call, or per map)."""
        if self._snapshot or self._facts.reference is not None:
            return self  # a reference never changes: every call can share this handle
        copy = FunctionHandle(self.function, self._facts)
        copy._snapshot = True
        return copy

    def _pickled(self) -> tuple[FunctionKey, bytes | None]:
        pinned = self._pinned
        if pinned is None:
            pinned = self._facts.pickle(self.function)
            if self._snapshot:
                self._pinned = pinned
        return pinned

    @property
    def key(self) -> FunctionKey:
        """``("ref", module, qualname)``, or ``("val", n)`` naming one pickle of the function."""
        return self._pickled()[0]

    @property
    def definition(self) -> bytes | None:
        """The by-value pickle (None for a function sent by reference)."""
        return self._pickled()[1]

    @property
    def label(self) -> str:
        return self._facts.label

    @property
    def seconds(self) -> float | None:
        return self._facts.seconds

    @seconds.setter
    def seconds(self, value: float | None) -> None:
        self._facts.seconds = value

    @property
    def item_seconds(self) -> float | None:
        return self._facts.item_seconds

    @item_seconds.setter
    def item_seconds(self, value: float | None) -> None:
        self._facts.item_seconds = value

    def describe(self, args: tuple[Any, ...] = (), kwargs: dict[str, Any] | None = None) -> str:
        """'mod.f(3, key='x')': how error messages name one call."""
        parts = [_short.repr(a) for a in args]
        parts += [f"{k}={_short.repr(v)}" for k, v in (kwargs or {}).items()]
        return f"{self.label}({', '.join(parts)})"


def reference_of(function: object) -> tuple[str, str, str] | None:
    """``("ref", module, qualname)`` if a worker can import ``function`` by name, else None."""
    module = getattr(function, "__module__", None) or "?"
    qualname = getattr(function, "__qualname__", None) or ""
    return _reference(function, module, qualname)


def _reference(function: object, module: str, qualname: str) -> tuple[str, str, str] | None:
    if not isinstance(function, types.FunctionType | types.BuiltinFunctionType):
        return None
    if "<locals>" in qualname or "<lambda>" in qualname:
        return None
    if module == "__main__" and not main_defines(qualname):
        return None
    try:
        found = resolve(module, qualname)
    except Exception:  # noqa: BLE001 - not importable by name: send it by value instead
        return None
    return ("ref", module, qualname) if found is function else None


def _facts_of(function: Callable[..., Any]) -> _Facts:
    module = getattr(function, "__module__", None) or "?"
    qualname = getattr(function, "__qualname__", None) or type(function).__qualname__
    facts = _Facts(f"{module}.{qualname}", _reference(function, module, qualname))
    if facts.reference is None:
        _warn_if_random_state(function, facts.label)
    return facts


# -- the caches ------------------------------------------------------------------------------------
#
# _facts: function -> _Facts, weakly keyed. Its values hold no reference to the function, so an
# entry lasts exactly as long as the function does: a loop submitting `partial(f, i)` leaves
# nothing behind, and the cache is bounded by the functions alive. Unhashable callables and those
# that take no weak reference are not cached (their handle is made again per call).
#
# _contents: by-value pickle -> its number, for small pickles, the _INTERNED most recent. Only
# saves DEFINE messages (the same bytes made by another function object keep their number); a
# pickle that fell out gets a new number, which is always correct.

_facts: weakref.WeakKeyDictionary[object, _Facts] = weakref.WeakKeyDictionary()
# The function handle_for saw last and its facts, so that a loop of Pool.submit(f, ...) skips
# the lock and the weak dictionary (whose every look-up makes a weak reference). Held weakly (it
# keeps no finished task's function alive) and matched by identity; one tuple, replaced whole, so
# any thread reads a consistent pair without the lock.
_last: tuple[weakref.ref[Any], _Facts] | None = None
_contents: dict[bytes, int] = {}
_numbers = itertools.count(1)
_lock = threading.Lock()  # guards _facts and _contents


def _number_of(data: bytes) -> int:
    if len(data) > _INTERN_BYTES:
        return next(_numbers)
    with _lock:
        number = _contents.pop(data, None)
        if number is None:
            number = next(_numbers)
            if len(_contents) >= _INTERNED:
                del _contents[next(iter(_contents))]  # the least recently used
        _contents[data] = number
    return number


def _after_fork_in_child() -> None:
    global _lock
    _lock = threading.Lock()  # another thread may have held it at the fork


def handle_for(function: Callable[..., Any]) -> FunctionHandle:
    """A handle of ``function`` (our proxies are unwrapped first), sharing its cached facts."""
    global _last
    raw = unwrap(function)
    last = _last
    if last is not None and last[0]() is raw and callable(raw):
        return FunctionHandle(raw, last[1])
    if not callable(raw):
        raise TypeError(f"expected a callable, got {type_name(raw)}")
    try:
        with _lock:
            facts = _facts.get(raw)
    except TypeError:  # unhashable or not weak-referenceable: no caching
        return FunctionHandle(raw)
    if facts is None:
        facts = _facts_of(raw)
        with _lock:
            facts = _facts.setdefault(raw, facts)
    _last = (weakref.ref(raw), facts)  # it takes weak references: _facts.get() said so
    return FunctionHandle(raw, facts)


# -- random state that travels by value ------------------------------------------------------------

_warned: dict[tuple[int, str], None] = {}  # (id of the generator, method): warned once each


def _warn_if_random_state(function: object, label: str) -> None:
    """Warn when a bound method of a random generator travels: each call gets a copy of its
    state, so calls repeat each other's numbers instead of continuing one sequence."""
    while isinstance(function, functools.partial):
        function = function.func
    owner = getattr(function, "__self__", None)
    if owner is None or not _is_seeded_generator(owner):
        return
    name = getattr(function, "__name__", "?")
    key = (id(owner), name)
    if key in _warned:
        return
    if len(_warned) >= 1024:
        _warned.clear()
    _warned[key] = None
    warnings.warn(
        f"{label} is a method of a random generator ({type_name(owner)}); each call runs on a copy "
        f"of the generator's state as of that call, so calls repeat the same numbers. Draw in the "
        f"worker from a generator of its own (seeded per worker, e.g. in an initializer) or pass "
        f"a seed as an argument.",
        UserWarning,
        stacklevel=4,
    )


def _is_seeded_generator(owner: object) -> bool:
    random = sys.modules.get("random")
    if random is not None and isinstance(owner, random.Random):
        return not isinstance(owner, random.SystemRandom)  # OS entropy: no state to copy
    numpy_random = sys.modules.get("numpy.random")  # never imported here: a generator implies it
    if numpy_random is not None:
        kinds = tuple(getattr(numpy_random, name, type(None)) for name in ("Generator", "RandomState"))
        return isinstance(owner, kinds)
    return False
