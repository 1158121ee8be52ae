"""Pickling one call or one map chunk for a worker, and naming the argument that would not pickle.

Arguments are pickled in the caller's thread before anything is queued (see ``_serialize``), so a
mistake is the caller's error, raised at the call. When the pickle fails, each argument is tried
alone to name the culprit and say what to pass instead; that costs nothing on the common path.
"""

from __future__ import annotations

import io
import itertools
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from . import _buffers
from ._errors import SerializationError
from ._serialize import dumps, dumps_shared, type_name

if TYPE_CHECKING:
    from ._functions import FunctionHandle

__all__ = ["encode_call", "encode_chunk"]


def encode_call(
    handle: FunctionHandle,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    retries: int = 0,
    retry_on: tuple[type[BaseException], ...] = (),
    segments: list[str] | None = None,
) -> bytes:
    """Pickle one call; on failure, name the argument that cannot be pickled.

    With ``segments``, large buffers among the arguments (or one container into them) go through
    shared memory, and the names of the segments made are appended to it (see ``dumps_shared``).
    """
    message = (handle.key, args, kwargs, retries, retry_on)
    try:
        if segments is None:
            return dumps(message)
        # depth 3: message, args tuple / kwargs dict, each argument, one container into it
        return dumps_shared(message, 3, segments, sampled=_buffers.only_atoms(args, kwargs))
    except Exception as exc:
        raise _argument_error(handle, args, kwargs, exc) from exc


def encode_chunk(
    handle: FunctionHandle,
    items: list[Any],
    retries: int = 0,
    retry_on: tuple[type[BaseException], ...] = (),
    segments: list[str] | None = None,
    *,
    bare: bool = False,
) -> bytes:
    """Pickle one chunk of a map: argument tuples, or with ``bare`` single arguments.

    ``bare`` travels in the payload so the worker knows whether to call ``f(item)`` or
    ``f(*item)``; a one-iterable map then pickles a list of plain items, about half the bytes of
    a list of 1-tuples, and nobody builds or unpacks a tuple per item. With ``segments``, large
    buffers go through shared memory as in ``encode_call``.
    """
    message = (handle.key, items, bare, retries, retry_on)
    try:
        # depth 4: message, items, one item's arguments, each argument, one container into it
        return dumps(message) if segments is None else dumps_shared(message, 4, segments)
    except Exception as exc:
        for item in items:
            _check_arguments(handle, (item,) if bare else item, {}, exc)
        raise SerializationError(
            f"the arguments of a map over {handle.label} could not be pickled: {type(exc).__name__}: {exc}"
        ) from exc


def _argument_error(
    handle: FunctionHandle, args: tuple[Any, ...], kwargs: dict[str, Any], exc: Exception
) -> SerializationError:
    try:
        _check_arguments(handle, args, kwargs, exc)
    except SerializationError as named:
        return named
    return SerializationError(
        f"the call {handle.describe(args, kwargs)} could not be pickled: {type(exc).__name__}: {exc}"
    )


def _check_arguments(
    handle: FunctionHandle, args: tuple[Any, ...], kwargs: dict[str, Any], exc: Exception
) -> None:
    """Raise a SerializationError naming the first argument that cannot be pickled."""
    names = _parameter_names(handle.function, len(args))
    named = ((repr(name), value) for name, value in kwargs.items())
    for where, value in itertools.chain(zip(names, args, strict=True), named):
        try:
            dumps(value)
        except Exception as error:  # noqa: BLE001 - this is the culprit we are looking for
            raise SerializationError(
                f"argument {where} ({type_name(value)}) of {handle.label} could not be pickled, so the "
                f"call was not submitted: {type(error).__name__}: {error}{_hint(value, error)}"
            ) from exc


def _hint(value: object, error: Exception) -> str:  # noqa: PLR0911 - one return per kind of object
    """What to pass instead of something that cannot reach another process (error path only)."""
    import socket
    import types

    if isinstance(value, io.IOBase) and hasattr(value, "mode"):
        return "; pass its path and open the file in the function, or pass the data it holds"
    if isinstance(value, socket.socket):
        return "; pass the address and connect in the function"
    if isinstance(value, types.GeneratorType):
        return "; pass a list of its items, or map the function over it with .map()"
    if isinstance(value, types.CoroutineType):
        return "; pass what it returns (await it first), or decorate the async def itself"
    if type_name(value) == "threading.Thread":
        return "; a thread cannot move to another process: pass the data it works on"
    if "inheritance" in str(error):  # multiprocessing's Queue, Lock, ... passed in a call
        return (
            "; a multiprocessing.Manager() makes queues and locks that can be passed in a call "
            "(manager.Queue(), manager.Lock())"
        )
    if type_name(value) in ("_thread.lock", "_thread.RLock") or type(value).__module__ == "threading":
        return (
            "; threading objects work between threads of one process only: use a "
            "multiprocessing.Manager() lock or event, or create it in the worker"
        )
    return ""


def _parameter_names(function: Callable[..., Any], count: int) -> Iterable[str]:
    import inspect  # only on this error path: it is slow to import, and workers import this module

    try:
        params = [
            p.name
            for p in inspect.signature(function).parameters.values()
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
        ]
    except (TypeError, ValueError):
        params = []
    return [repr(params[i]) if i < len(params) else f"#{i + 1}" for i in range(count)]
