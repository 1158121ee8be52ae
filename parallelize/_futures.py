"""The future every call returns, and how a worker's exception is rebuilt in the caller.

``Future`` is a ``concurrent.futures.Future`` (so ``wait``, ``as_completed`` and every library that
takes one keep working) that can also be awaited inside a running asyncio loop. asyncio is imported
only on the first ``await``: it costs more to import than the rest of the package together.
"""

from __future__ import annotations

import _thread
import concurrent.futures
import sys
import threading
import time
from collections.abc import Callable, Generator
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from ._errors import RemoteTraceback, SerializationError
from ._protocol import ErrorEnvelope
from ._serialize import loads

__all__ = ["Future", "attach_traceback", "cancel_running", "rebuild_exception", "settle"]

R = TypeVar("R")


class Future(concurrent.futures.Future[R]):
    """The pending result of one call: ``result()`` blocks, ``await`` suspends.

    ``result()`` re-raises the worker's exception with its own type and message; the worker's
    traceback is attached as ``__cause__`` (and as a note on Python 3.11+).

    Unlike ``concurrent.futures``, ``cancel()`` also stops a task that is already running on a
    process pool (its worker is terminated and replaced), and Ctrl-C while waiting in
    ``result()`` cancels the pool's queued work and stops its running tasks before the
    KeyboardInterrupt reaches the caller.
    """

    # Set by a process pool when it accepts the task; None for the thread and sync backends.
    _engine: _Engine | None = None
    _task: object = None
    # Set by the backend that accepts the task: its live counts (see _tally), bumped here.
    _tally: _Tally | None = None

    def __init__(self) -> None:
        # concurrent.futures.Future.__init__'s six fields (the same from 3.8 to 3.13; a test
        # compares them with the stdlib's), without the threading.Condition it makes: ours
        # replaces it, and making one costs more than the rest of a submit's bookkeeping.
        self._condition = _FutureLock()  # type: ignore[assignment]
        self._state = _PENDING
        self._result: R | None = None
        self._exception: BaseException | None = None
        self._waiters: list[Any] = []
        self._done_callbacks: list[Callable[[concurrent.futures.Future[R]], object]] = []

    # With a tally, a result or an exception is counted under the future's lock, between the
    # state change and the notification: a waiter returns only once it has the lock back, so
    # whoever sees this future done sees it counted (pool.stats()). This mirrors the stdlib's
    # set_result / set_exception (unchanged from 3.8 to 3.13, like cancel_running below) with
    # the count added; the callbacks still run after the lock is released. A cancellation is
    # counted with the callbacks (_invoke_callbacks).
    def set_result(self, result: R) -> None:
        tally = self._tally
        if tally is None:
            super().set_result(result)
            return
        with self._condition:
            self._refuse_if_settled()
            self._result = result
            self._state = _FINISHED
            tally.finished(result)
            for waiter in self._waiters:
                waiter.add_result(self)
            self._condition.notify_all()
        self._invoke_callbacks()

    def set_exception(self, exception: BaseException | None) -> None:
        tally = self._tally
        if tally is None:
            super().set_exception(exception)
            return
        with self._condition:
            self._refuse_if_settled()
            self._exception = exception
            self._state = _FINISHED
            tally.add("failed")
            for waiter in self._waiters:
                waiter.add_exception(self)
            self._condition.notify_all()
        self._invoke_callbacks()

    def _refuse_if_settled(self) -> None:
        if self._state in _SETTLED_STATES:
            raise concurrent.futures.InvalidStateError(f"{self._state}: {self!r}")

    def _invoke_callbacks(self) -> None:
        tally = self._tally
        if tally is not None and self._state in _CANCELLED_STATES:
            tally.add("cancelled")
        super()._invoke_callbacks()  # type: ignore[misc]

    def cancel(self) -> bool:
        if super().cancel():
            return True
        # Read the task before cancelling: settle() unties it (sets _task to None) as soon as the
        # result arrives, which may be between cancel_running() and a later read. Read first, it
        # cannot be None here unless the future is already settled, and then cancel_running()
        # refuses, so the engine is asked to stop a real task or nothing at all.
        engine, task = self._engine, self._task
        if engine is None or task is None or not cancel_running(self):
            return False
        engine.stop(task)
        return True

    def result(self, timeout: float | None = None) -> R:
        try:
            return super().result(timeout)
        except KeyboardInterrupt as exc:
            self._interrupted(exc)
            raise
        except RuntimeError as exc:
            interrupt = self._interrupted_in_wait(exc)
            if interrupt is None:
                raise
            raise interrupt from None

    def exception(self, timeout: float | None = None) -> BaseException | None:
        try:
            return super().exception(timeout)
        except KeyboardInterrupt as exc:
            self._interrupted(exc)
            raise
        except RuntimeError as exc:
            interrupt = self._interrupted_in_wait(exc)
            if interrupt is None:
                raise
            raise interrupt from None

    def _interrupted_in_wait(self, error: RuntimeError) -> KeyboardInterrupt | None:
        """The KeyboardInterrupt a RuntimeError hides (None: it hides none).

        A second Ctrl-C while ``_FutureLock.wait`` takes its lock back after the first one
        leaves the lock free, and the ``with`` around the wait then fails to release it: the
        caller gets "cannot release un-acquired lock" with the KeyboardInterrupt as its
        context. (``threading.Condition.wait`` did this on a single Ctrl-C.) This gives the
        Ctrl-C back its own name.
        """
        interrupt = error.__context__
        if isinstance(interrupt, KeyboardInterrupt) and "un-acquired lock" in str(error):
            self._interrupted(interrupt)
            return interrupt
        return None

    def _interrupted(self, exc: KeyboardInterrupt) -> None:
        # A task that raised KeyboardInterrupt in its worker is that one task's outcome, re-raised
        # here as its result: only a Ctrl-C of this process (a KeyboardInterrupt that is not the
        # future's own exception) stops the pool's work, which may be other callers' too.
        engine = self._engine
        if engine is not None and exc is not self._exception:
            engine.interrupt()

    def __await__(self) -> Generator[Any, None, R]:
        import asyncio

        # wrap_future cancels this future when the awaiting asyncio task is cancelled.
        return asyncio.wrap_future(self, loop=asyncio.get_running_loop()).__await__()


