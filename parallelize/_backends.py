"""The backend seam, and the two backends that need no processes.

Everything above this seam (decorators, map, futures, configuration) talks to a ``Backend``; the
engines below it are the process backend (``_process.py``, which each public ``Pool`` holds),
the thread and sync backends here, and later a dask.distributed one, which will be one new module
implementing the same five members::

    _encode(task)   in the caller's thread; pickle what must cross a boundary, or raise
                    SerializationError there and then
    _enqueue(task)  hand the task over; the backend later fills task.future
    _capacity()     how many tasks run at once (map keeps a few chunks per slot in flight)
    stats()         live counts (PoolStats), cheap enough to poll: no lock held for long, no
                    question sent to a worker; outcomes are counted by the futures (_tally)
    shutdown(wait, cancel_pending)

``Limited`` is not a backend of its own: it wraps whichever backend a function uses to enforce
``@parallel(workers=n)``, so every backend gets per-function limits for free.
"""

from __future__ import annotations

import threading
import time
import weakref
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from . import _role, _shm
from ._calls import run_items
from ._coroutines import returned_coroutine, runnable
from ._errors import PoolClosed, SerializationError
from ._functions import FunctionHandle
from ._futures import Future
from ._serialize import dumps, dumps_shared, loads, type_name
from ._tally import Tally
from ._task import NO_OPTIONS, CallTask, ChunkResult, ChunkTask, Task, TaskOptions

if TYPE_CHECKING:
    from ._stats import PoolStats

__all__ = ["Backend", "Limited", "SyncBackend", "ThreadBackend", "submit_call", "submit_chunk"]


class Backend(Protocol):
    def _encode(self, task: Task) -> None: ...
    def _enqueue(self, task: Task) -> None: ...
    def _capacity(self) -> int: ...
    def stats(self) -> PoolStats: ...
    def shutdown(self, wait: bool = True, *, cancel_pending: bool = False) -> None: ...


def submit_call(
    backend: Backend,
    handle: FunctionHandle,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    options: TaskOptions = NO_OPTIONS,
) -> Future[Any]:
    # A snapshot per call: a by-value function is pickled as it is now (when encoded).
    task = CallTask(handle.snapshot(), args, kwargs, Future(), options)
    backend._encode(task)
    _enqueue(backend, task)
    return task.future


def submit_chunk(
    backend: Backend,
    handle: FunctionHandle,
    items: list[Any],
    options: TaskOptions = NO_OPTIONS,
    *,
    bare: bool = False,
) -> Future[Any]:
    """Submit one chunk of a map: argument tuples, or with ``bare`` single arguments.

    ``handle`` is the map's snapshot (see ``map_items``), so every chunk runs the same function."""
    task = ChunkTask(handle.snapshot(), items, Future(), options, bare=bare)
    backend._encode(task)
    _enqueue(backend, task)
    return task.future


def _enqueue(backend: Backend, task: Task) -> None:
    try:
        backend._enqueue(task)
    except BaseException:
        # Nobody will ever see this future: cancelling it runs its done-callbacks, which unlink
        # the shared memory its arguments were encoded into. It was never the backend's task.
        task.future._tally = None
        task.future.cancel()
        raise


def encode(task: Task) -> None:
    """Pickle a task for a process boundary (the process and sync backends)."""
    segments: list[str] = []
    task.payload = task.encode(segments)
    if segments:
        # Large arguments went into shared memory owned by this process. A retry or a re-send
        # after a crash maps the same segment again, so it lives until the task is settled
        # (done, failed or cancelled), whichever thread settles it.
        task.future.add_done_callback(lambda _: _shm.release(segments))


# -- time limits these backends cannot enforce ----------------------------------------------------
#
# A thread cannot be stopped and the sync backend runs the call in the caller's own thread, so
# there a `timeout=` bounds nothing. That is documented, but the backend is often chosen far from
# the code (PARALLELIZE_BACKEND=thread for a test run): one warning per function makes the
# unbounded calls visible. Not inside a worker, where nested calls run inline by design and the
# outer task's own limit, if it has one, still stops the whole worker.

_unbounded_said: weakref.WeakSet[Any] = weakref.WeakSet()  # functions warned about; guarded by _said_lock
_unbounded_labels: set[str] = set()  # the same, for callables that take no weak reference
_said_lock = threading.Lock()


