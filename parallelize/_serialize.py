"""Caller-side pickling, and how functions travel to workers.

Arguments are pickled in the caller's thread before anything is queued, so an unpicklable argument
is the caller's error, raised at the call with the culprit named, and the pool never sees it.

Functions travel two ways:

* by reference, ``(module, qualname)``, when the worker can import them. The module attribute of a
  decorated function is our proxy, not the function, so plain pickle refuses the raw function ("not
  the same object as mod.f"); the worker looks the name up and unwraps our proxy instead.
* by value, with cloudpickle, for ``__main__``, closures, lambdas and notebook cells: pickled
  again for every call, and sent to a worker (a DEFINE message) only when the bytes differ from
  what it has (see ``_functions``).

Plain pickle is tried first everywhere because it is fast; cloudpickle is the fallback for what it
refuses (lambdas, local classes). Workers import this module, so cloudpickle is imported lazily.

Arguments and results with large buffers (bytes, bytearray, memoryview, numpy arrays: at least
``_buffers.THRESHOLD`` bytes of them near the top of the message) go through shared memory instead of
the pipe: ``dumps_shared`` pickles them out of band and ``_shm`` copies them into one segment.
Everything else (and every message when shared memory is unavailable or full) takes the pipe.
"""

from __future__ import annotations

import functools
import importlib
import io
import pickle
import reprlib
import sys
import types
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from . import _buffers, _fallback, _shm

if TYPE_CHECKING:
    pass

PROTOCOL = pickle.HIGHEST_PROTOCOL

# ("ref", module, qualname) or ("val", number): how a worker finds the function. A by-value
# number names one pickle of a function (see _functions), not the function.
FunctionKey = tuple[str, str, str] | tuple[str, int]


class _ShortRepr(reprlib.Repr):
    """reprlib, but buffers are cut before repr() sees them (it would render 64 MiB in full)."""

    def _buffer(self, obj: bytes | bytearray | memoryview, level: int) -> str:
        head = bytes(obj[: self.maxstring])
        text = repr(head) if isinstance(obj, bytes) else f"{type(obj).__name__}({head!r})"
        return text if len(obj) <= self.maxstring else f"{text}... ({len(obj)} bytes)"

    def repr_bytes(self, obj: bytes, level: int) -> str:
        return self._buffer(obj, level)

    def repr_bytearray(self, obj: bytearray, level: int) -> str:
        return self._buffer(obj, level)

    def repr_memoryview(self, obj: memoryview, level: int) -> str:
        return f"<memoryview of {obj.nbytes} bytes>"


_short = _ShortRepr()
_short.maxstring = 40
_short.maxother = 40


def dumps(obj: object) -> bytes:
    """Pickle with the fast C pickler, falling back to cloudpickle for what it refuses."""
    try:
        data = pickle.dumps(obj, PROTOCOL)
    except Exception:  # noqa: BLE001 - any refusal is retried by value; cloudpickle re-raises if hopeless
        return dumps_by_value(obj)
    if data.find(b"__main__") >= 0:
        # Something of the main script went by name (or the data merely says "__main__"): make
        # sure workers will have it, or send it by value. find(), not `in`: bytes.__contains__
        # first tries the needle as an int and raises and clears a TypeError, about 1 µs a call.
        buffer = io.BytesIO()
        try:
            _MainAwarePickler(buffer, PROTOCOL).dump(obj)
        except Exception:  # noqa: BLE001 - _SendByValue, or anything else cloudpickle may handle
            return dumps_by_value(obj)
        data = buffer.getvalue()
    return data