Future.__module__ = "parallelize"


class _FutureLock(_thread.RLock):  # type: ignore[misc]
    """A future's lock and condition in one, whose ``with`` cannot be cut short by Ctrl-C.

    ``concurrent.futures.Future`` guards its state with a ``threading.Condition``, whose
    ``__enter__`` is Python code that calls the lock's: a Ctrl-C whose handler runs after that
    call returns, before the ``with`` is set up, raises KeyboardInterrupt with the lock held and
    no ``__exit__`` to come. The caller's thread then owns the future's lock for good, and the
    dispatcher blocks for ever as soon as it settles or cancels that future: the pool stalls
    (issue 9 #2, seen under load as a map that never finished after a Ctrl-C in ``result()``).
    Here ``with`` calls the C lock directly, with no point in between where a signal handler
    runs; ``wait`` never leaves the lock released when interrupted (see ``Future._interrupted_in_wait``
    for the one exception, a second Ctrl-C).
    """

    if TYPE_CHECKING:  # _thread.RLock's own, for threading.Condition; typeshed omits them

        def _release_save(self) -> tuple[int, int]: ...
        def _acquire_restore(self, state: tuple[int, int], /) -> None: ...
        def _is_owned(self) -> bool: ...

    __slots__ = ("_waiters",)  # one per pending task: no __dict__

    def __init__(self) -> None:
        # Each waiter's lock, held until a notify releases it; made by the first wait (most
        # futures are never waited on while pending: a list each would be ~60 bytes per task).
        self._waiters: list[Any] | None = None

    def wait(self, timeout: float | None = None) -> bool:
        waiter = _thread.allocate_lock()
        waiter.acquire()
        if self._waiters is None:
            self._waiters = []
        self._waiters.append(waiter)
        saved = None
        try:
            saved = self._release_save()
            return _block(waiter, timeout)
        finally:
            if saved is not None:
                self._acquire_restore(saved)
            elif not self._is_owned():
                # Interrupted between the release and `saved`: the caller's `with` still holds
                # it as far as it knows (a future never takes its lock twice, so once is all).
                self.acquire()
            if waiter in self._waiters:  # not notified (a notify takes it out)
                self._waiters.remove(waiter)

    def notify(self, n: int = 1) -> None:
        waiters = self._waiters
        while waiters and n > 0:
            waiters.pop(0).release()
            n -= 1

    def notify_all(self) -> None:
        if self._waiters:
            self.notify(len(self._waiters))