def warn_unbounded(task: Task, backend: str) -> None:
    """Log, once per function, that ``backend`` runs its calls without their time limit."""
    if _role.IN_WORKER:
        return
    function, label = task.function.function, task.function.label
    with _said_lock:
        try:
            if function in _unbounded_said:
                return
            _unbounded_said.add(function)
        except TypeError:  # no weak reference to it: go by its name
            if label in _unbounded_labels:
                return
            _unbounded_labels.add(label)
    import logging

    logging.getLogger("parallelize").warning(
        "%s has timeout=%g s, but the %s backend cannot stop a running call, so its calls run "
        'without a time limit; use the process backend (backend="process", or unset '
        "PARALLELIZE_BACKEND) to enforce it (said once per function)",
        label,
        task.options.timeout,
        backend,
    )


def _attempts(function: Callable[..., Any], options: TaskOptions) -> Callable[..., Any]:
    """``function`` re-run on a ``retry_on`` error while the retry budget lasts (thread and sync
    backends; timeouts are enforced by the process backend only, which can stop a task)."""
    if not options.retries or not options.retry_on:
        return function

    def run(*args: Any, **kwargs: Any) -> Any:
        for _ in range(options.retries):
            try:
                return function(*args, **kwargs)
            except options.retry_on:
                continue
        return function(*args, **kwargs)

    return run


def run_here(task: Task, function: Callable[..., Any]) -> None:
    """Run a task in this thread and fill its future (the thread and sync backends)."""
    if not task.future.set_running_or_notify_cancel():
        return
    if task.future._tally is not None:
        task.future._tally.add("started")
    function = _attempts(function, task.options)
    if isinstance(task, CallTask):
        try:
            value = function(*task.args, **task.kwargs)
        except BaseException as exc:  # noqa: BLE001 - delivered through the future, like a worker's
            task.future.set_exception(exc)
            return
        task.future.set_result(value)
        return
    assert isinstance(task, ChunkTask)
    started = time.perf_counter()
    errors: dict[int, BaseException] = {}
    # Each failed item's exception is raised by the map at that item's position.
    values = run_items(function, task.items, task.bare, errors.__setitem__)
    task.future.set_result(ChunkResult(values, errors, time.perf_counter() - started))


class ThreadBackend:
    """A thread pool for I/O-bound functions: no pickling, shared memory, the GIL still applies."""

    def __init__(self, workers: int) -> None:
        from concurrent.futures import ThreadPoolExecutor

        self._workers = workers
        self._executor = ThreadPoolExecutor(workers, thread_name_prefix="parallelize-thread")
        self._cancelling = False
        self._tally = Tally()

    def _encode(self, task: Task) -> None:
        # threads share the caller's objects: nothing to pickle
        if task.options.timeout is not None:
            warn_unbounded(task, "thread")

    def _enqueue(self, task: Task) -> None:
        task.future._tally = self._tally
        try:
            self._executor.submit(self._run, task)
        except RuntimeError as exc:
            raise PoolClosed(
                f"the thread backend is shut down, so {task.describe()} was not submitted"
            ) from exc
        self._tally.add("submitted")

    def _run(self, task: Task) -> None:
        if self._cancelling:
            task.future.cancel()
            return
        run_here(task, runnable(task.function.function))

    def _capacity(self) -> int:
        return self._workers

    def stats(self) -> PoolStats:
        # The threads started so far (ThreadPoolExecutor starts them as work arrives).
        threads = len(getattr(self._executor, "_threads", ()))
        return self._tally.snapshot("thread", workers=threads)

    def shutdown(self, wait: bool = True, *, cancel_pending: bool = False) -> None:
        # ThreadPoolExecutor's own cancel_futures would cancel its futures, not ours, and leave
        # ours pending forever; queued runs see this flag and cancel our futures instead.
        self._cancelling = self._cancelling or cancel_pending
        self._executor.shutdown(wait=wait)


