"""Running one task's function in a worker: a call, or a chunk of a map, and every outcome.

Whatever the function does (returns something that cannot be pickled, raises an exception that
cannot be pickled or rebuilt, raises SystemExit), the outcome becomes a reply the worker can
send, so a task's trouble stays that task's. ``run_items`` is also how the thread and sync
backends run a chunk, so every backend gives each item the same outcome.
"""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Callable
from typing import Any

from . import _protocol as wire
from ._coroutines import returned_coroutine, runnable
from ._errors import SerializationError
from ._serialize import FunctionKey, dumps, dumps_error, dumps_shared, loads, resolve, type_name

# Functions a worker has: by key, or the exception that loading one raised.
Functions = dict[FunctionKey, Callable[..., Any] | BaseException]
# What running a task produced: (kind, task id, payload, attempts made); None once a RUN_EACH
# chunk has reported its items itself.
Reply = tuple[int, int, bytes, int] | None


def define(payload: memoryview, functions: Functions) -> None:
    """Load a by-value function under its key, and drop the definitions the parent let go of."""
    key, definition, forget = loads(payload)
    for old in forget:
        functions.pop(old, None)
    try:
        functions[key] = runnable(loads(definition))
    except Exception as exc:  # noqa: BLE001 - every task that uses it will report this
        functions[key] = exc


def _lookup(key: FunctionKey, functions: Functions) -> Any:
    found = functions.get(key)
    if found is None and key[0] == "ref":
        try:
            found = functions[key] = runnable(resolve(*key[1:]))
        except Exception as exc:  # noqa: BLE001 - cached so the import is not retried per task
            found = functions[key] = exc
    if isinstance(found, BaseException):
        raise SerializationError(
            f"the function could not be loaded in worker {os.getpid()}: {type(found).__name__}: {found}"
        ) from found
    return found


def _label(key: FunctionKey, function: object) -> str:
    if key[0] == "ref":
        return ".".join(map(str, key[1:]))
    return f"{getattr(function, '__module__', '?')}.{getattr(function, '__qualname__', '?')}"


def _attempt(
    function: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    attempt: int,
    retries: int,
    retry_on: tuple[type[BaseException], ...],
) -> tuple[bool, Any, int]:
    """Call ``function``, re-running it here on a ``retry_on`` error while the budget lasts.

    Returns (succeeded, value or exception, attempts made in all). The budget is shared with the
    dispatcher's retries after crashes and timeouts: ``attempt`` says how many runs came before.
    """
    while True:
        try:
            return True, function(*args, **kwargs), attempt
        except BaseException as exc:  # noqa: BLE001 - SystemExit too: the task failed, the worker did not
            if attempt <= retries and retry_on and isinstance(exc, retry_on):
                attempt += 1
                continue
            return False, exc, attempt


def run_call(
    task_id: int,
    attempt: int,
    payload: memoryview,
    functions: Functions,
) -> Reply:
    try:
        key, args, kwargs, retries, retry_on = loads(payload)
        function = _lookup(key, functions)
    except BaseException as exc:  # noqa: BLE001 - a bad argument costs this task only
        return wire.ERROR, task_id, dumps(envelope(_unpickling_error(exc))), attempt
    ok, value, attempt = _attempt(function, args, kwargs, attempt, retries, retry_on)
    if not ok:
        return wire.ERROR, task_id, dumps(envelope(value)), attempt
    try:
        # large buffers in the value (or one container into it) go through shared memory
        return wire.RESULT, task_id, dumps_shared(value, 1), attempt
    except BaseException as exc:  # noqa: BLE001 - an unpicklable result (even SystemExit) fails its own future only
        error = _unpicklable_result(key, function, value, exc)
        return wire.ERROR, task_id, dumps(envelope(error)), attempt


def run_chunk(
    task_id: int,
    attempt: int,
    payload: memoryview,
    functions: Functions,
) -> Reply:
    started = time.perf_counter()
    try:
        key, items, bare, retries, retry_on = loads(payload)
        function = _lookup(key, functions)
    except BaseException as exc:  # noqa: BLE001 - a bad argument costs this chunk only
        return wire.ERROR, task_id, dumps(envelope(_unpickling_error(exc))), attempt
    errors: dict[int, wire.ErrorEnvelope] = {}
    if retries and retry_on:
        values = _run_retrying(function, items, bare, attempt, retries, retry_on, errors)
    else:

        def failed(index: int, exc: BaseException) -> None:
            errors[index] = envelope(exc)

        values = run_items(function, items, bare, failed)
    try:
        data = dumps_shared((values, errors, time.perf_counter() - started), 3)
    except BaseException:  # noqa: BLE001 - find the values that cannot be pickled; fail only those items
        for index, value in enumerate(values):
            try:
                dumps(value)
            except BaseException as exc:  # noqa: BLE001 - this is a culprit
                values[index] = None
                errors[index] = envelope(_unpicklable_result(key, function, value, exc))
        data = dumps((values, errors, time.perf_counter() - started))
    return wire.RESULT, task_id, data, attempt


