"""What crosses between the caller and a dask worker: our bytes, never dask's pickling of user objects.

The caller pickles a call (or a map chunk) in its own thread, so a bad argument is the caller's
error at the call (``encode``). dask then moves one opaque ``bytes`` argument: the user's keyword
arguments live inside it, so names such as ``key``, ``pure`` or ``retries`` reach the function and
never ``client.submit``. The worker (``run``) answers with bytes too: a value, or an error envelope
(``_calls.envelope``), so a result or an exception that cannot be pickled fails its own future with
our ``SerializationError`` instead of a dask error; beside them, what the task printed and logged
(``_capture``). The call carries the caller's logging levels (``_logs.levels``).

Nothing of ``__main__`` travels by name here. A process worker of our own pool runs the user's
script again and finds its top-level functions by name; a dask worker runs ``dask worker`` (or a
nanny's spawn), whose ``__main__`` is not the user's, so functions, classes and closures of the
script go by value with cloudpickle. On the way back, a class of the worker's ``__main__`` (one
that arrived by value) is sent as its name plus its pickle, and the caller uses its own class of
that name when its script defines one (``_main_class``): a result of the script's ``Point`` class
is an instance of the caller's ``Point``, and the script's exception classes stay catchable.
"""

from __future__ import annotations

import io
import os
import pickle
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from .._calls import _attempt, envelope, run_items
from .._coroutines import returned_coroutine, runnable
from .._errors import SerializationError
from .._serialize import FunctionKey, is_proxy, resolve, type_name, unwrap
from . import _capture

PROTOCOL = pickle.HIGHEST_PROTOCOL
TIMEOUT_TOPIC = "parallelize-timeout"

CALL, CHUNK = 0, 1


# -- the caller's side ------------------------------------------------------------------------------


def function_part(key: FunctionKey, function: Callable[..., Any]) -> object:
    """The function as a dask worker finds it: by name from an importable module, else itself
    (pickled by value with the message)."""
    if key[0] == "ref" and key[1] != "__main__":
        return key
    return function


def dumps(obj: object) -> bytes:
    """The C pickler when it can do the job, cloudpickle (by value) when it cannot, or when
    something of ``__main__`` would travel by name."""
    try:
        data = pickle.dumps(obj, PROTOCOL)
    except Exception:  # noqa: BLE001 - anything it refuses, cloudpickle may take; it re-raises if not
        return dumps_by_value(obj)
    # find(), not `in`: bytes.__contains__ first tries the needle as an int (see _serialize.dumps).
    return dumps_by_value(obj) if data.find(b"__main__") >= 0 else data


def dumps_by_value(obj: object) -> bytes:
    buffer = io.BytesIO()
    _pickler()(buffer, PROTOCOL).dump(obj)
    return buffer.getvalue()


_picklers: list[type[Any]] = []


def _pickler() -> type[Any]:
    if _picklers:
        return _picklers[0]
    import cloudpickle

    class Pickler(cloudpickle.Pickler):
        def reducer_override(self, obj: object) -> Any:
            if is_proxy(obj):
                raw = unwrap(obj)
                if getattr(raw, "__module__", None) != "__main__":
                    return obj.__reduce_ex__(PROTOCOL)
                return (_decorated_again, (raw,))
            if isinstance(obj, io.TextIOWrapper) and obj not in (sys.stdout, sys.stderr):
                raise pickle.PicklingError(f"cannot send an open file ({obj.name!r}) to another process")
            return super().reducer_override(obj)

    _picklers.append(Pickler)
    return Pickler


def _decorated_again(function: Callable[..., Any]) -> Any:
    """A decorated function of ``__main__`` used inside another one: arrives decorated (it then runs
    inline in the worker, see _config.default_backend)."""
    from .. import _decorators

    return _decorators.parallel(function)


# -- the worker's side ------------------------------------------------------------------------------

