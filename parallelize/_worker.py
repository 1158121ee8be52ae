"""What runs in a worker process: boot, then run one task at a time until told to stop.

Spawn and forkserver import this module in every new worker, so it imports only the standard
library and the package's light modules. A worker never decides anything about the pool: it runs
what it is sent, reports every outcome (a broken argument, result or exception included) as a
message on its own pipe, and dies with its parent.
"""

from __future__ import annotations

import itertools
import multiprocessing
import os
import select
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

from . import _protocol as wire
from ._errors import SerializationError
from ._serialize import FunctionKey, dumps, dumps_shared, loads, resolve, type_name

# True in a worker process. Decorated functions called here run inline rather than start a pool
# of their own inside the pool (see _config.default_backend).
ACTIVE = False

# Exit code of a worker whose parent vanished: nobody is left to read it, but `ps` and tests can.
PARENT_GONE = 70


def run(tasks: Connection, results: Connection, initializer: bytes | None) -> None:
    """The worker's main loop; the target of its ``multiprocessing.Process``."""
    global ACTIVE
    ACTIVE = True
    # Ctrl-C in a terminal reaches the whole process group; the parent decides what it means.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _die_with_parent()
    send = results.send_bytes
    if initializer is not None:
        try:
            _run_initializer(initializer)
        except BaseException as exc:  # noqa: BLE001 - reported to the parent, which decides
            send(wire.pack(wire.INIT_FAILED, 0, dumps(_envelope(exc))))
            return
    send(wire.pack(wire.READY))
    _serve(tasks, send)


# A decoded message: (kind, task id, attempt, next id, payload).
_Message = tuple[int, int, int, int, memoryview]
# What running a task produced: (kind, task id, payload, attempts made); None once a RUN_EACH
# chunk has reported its items itself.
_Reply = tuple[int, int, bytes, int] | None
_RUNS = (wire.RUN, wire.RUN_MANY, wire.RUN_EACH)


def _serve(tasks: Connection, send: Callable[[bytes], None]) -> None:
    """Run tasks until STOP or end of file.

    After a task, the worker reads ahead whatever waits in its pipe and names the task it will
    start next in the result it sends (see _protocol): that is how the dispatcher knows which
    of the tasks it prefetched is running, without a message per task start.
    """
    pipe = _Pipe(tasks, send)
    while True:
        # Idle: the next task to arrive runs unconditionally (the dispatcher knows it is running).
        if not pipe.pending:
            pipe.receive()
        message = pipe.pending.popleft()
        kind = message[0]
        if kind == wire.STOP:
            return
        if kind == wire.DEFINE:
            _define(message[4], pipe.functions)
            continue
        if kind not in _RUNS:
            continue  # a SKIP for a task that already ran: too late, and the dispatcher knows it
        following: _Message | None = message
        while following is not None:
            reply = _run(following, pipe.functions, send)
            if reply is None:
                break  # a RUN_EACH chunk: its last ITEM told the dispatcher this worker is idle
            following = pipe.next_run()
            reply_kind, task_id, data, attempt = reply
            send(wire.pack(reply_kind, task_id, data, attempt, 0 if following is None else following[1]))