def _block(waiter: _thread.LockType, timeout: float | None) -> bool:
    """Wait for ``waiter``; in the main thread, in slices, so a pending Ctrl-C is raised soon.

    A signal whose C handler runs just before the thread blocks (after the interpreter last
    looked for one) does not interrupt the wait: its KeyboardInterrupt would come only when the
    future settles, perhaps never. That is rare for a Ctrl-C from the terminal, but it is how
    every re-delivered one lands (see ``_interrupts.raise_again_later``). Each slice's end runs
    any pending handler; other threads never run signal handlers, and wait in one piece.
    """
    if _thread.get_ident() != threading.main_thread().ident:
        return waiter.acquire(True, -1 if timeout is None else timeout)
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        left = _SIGNAL_SLICE if deadline is None else min(_SIGNAL_SLICE, deadline - time.monotonic())
        if waiter.acquire(True, max(left, 0.0)):
            return True
        if left <= 0:
            return False


_SIGNAL_SLICE = 0.2  # seconds; a pending Ctrl-C waits at most this long in result()


class _Engine(Protocol):
    def stop(self, task: Any, /) -> None: ...
    def interrupt(self) -> None: ...


class _Tally(Protocol):
    def finished(self, result: object, /) -> None: ...
    def add(self, counter: str, /) -> None: ...


def cancel_running(future: concurrent.futures.Future[Any]) -> bool:
    """Cancel a future whose task is running, as ``cancel()`` does for a pending one.

    ``concurrent.futures`` refuses to cancel a running future because its executors cannot stop
    the work; ours can, so the future moves to the same final state a pending cancel reaches.
    This touches the stdlib future's private state (unchanged from 3.8 to 3.13): the lock-held
    state change and the notifications mirror ``cancel()`` followed by
    ``set_running_or_notify_cancel()``.
    """
    with future._condition:
        if future._state != _RUNNING:
            return future._state in _CANCELLED_STATES
        future._state = _CANCELLED_AND_NOTIFIED
        for waiter in future._waiters:
            waiter.add_cancelled(future)
        future._condition.notify_all()
    future._invoke_callbacks()  # type: ignore[attr-defined]
    return True


_PENDING = "PENDING"
_RUNNING = "RUNNING"
_FINISHED = "FINISHED"
_CANCELLED_AND_NOTIFIED = "CANCELLED_AND_NOTIFIED"
_CANCELLED_STATES = ("CANCELLED", "CANCELLED_AND_NOTIFIED")
_SETTLED_STATES = (*_CANCELLED_STATES, _FINISHED)


def settle(
    future: concurrent.futures.Future[Any], value: object = None, *, error: BaseException | None = None
) -> None:
    """Set a result or an exception, unless the future was cancelled meanwhile (a race we allow:
    a running task can be cancelled while its answer is on the way)."""
    try:
        if error is None:
            future.set_result(value)
        else:
            future.set_exception(error)
    except concurrent.futures.InvalidStateError:
        pass
    # The task and its future point at each other; untie them so that reference counting frees
    # both (a cycle per task waits for the garbage collector, which then grows slow).
    if isinstance(future, Future):
        future._task = None


def rebuild_exception(envelope: ErrorEnvelope, where: str) -> BaseException:
    """The exception a worker raised, rebuilt here with its remote traceback attached.

    ``where`` names the task and worker ("mod.f(3) in worker 4121"). An exception that cannot be
    unpickled here becomes a SerializationError carrying its type name, message and traceback text,
    so a broken exception class costs one task, never the pool.
    """
    data, type_name, message, traceback_text = envelope
    exc: BaseException | None = None
    problem = data if isinstance(data, str) else ""
    if isinstance(data, bytes):
        try:
            exc = loads(data)
        except BaseException as error:  # noqa: BLE001 - SystemExit from a user's __setstate__ too
            problem = f"could not be unpickled here ({type(error).__name__}: {error})"
    if not isinstance(exc, BaseException):
        exc = SerializationError(
            f"{where} raised {type_name}: {message}; the exception {problem}, so this error stands in for it",
            original_type=type_name,
        )
    attach_traceback(exc, traceback_text, where)
    return exc


def attach_traceback(exc: BaseException, traceback_text: str, where: str) -> None:
    exc.__cause__ = RemoteTraceback(traceback_text)
    if sys.version_info >= (3, 11):
        exc.add_note(f"raised in {where}; its traceback is the cause above")