# Tokens of the tasks running in this worker process, for ``holding`` (a cancel of a running task).
_running: set[str] = set()
_functions: dict[tuple[str, str, str], Callable[..., Any]] = {}


def run(payload: bytes, token: str, attempt: int) -> tuple[bytes, list[_capture.Event]]:
    """The one function dask runs for every parallelize task: returns our pickled reply, and what
    the task printed and logged (see _capture), which the caller replays before it settles."""
    _running.add(token)
    events = _capture.begin()
    try:
        return _run(payload, token, attempt), events
    finally:
        _capture.end()
        _running.discard(token)


def holding(token: str) -> bool:
    """True in the worker process that is running ``token`` now (``client.run`` asks every worker)."""
    return token in _running


def _run(payload: bytes, token: str, attempt: int) -> bytes:
    started = time.perf_counter()
    try:
        kind, part, first, second, retries, retry_on, timeout, label, levels = pickle.loads(payload)
        _capture.follow_levels(levels)
        function = _load(part)
    except BaseException as exc:  # noqa: BLE001 - a bad argument costs this task only
        return _reply((False, envelope(_unpickling_error(exc)), attempt))
    if kind == CHUNK and timeout:
        limit = (timeout, token, label)
        values, errors = _run_chunk_timed(function, first, second, attempt, (retries, retry_on), limit)
        return _chunk_reply(label, values, errors, time.perf_counter() - started, attempt)
    watchdog = _watchdog(timeout, token, {}) if timeout else None
    try:
        if kind == CALL:
            ok, value, attempt = _attempt(function, first, second, attempt, retries, retry_on)
        else:
            ok, value = True, _run_chunk(function, first, second, attempt, retries, retry_on)
    finally:
        if watchdog is not None:
            watchdog.cancel()
    if not ok:
        return _reply((False, envelope(value), attempt))
    if kind == CHUNK:
        values, errors = value
        return _chunk_reply(label, values, errors, time.perf_counter() - started, attempt)
    try:
        return dumps_result((True, value, attempt))
    except BaseException as exc:  # noqa: BLE001 - an unpicklable result fails its own future only
        return _reply((False, envelope(_unpicklable(label, value, exc)), attempt))


def _load(part: object) -> Callable[..., Any]:
    if isinstance(part, tuple):
        found = _functions.get(part)
        if found is None:
            found = _functions[part] = runnable(resolve(part[1], part[2]))
        return found
    return runnable(part)  # type: ignore[arg-type]


def _run_chunk(
    function: Callable[..., Any],
    items: list[Any],
    bare: bool,
    attempt: int,
    retries: int,
    retry_on: tuple[type[BaseException], ...],
) -> tuple[list[Any], dict[int, Any]]:
    errors: dict[int, Any] = {}
    if retries and retry_on:
        values: list[Any] = []
        for index, item in enumerate(items):
            args = (item,) if bare else item
            ok, value, _ = _attempt(function, args, {}, attempt if index == 0 else 1, retries, retry_on)
            values.append(value if ok else None)
            if not ok:
                errors[index] = envelope(value)
        return values, errors

    def failed(index: int, exc: BaseException) -> None:
        errors[index] = envelope(exc)

    return run_items(function, items, bare, failed), errors


def _run_chunk_timed(
    function: Callable[..., Any],
    items: list[Any],
    bare: bool,
    attempt: int,
    retry: tuple[int, tuple[type[BaseException], ...]],
    limit: tuple[float, str, str],
) -> tuple[list[Any], dict[int, Any]]:
    """A chunk whose items each have a time limit: a watchdog per item. When one fires, its event
    carries the results of the items before it (``done``), which the restart then loses here."""
    (retries, retry_on), (timeout, token, label) = retry, limit
    values: list[Any] = []
    errors: dict[int, Any] = {}
    started = time.perf_counter()
    for index, item in enumerate(items):

        def done(index: int = index, item_started: float = time.perf_counter()) -> bytes:
            finished = {i: error for i, error in errors.items() if i < index}
            return _chunk_reply(label, values[:index], finished, item_started - started, attempt)

        watchdog = _watchdog(timeout, token, {"index": index}, done)
        try:
            args = (item,) if bare else item
            ok, value, _ = _attempt(function, args, {}, attempt if index == 0 else 1, retries, retry_on)
        finally:
            watchdog.cancel()
        values.append(value if ok else None)
        if not ok:
            errors[index] = envelope(value)
    return values, errors