class _Pipe:
    """The worker's end of its task pipe, with the messages it has read ahead."""

    def __init__(self, tasks: Connection, send: Callable[[bytes], None]) -> None:
        self.tasks = tasks
        self.send = send
        self.functions: dict[FunctionKey, Callable[..., Any] | BaseException] = {}
        self.pending: deque[_Message] = deque()
        self._ahead = select.poll()
        self._ahead.register(tasks.fileno(), select.POLLIN)

    def receive(self) -> None:
        """Read one message (a batch counts as the messages in it); end of file reads as STOP."""
        try:
            message = wire.unpack(self.tasks.recv_bytes())
        except (EOFError, OSError):
            message = (wire.STOP, 0, 0, 0, memoryview(b""))
        if message[0] == wire.BATCH:
            self.pending.extend(map(wire.unpack, wire.unpack_batch(message[4])))
        else:
            self.pending.append(message)

    def next_run(self) -> _Message | None:
        """The next task to start from what is waiting, dropping what a SKIP names."""
        pending = self.pending
        while self._ahead.poll(0):
            self.receive()
            if pending[-1][0] == wire.STOP:
                break
        if any(message[0] == wire.SKIP for message in pending):
            skips = {message[1] for message in pending if message[0] == wire.SKIP}
            kept = []
            for message in pending:
                if message[0] in _RUNS and message[1] in skips:
                    self.send(wire.pack(wire.SKIPPED, message[1]))
                elif message[0] != wire.SKIP:
                    kept.append(message)
            pending.clear()
            pending.extend(kept)
        while pending:
            kind = pending[0][0]
            if kind in _RUNS:
                return pending.popleft()
            if kind != wire.DEFINE:
                return None  # STOP: handled when idle
            _define(pending.popleft()[4], self.functions)
        return None


def _run(
    message: _Message,
    functions: dict[FunctionKey, Callable[..., Any] | BaseException],
    send: Callable[[bytes], None],
) -> _Reply:
    kind, task_id, attempt, _, payload = message
    if kind == wire.RUN:
        return _run_call(task_id, attempt, payload, functions)
    if kind == wire.RUN_MANY:
        return _run_chunk(task_id, attempt, payload, functions)
    _run_each(task_id, attempt, payload, functions, send)
    return None


def _run_initializer(data: bytes) -> None:
    key, definition, initargs = loads(data)
    function = loads(definition) if definition is not None else resolve(*key[1:])
    function(*initargs)


def _define(payload: memoryview, functions: dict[FunctionKey, Callable[..., Any] | BaseException]) -> None:
    key, definition = loads(payload)
    try:
        functions[key] = loads(definition)
    except Exception as exc:  # noqa: BLE001 - every task that uses it will report this
        functions[key] = exc


def _lookup(key: FunctionKey, functions: dict[FunctionKey, Callable[..., Any] | BaseException]) -> Any:
    found = functions.get(key)
    if found is None and key[0] == "ref":
        try:
            found = functions[key] = resolve(*key[1:])
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


def _run_call(
    task_id: int,
    attempt: int,
    payload: memoryview,
    functions: dict[FunctionKey, Callable[..., Any] | BaseException],
) -> _Reply:
    try:
        key, args, kwargs, retries, retry_on = loads(payload)
        function = _lookup(key, functions)
    except BaseException as exc:  # noqa: BLE001 - a bad argument costs this task only
        return wire.ERROR, task_id, dumps(_envelope(_unpickling_error(exc))), attempt
    ok, value, attempt = _attempt(function, args, kwargs, attempt, retries, retry_on)
    if not ok:
        return wire.ERROR, task_id, dumps(_envelope(value)), attempt
    try:
        # large buffers in the value (or one container into it) go through shared memory
        return wire.RESULT, task_id, dumps_shared(value, 1), attempt
    except Exception as exc:  # noqa: BLE001 - an unpicklable result fails its own future only
        error = _unpicklable_result(key, function, value, exc)
        return wire.ERROR, task_id, dumps(_envelope(error)), attempt


def _run_chunk(
    task_id: int,
    attempt: int,
    payload: memoryview,
    functions: dict[FunctionKey, Callable[..., Any] | BaseException],
) -> _Reply:
    started = time.perf_counter()
    try:
        key, items, bare, retries, retry_on = loads(payload)
        function = _lookup(key, functions)
    except BaseException as exc:  # noqa: BLE001 - a bad argument costs this chunk only
        return wire.ERROR, task_id, dumps(_envelope(_unpickling_error(exc))), attempt
    errors: dict[int, wire.ErrorEnvelope] = {}
    if retries and retry_on:
        values = _run_retrying(function, items, bare, attempt, retries, retry_on, errors)
    else:

        def failed(index: int, exc: BaseException) -> None:
            errors[index] = _envelope(exc)

        values = run_items(function, items, bare, failed)
    try:
        data = dumps_shared((values, errors, time.perf_counter() - started), 3)
    except Exception:  # noqa: BLE001 - find the values that cannot be pickled; fail only those items
        for index, value in enumerate(values):
            try:
                dumps(value)
            except Exception as exc:  # noqa: BLE001 - this is a culprit
                values[index] = None
                errors[index] = _envelope(_unpicklable_result(key, function, value, exc))
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
            errors[index] = _envelope(value)
    return values