class SyncBackend:
    """Runs each call inline, in the caller's thread, at submit time: for pdb and for tests.

    Arguments, results and exceptions still make the pickle round trip, so code that could not
    cross a process boundary fails here exactly as it would on the process backend.
    """

    def __init__(self) -> None:
        self._tally = Tally()

    def _encode(self, task: Task) -> None:
        if task.options.timeout is not None:
            warn_unbounded(task, "sync")
        encode(task)

    def _enqueue(self, task: Task) -> None:
        assert task.payload is not None
        task.future._tally = self._tally
        decoded = loads(task.payload)
        if isinstance(task, CallTask):
            task.args, task.kwargs = decoded[1:3]
        else:
            assert isinstance(task, ChunkTask)
            task.items = decoded[1]
        function = runnable(task.function.function)

        def call(*args: Any, **kwargs: Any) -> Any:
            try:
                value = function(*args, **kwargs)
            except BaseException as exc:
                copy = _round_trip_exception(exc)
                if copy is exc:
                    raise
                raise copy from None
            return _round_trip(task, value)

        run_here(task, call)

    def _capacity(self) -> int:
        return 1

    def stats(self) -> PoolStats:
        # No worker of its own: calls run in their callers' threads, so "running" is the calls
        # under way in other threads now, and nothing ever waits.
        return self._tally.snapshot("sync", workers=0, queued=0)

    def shutdown(self, wait: bool = True, *, cancel_pending: bool = False) -> None:
        pass  # nothing runs in the background


def _round_trip(task: Task, value: object) -> object:
    try:
        return loads(dumps_shared(value, 1))  # large results take shared memory, as from a worker
    except Exception as exc:
        raise SerializationError(
            returned_coroutine(task.function.label, value)
            or f"the result of {task.function.label} ({type_name(value)}) could not be pickled: "
            f"{type(exc).__name__}: {exc}"
        ) from exc


def _round_trip_exception(exc: BaseException) -> BaseException:
    if isinstance(exc, SerializationError):
        return exc
    try:
        copy: BaseException = loads(dumps(exc))
    except Exception as error:  # noqa: BLE001 - the stand-in below, as on the process backend
        return SerializationError(
            f"{type_name(exc)}: {exc} could not make the pickle round trip "
            f"({type(error).__name__}: {error}), so this error stands in for it",
            original_type=type_name(exc),
        )
    return copy.with_traceback(exc.__traceback__)


class Limited:
    """At most ``limit`` tasks of one function on the backend at once; the rest wait here.

    A waiting task is already encoded (so a bad argument still fails at the call) and its future
    is already the caller's, so cancelling it here needs no help from the backend.
    """

    def __init__(self, backend: Callable[[], Backend], limit: int) -> None:
        self._backend = backend
        self._limit = limit
        self._lock = threading.Lock()
        self._running = 0  # guarded by _lock
        self._waiting: deque[tuple[Backend, Task]] = deque()  # guarded by _lock

    def get(self) -> Backend:
        return _LimitedView(self, self._backend())

    def _admit(self, backend: Backend, task: Task) -> None:
        with self._lock:
            if self._running >= self._limit:
                self._waiting.append((backend, task))
                return
            self._running += 1
        self._start(backend, task)

    def _start(self, backend: Backend, task: Task) -> None:
        try:
            backend._enqueue(task)
        except BaseException:
            self._release(task.future)
            raise
        task.future.add_done_callback(self._release)

    def _release(self, _: object) -> None:
        with self._lock:
            while self._waiting:
                backend, task = self._waiting.popleft()
                if not task.future.cancelled():
                    break
            else:
                self._running -= 1
                return
        try:
            self._start(backend, task)
        except BaseException as exc:  # noqa: BLE001 - e.g. PoolClosed: the waiting caller hears of it
            if not task.future.done() and task.future.set_running_or_notify_cancel():
                task.future.set_exception(exc)


class _LimitedView:
    def __init__(self, limited: Limited, backend: Backend) -> None:
        self._limited = limited
        self._backend = backend

    def _encode(self, task: Task) -> None:
        self._backend._encode(task)

    def _enqueue(self, task: Task) -> None:
        self._limited._admit(self._backend, task)

    def _capacity(self) -> int:
        return min(self._limited._limit, self._backend._capacity())

    def stats(self) -> PoolStats:
        return self._backend.stats()

    def shutdown(self, wait: bool = True, *, cancel_pending: bool = False) -> None:
        self._backend.shutdown(wait, cancel_pending=cancel_pending)