def run_items(
    function: Callable[..., Any],
    items: list[Any],
    bare: bool,
    failed: Callable[[int, BaseException], None],
) -> list[Any]:
    """Run every item of a chunk, the loop itself at C speed; ``failed(index, exc)`` hears of
    each item that raised (its value is None). Also used by the thread and sync backends.

    ``list.extend(map(...))`` calls the function with no Python frame of ours per item. When an
    item raises, extend stops but keeps the values it already appended, and the shared iterator
    has consumed exactly the failing item, so the failing index is ``len(values)``: record its
    error and go on with the next item. One catch: extend takes a StopIteration raised by the
    function for the end of the input, so a chunk that comes up short had an item raise it. Its
    exception object is gone by then; a stand-in takes its place (running the item again could
    repeat its side effects).
    """
    values: list[Any] = []
    rest = iter(items)
    call = map if bare else itertools.starmap
    while True:
        try:
            values.extend(call(function, rest))
        except BaseException as exc:  # noqa: BLE001 - SystemExit too: the item failed, the worker did not
            failed(len(values), exc)
            values.append(None)
            continue
        if len(values) == len(items):
            return values
        failed(
            len(values),
            StopIteration("the function raised StopIteration (its value and traceback were not kept)"),
        )
        values.append(None)


def _run_retrying(
    function: Callable[..., Any],
    items: list[Any],
    bare: bool,
    attempt: int,
    retries: int,
    retry_on: tuple[type[BaseException], ...],
    errors: dict[int, wire.ErrorEnvelope],
) -> list[Any]:
    """Run every item through ``_attempt``, which retries ``retry_on`` errors in place."""
    values: list[Any] = []
    for index, item in enumerate(items):
        args = (item,) if bare else item
        ok, value, _ = _attempt(function, args, {}, attempt if index == 0 else 1, retries, retry_on)
        if ok:
            values.append(value)
        else:
            values.append(None)
            errors[index] = envelope(value)
    return values


def run_each(
    task_id: int,
    attempt: int,
    payload: memoryview,
    functions: Functions,
    send: Callable[[bytes], None],
) -> None:
    """A chunk whose every item is reported as it finishes, so the parent can time each one."""
    try:
        key, items, bare, retries, retry_on = loads(payload)
        function = _lookup(key, functions)
    except BaseException as exc:  # noqa: BLE001 - a bad argument costs this chunk only
        send(wire.pack(wire.ERROR, task_id, dumps(envelope(_unpickling_error(exc))), attempt))
        return
    for index, item in enumerate(items):
        args = (item,) if bare else item
        ok, value, _ = _attempt(function, args, {}, attempt if index == 0 else 1, retries, retry_on)
        data = None
        if ok:
            try:
                data = dumps_shared((True, value), 2)
            except BaseException as exc:  # noqa: BLE001 - fails this item only
                value = _unpicklable_result(key, function, value, exc)
        if data is None:
            data = dumps((False, envelope(value)))
        send(wire.pack(wire.ITEM, task_id, data))


def _unpicklable_result(
    key: FunctionKey, function: object, value: object, exc: BaseException
) -> SerializationError:
    label = _label(key, function)
    return SerializationError(
        returned_coroutine(label, value)
        or f"the result of {label} ({type_name(value)}) could not be pickled in "
        f"worker {os.getpid()}: {type(exc).__name__}: {exc}"
    )


def _unpickling_error(exc: BaseException) -> BaseException:
    if isinstance(exc, SerializationError):
        return exc
    return SerializationError(
        f"the arguments could not be unpickled in worker {os.getpid()}: {type(exc).__name__}: {exc}"
    )


def envelope(exc: BaseException) -> wire.ErrorEnvelope:
    """Describe an exception so that it reaches the parent even if it cannot be pickled."""
    import traceback  # the error path only: keeps worker start-up lean

    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    try:
        message = str(exc)
    except BaseException:  # noqa: BLE001 - a broken __str__ must not lose the error
        message = "<unprintable>"
    data: bytes | str
    try:
        data = dumps_error(exc)
    except BaseException as error:  # noqa: BLE001 - the parent builds a stand-in from the other fields
        return (
            f"could not be pickled in the worker ({type(error).__name__}: {error})",
            type_name(exc),
            message,
            text,
        )
    try:
        loads(data)  # an exception that pickles but cannot be rebuilt would fail in the parent
    except BaseException as error:  # noqa: BLE001 - as above
        data = f"could not be rebuilt from its pickle ({type(error).__name__}: {error})"
    return data, type_name(exc), message, text