def _run_each(
    task_id: int,
    attempt: int,
    payload: memoryview,
    functions: dict[FunctionKey, Callable[..., Any] | BaseException],
    send: Callable[[bytes], None],
) -> None:
    """A chunk whose every item is reported as it finishes, so the parent can time each one."""
    try:
        key, items, bare, retries, retry_on = loads(payload)
        function = _lookup(key, functions)
    except BaseException as exc:  # noqa: BLE001 - a bad argument costs this chunk only
        send(wire.pack(wire.ERROR, task_id, dumps(_envelope(_unpickling_error(exc))), attempt))
        return
    for index, item in enumerate(items):
        args = (item,) if bare else item
        ok, value, _ = _attempt(function, args, {}, attempt if index == 0 else 1, retries, retry_on)
        data = None
        if ok:
            try:
                data = dumps_shared((True, value), 2)
            except Exception as exc:  # noqa: BLE001 - fails this item only
                value = _unpicklable_result(key, function, value, exc)
        if data is None:
            data = dumps((False, _envelope(value)))
        send(wire.pack(wire.ITEM, task_id, data))


def _unpicklable_result(
    key: FunctionKey, function: object, value: object, exc: Exception
) -> SerializationError:
    return SerializationError(
        f"the result of {_label(key, function)} ({type_name(value)}) could not be pickled in "
        f"worker {os.getpid()}: {type(exc).__name__}: {exc}"
    )


def _unpickling_error(exc: BaseException) -> BaseException:
    if isinstance(exc, SerializationError):
        return exc
    return SerializationError(
        f"the arguments could not be unpickled in worker {os.getpid()}: {type(exc).__name__}: {exc}"
    )


def _envelope(exc: BaseException) -> wire.ErrorEnvelope:
    """Describe an exception so that it reaches the parent even if it cannot be pickled."""
    import traceback  # the error path only: keeps worker start-up lean

    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    try:
        message = str(exc)
    except Exception:  # noqa: BLE001 - a broken __str__ must not lose the error
        message = "<unprintable>"
    data: bytes | str
    try:
        data = dumps(exc)
    except Exception as error:  # noqa: BLE001 - the parent builds a stand-in from the other fields
        return (
            f"could not be pickled in the worker ({type(error).__name__}: {error})",
            type_name(exc),
            message,
            text,
        )
    try:
        loads(data)  # an exception that pickles but cannot be rebuilt would fail in the parent
    except Exception as error:  # noqa: BLE001 - as above
        data = f"could not be rebuilt from its pickle ({type(error).__name__}: {error})"
    return data, type_name(exc), message, text


def _die_with_parent() -> None:
    """Exit when the parent dies, even by SIGKILL: no orphan outlives the program that made it.

    On Linux the kernel sends SIGKILL when the parent goes (prctl PR_SET_PDEATHSIG). Everywhere, a
    watchdog thread blocks on the parent sentinel, a pipe whose other end only the parent holds:
    it reads end-of-file when the parent is gone, and covers a parent that died before prctl ran.
    """
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass
    parent = multiprocessing.parent_process()
    sentinel = getattr(parent, "sentinel", None)
    if sentinel is None:
        return

    def watch() -> None:
        select.select([sentinel], [], [])
        os._exit(PARENT_GONE)

    threading.Thread(target=watch, name="parallelize-watchdog", daemon=True).start()