def dumps_shared(obj: object, depth: int, keep: list[str] | None = None, *, sampled: bool = False) -> bytes:
    """``dumps``, but large buffers down to ``depth`` containers deep travel in shared memory.

    With ``keep`` (arguments), the segment is the caller's: its name is appended to ``keep`` and
    the caller unlinks it with ``_shm.release`` when the task is done, so re-sends can map it
    again. Without (results), the receiver unlinks it as it loads the message. The small-message
    path costs a sampled ``_buffers.measure`` over the top of the message and a length check: a
    message the sample finds small is measured in full only if its plain pickle is large.
    ``sampled``: the caller has looked already and found nothing large.
    """
    if not _shm.AVAILABLE:
        return dumps(obj)
    if sampled or _buffers.measure(obj, depth, sample=True) < _buffers.THRESHOLD:
        data = dumps(obj)
        if len(data) < _buffers.THRESHOLD or _buffers.measure(obj, depth) < _buffers.THRESHOLD:
            return data
    copied: set[int] = set()
    wrapped = _buffers.wrap(obj, depth, copied)
    collect = _Collect(copied)
    try:
        inner = _dumps_out_of_band(wrapped, collect)
    except Exception:  # noqa: BLE001 - the plain path raises the same error, or names the culprit
        return dumps(obj)
    if not collect.buffers:
        return inner  # every buffer was small after all: an ordinary pickle
    try:
        data, name = _shm.share(inner, collect.buffers, handover=keep is None, recyclable=collect.recyclable)
    except OSError as exc:  # /dev/shm full or missing: the pipe still works, only slower
        _fallback.warn_once(exc)
        return _dumps_out_of_band(wrapped, _buffers.in_band)
    if keep is not None:
        keep.append(name)
    return data


class _Collect:
    """The pickler's buffer_callback: large buffers leave the pickle, small ones stay in it."""

    def __init__(self, copied: set[int]) -> None:
        self.buffers: list[pickle.PickleBuffer] = []
        self.copied = copied  # ids of the bytes and bytearrays the receiver will copy out
        self.recyclable = True  # no buffer arrives as a view (see _shm's spare segments)

    def __call__(self, buffer: pickle.PickleBuffer) -> bool:
        try:
            with buffer.raw() as raw:
                if raw.nbytes < _buffers.MIN_BUFFER:
                    return True
                if id(raw.obj) not in self.copied:
                    self.recyclable = False
        except BufferError:  # not contiguous: the pickler itself explains why it cannot send it
            return True
        self.buffers.append(buffer)
        return False


def _dumps_out_of_band(obj: object, callback: Callable[[pickle.PickleBuffer], bool]) -> bytes:
    buffer = io.BytesIO()
    try:
        _BufferPickler(buffer, PROTOCOL, buffer_callback=callback).dump(obj)
    except _SendByValue:
        if isinstance(callback, _Collect):
            callback.buffers.clear()
            callback.recyclable = True
        buffer = io.BytesIO()
        _by_value_pickler(buffers=True)(buffer, PROTOCOL, buffer_callback=callback).dump(obj)
    return buffer.getvalue()


# -- what lives in __main__ ---------------------------------------------------------------------
#
# A worker started by spawn or forkserver runs the parent's main script again (as __mp_main__), so
# what the script defines at its top level exists there too and travels by reference, keeping one
# identity: a class sent by name is the worker's own class, and a function shares its module's
# globals with the rest of the script (an initializer that sets a global is seen by the tasks).
# Everything else of __main__ (what a notebook cell, `python -c` or stdin defines, or the script
# defines under `if __name__ == "__main__":`) does not exist in the worker and travels by value.


class _SendByValue(Exception):
    """Raised inside the fast pickler to hand the whole object over to cloudpickle."""


def main_defines(qualname: str) -> bool:
    """True if the main script defines ``qualname`` at its top level (so workers have it)."""
    path = getattr(sys.modules.get("__main__"), "__file__", None)
    if not path or "<" in qualname:
        return False
    # No os.path.exists here: this runs for every function a by-value pickle meets, at every call
    # (see _functions); a path that is not a file ("<stdin>") reads as defining nothing, once.
    return qualname.split(".", maxsplit=1)[0] in _top_level_names(str(path))


@functools.lru_cache(maxsize=4)
def _top_level_names(path: str) -> frozenset[str]:
    import ast  # only when something of __main__ is pickled

    try:
        with open(path, "rb") as f:
            tree = ast.parse(f.read())
    except (OSError, SyntaxError, ValueError):
        return frozenset()
    kinds = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
    return frozenset(node.name for node in tree.body if isinstance(node, kinds))


class _MainAwarePickler(pickle.Pickler):
    """Pickles classes and functions of __main__ by name only if workers will have them."""

    def reducer_override(self, obj: object) -> Any:
        if (
            isinstance(obj, type | types.FunctionType)
            and obj.__module__ == "__main__"
            and not main_defines(obj.__qualname__)
        ):
            raise _SendByValue
        return NotImplemented