def _chunk_reply(
    label: str, values: list[Any], errors: dict[int, Any], seconds: float, attempt: int
) -> bytes:
    try:
        return dumps_result((True, (values, errors, seconds), attempt))
    except BaseException:  # noqa: BLE001 - find the values that cannot be pickled; fail only those items
        for index, value in enumerate(values):
            try:
                dumps_result(value)
            except BaseException as exc:  # noqa: BLE001 - this is a culprit
                values[index] = None
                errors[index] = envelope(_unpicklable(label, value, exc))
        return dumps_result((True, (values, errors, seconds), attempt))


def _watchdog(
    timeout: float, token: str, details: dict[str, Any], done: Callable[[], bytes] | None = None
) -> threading.Timer:
    """Tell the caller, through a dask event, that this task (or item: ``details``) ran past its
    limit; the caller then restarts this worker (the only way to stop a thread), so nothing here
    stops the task."""
    from distributed import get_worker

    worker = get_worker()
    address = worker.address

    def fire() -> None:
        message = {"token": token, "worker": address, **details}
        if done is not None:
            message["done"] = done()
        worker.log_event(TIMEOUT_TOPIC, message)

    timer = threading.Timer(timeout, fire)
    timer.daemon = True
    timer.start()
    return timer


def _reply(message: tuple[Any, ...]) -> bytes:
    return dumps_result(message)


def dumps_result(obj: object) -> bytes:
    """Pickle a reply; classes of this worker's ``__main__`` travel as name plus value."""
    try:
        data = pickle.dumps(obj, PROTOCOL)
    except Exception:  # noqa: BLE001 - cloudpickle below re-raises if hopeless
        data = b"__main__"
    if data.find(b"__main__") < 0:
        return data
    buffer = io.BytesIO()
    _result_pickler()(buffer, PROTOCOL).dump(obj)
    return buffer.getvalue()


_result_picklers: list[type[Any]] = []


def _result_pickler() -> type[Any]:
    if _result_picklers:
        return _result_picklers[0]
    import cloudpickle

    class Pickler(cloudpickle.Pickler):
        def reducer_override(self, obj: object) -> Any:
            if isinstance(obj, type) and obj.__module__ == "__main__":
                return (_main_class, (obj.__qualname__, cloudpickle.dumps(obj, PROTOCOL)))
            return super().reducer_override(obj)

    _result_picklers.append(Pickler)
    return Pickler


def _main_class(qualname: str, data: bytes) -> type:
    """The caller's own class of that name when its script defines one, else the copy sent."""
    main = sys.modules.get("__main__")
    found: object = main
    for part in qualname.split("."):
        found = getattr(found, part, None)
    if isinstance(found, type) and found.__qualname__ == qualname:
        return found
    loaded: type = pickle.loads(data)
    return loaded


def _unpicklable(label: str, value: object, exc: BaseException) -> SerializationError:
    return SerializationError(
        returned_coroutine(label, value)
        or f"the result of {label} ({type_name(value)}) could not be pickled in dask worker "
        f"process {os.getpid()}: {type(exc).__name__}: {exc}"
    )


def _unpickling_error(exc: BaseException) -> BaseException:
    if isinstance(exc, SerializationError):
        return exc
    return SerializationError(
        f"the call could not be unpickled in dask worker process {os.getpid()} (is parallelize, and "
        f"every module the call names, installed on the workers?): {type(exc).__name__}: {exc}"
    )