class _BufferPickler(_MainAwarePickler):
    """The main-aware pickler that can also send memoryviews (out of band, see ``_shm``)."""

    def reducer_override(self, obj: object) -> Any:
        reduction = _buffers.reduce_memoryview(obj)
        if reduction is not None:
            return reduction
        return super().reducer_override(obj)


class _ErrorPickler(_MainAwarePickler):
    """Pickles exceptions as Python does by default, whatever ``copyreg`` says.

    Importing distributed installs tblib's reduction for every exception class, process-wide
    (``copyreg``): a worker whose script imports it would send ``SystemExit(4)`` back with code
    None, and tracebacks along with every error. Our errors keep the default reduction; the
    traceback travels as text in the envelope.
    """

    def reducer_override(self, obj: object) -> Any:
        if isinstance(obj, BaseException):
            return obj.__reduce_ex__(PROTOCOL)
        return super().reducer_override(obj)


def dumps_error(exc: BaseException) -> bytes:
    """``dumps`` for an exception, with Python's own reduction of exceptions (see _ErrorPickler)."""
    buffer = io.BytesIO()
    try:
        _ErrorPickler(buffer, PROTOCOL).dump(exc)
    except Exception:  # noqa: BLE001 - _SendByValue, or anything else cloudpickle may handle
        buffer = io.BytesIO()
        _by_value_pickler(errors=True)(buffer, PROTOCOL).dump(exc)
    return buffer.getvalue()


def dumps_by_value(obj: object) -> bytes:
    """Pickle with cloudpickle, which sends functions and classes of ``__main__`` by value.

    cloudpickle takes our decorated-function proxies for plain functions (a wrapt proxy forwards
    ``__class__``) and would send the bare function; the pickler below asks the proxy first, so a
    decorated function used inside another one arrives decorated.
    """
    buffer = io.BytesIO()
    _by_value_pickler()(buffer, PROTOCOL).dump(obj)
    return buffer.getvalue()


@functools.cache
def _by_value_pickler(buffers: bool = False, errors: bool = False) -> type[Any]:
    import cloudpickle

    class Pickler(cloudpickle.Pickler):
        def reducer_override(self, obj: object) -> Any:
            if errors and isinstance(obj, BaseException):
                return obj.__reduce_ex__(PROTOCOL)  # see _ErrorPickler
            if buffers:
                reduction = _buffers.reduce_memoryview(obj)
                if reduction is not None:
                    return reduction
            if is_proxy(obj):
                return obj.__reduce_ex__(PROTOCOL)
            if isinstance(obj, io.TextIOWrapper) and obj not in (sys.stdout, sys.stderr):
                # cloudpickle would send a copy of the file's text, read here in full: refused,
                # as plain pickle refuses binary files (see _hint)
                raise pickle.PicklingError(f"cannot send an open file ({obj.name!r}) to another process")
            if (
                isinstance(obj, type | types.FunctionType)
                and obj.__module__ == "__main__"
                and main_defines(obj.__qualname__)
            ):
                return (resolve, ("__main__", obj.__qualname__))
            return super().reducer_override(obj)

    return Pickler


def loads(data: bytes | memoryview) -> Any:
    return pickle.loads(data)


def type_name(obj: object) -> str:
    cls = type(obj)
    return cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"


def is_proxy(obj: object) -> bool:
    """True for our decorated-function proxies (checked on the type: the proxy forwards attributes)."""
    return bool(getattr(type(obj), "_parallelize_proxy", False))


def unwrap(obj: object) -> object:
    while is_proxy(obj):
        obj = obj.__wrapped__  # type: ignore[attr-defined]
    return obj


def resolve(module: str | int, qualname: str | int) -> Any:
    """Import ``module`` and follow ``qualname``, unwrapping our proxies (used in workers)."""
    obj: object = importlib.import_module(str(module))
    for part in str(qualname).split("."):
        # A decorated method as its class defines it: getattr would bind a classmethod's.
        defined = vars(obj).get(part) if isinstance(obj, type) else None
        obj = defined if is_proxy(defined) else getattr(obj, part)
    return unwrap(obj)
