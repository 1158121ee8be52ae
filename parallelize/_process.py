"""The process backend: the engine behind a ``Pool``, and its lifecycle.

``Pool`` (``_pool``) is the public face; it holds one ``ProcessBackend``, which implements the
``_backends.Backend`` seam (as the thread and sync backends do) and owns the lifecycle, one state
machine changed only by ``_transition`` under ``_lock``::

    NEW --first task--> RUNNING --shutdown()--> CLOSING --dispatcher gone--> CLOSED
     \\                    \\                      \\
      \\                    +--------------------+--dispatcher failed--> BROKEN
       +----------------------------shutdown()-----------------------------> CLOSED

Nothing starts until the first task: no thread, no pipe, no process. BROKEN is *it* broke (the
dispatcher thread failed: PoolBroken, the failure as its cause), as opposed to CLOSED, *you* closed
it (PoolClosed). Both are final.

Who keeps whom alive: the Pool holds the backend, the backend the dispatcher; the dispatcher's
thread holds the backend only weakly, so a pool dropped without ``shutdown()`` (and with no map of
it still going) is collected, and a weakref callback then winds its dispatcher down as
``shutdown(wait=False)`` would: submitted work completes, then the workers exit. The callback may
run in any thread, in the middle of a garbage collection, even in a thread that holds the inbox's
lock, so it takes no lock: it sets a flag and writes a byte on a wake-up descriptor of its own.
"""

from __future__ import annotations

import atexit
import contextlib
import enum
import logging
import multiprocessing
import multiprocessing.util  # registers multiprocessing's exit hook, which ours must precede
import os
import signal
import sys
import threading
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from . import _guard
from . import _interrupts as interrupts
from ._backends import encode
from ._dispatcher import Dispatcher
from ._errors import PoolBroken, PoolClosed
from ._inbox import Inbox
from ._initializer import Initializer
from ._tally import Tally
from ._task import Task

if TYPE_CHECKING:
    from ._stats import PoolStats

__all__ = ["PoolState", "ProcessBackend", "shutdown_all"]

log = logging.getLogger("parallelize")


class PoolState(enum.Enum):
    NEW = "new"  # nothing started yet (lazy creation)
    RUNNING = "running"
    CLOSING = "closing"  # shutdown() called: draining, or cancelling what waits
    CLOSED = "closed"  # every worker is gone; submit() raises PoolClosed
    BROKEN = "broken"  # the dispatcher failed; submit() raises PoolBroken, its failure the cause


_ALLOWED = {
    PoolState.NEW: {PoolState.RUNNING, PoolState.CLOSED},
    PoolState.RUNNING: {PoolState.CLOSING, PoolState.BROKEN},
    PoolState.CLOSING: {PoolState.CLOSED, PoolState.BROKEN},
    PoolState.CLOSED: set(),
    PoolState.BROKEN: set(),
}


class ProcessBackend:
    """Worker processes behind the Backend seam: a dispatcher started on the first task."""

    def __init__(
        self,
        workers: int,
        start_method: str,
        initializer: Initializer | None,
        max_tasks_per_worker: int | None,
        max_memory_per_worker: int | None,
    ) -> None:
        self._workers = workers
        self._start_method = start_method
        self._initializer = initializer
        self._max_tasks = max_tasks_per_worker
        self._max_memory = max_memory_per_worker
        self._lock = threading.Lock()
        self._state = PoolState.NEW  # guarded by _lock
        self._dispatcher: Dispatcher | None = None  # guarded by _lock; set once, on NEW -> RUNNING
        self._cause: BaseException | None = None  # guarded by _lock; set once, on -> BROKEN
        self._wake_on_drop: weakref.finalize[Any, Any] | None = None  # guarded by _lock
        # Told when this backend breaks (the default pool's owner forgets it); set before first use.
        self.on_broken: Callable[[ProcessBackend], None] | None = None
        self._tally = Tally()  # outcomes, counted by the futures (see _tally)
        _live.add(self)

    @property
    def state(self) -> PoolState:
        return self._state

    def pids(self) -> list[int]:
        dispatcher = self._dispatcher
        return [] if dispatcher is None else dispatcher.pids()

    def stats(self) -> PoolStats:
        dispatcher = self._dispatcher
        if dispatcher is None:
            return self._tally.snapshot("process", workers=0, queued=0, running=0, replaced=0)
        workers, queued, running, replaced = dispatcher.counts()
        return self._tally.snapshot(
            "process", workers=workers, queued=queued, running=running, replaced=replaced
        )

    # -- the seam (see _backends.Backend) -----------------------------------------------------------

    def _encode(self, task: Task) -> None:
        encode(task)

    def _enqueue(self, task: Task) -> None:
        dispatcher = self._dispatcher or self._start()
        # The future can now stop its task when cancelled while running, or on Ctrl-C.
        task.future._engine = dispatcher.inbox
        task.future._task = task
        task.future._tally = self._tally
        try:
            if not dispatcher.send_now(task):
                dispatcher.inbox.put(task)
        except PoolClosed:
            # The inbox says closed both after shutdown() and after the dispatcher failed.
            with self._lock:
                cause = self._cause
            if cause is not None:
                raise self._broken(f"so {task.describe()} was not submitted", cause) from cause
            raise

    def _capacity(self) -> int:
        return self._workers

    def shutdown(
        self, wait: bool = True, *, cancel_pending: bool = False, cancel_queued: bool = False
    ) -> None:
        with self._lock:
            dispatcher = self._dispatcher
            if self._state is PoolState.NEW:
                self._transition(PoolState.CLOSED)
                return
            if self._state is PoolState.RUNNING:
                self._transition(PoolState.CLOSING)
        if dispatcher is None:
            return
        dispatcher.inbox.close(cancel_pending, cancel_queued=cancel_queued)
        if wait:
            dispatcher.join()

    def restart(self) -> None:
        with self._lock:
            dispatcher = self._dispatcher
            if self._state is PoolState.NEW:
                return  # no worker yet: the first ones will load the code as it is then
            if self._cause is not None:
                raise self._broken("so it was not restarted", self._cause) from self._cause
            if self._state is not PoolState.RUNNING or dispatcher is None:
                raise PoolClosed("the pool is shut down, so it was not restarted; create a new Pool")
        dispatcher.inbox.restart()

    # -- lifecycle ----------------------------------------------------------------------------------

    def _transition(self, new: PoolState) -> None:
        """The one place the state changes; the caller holds _lock."""
        if new not in _ALLOWED[self._state]:
            raise AssertionError(f"pool state cannot go from {self._state.value} to {new.value}")
        self._state = new

    @staticmethod
    def _broken(what: str, cause: BaseException) -> PoolBroken:
        # The caller raises it `from cause`: the failure that broke the pool is its __cause__.
        return PoolBroken(
            f"the pool is broken: its dispatcher failed ({type(cause).__name__}: {cause}), {what}; "
            f"create a new Pool (the default pool is replaced by the next call)"
        )

    def _start(self) -> Dispatcher:
        with self._lock:
            if self._state is PoolState.NEW:
                _guard.exit_if_importing_main()  # a script without `if __name__ == "__main__":`
                _register_exit_hook()
                interrupts.catch_lost_ctrl_c()
                context = multiprocessing.get_context(self._start_method)
                if self._start_method == "forkserver":
                    _preload_in_forkserver(context)
                me = weakref.ref(self)  # the dispatcher's thread must not keep this backend alive
                made: list[Dispatcher] = []
                dispatcher = Dispatcher(
                    context,
                    self._workers,
                    self._initializer,
                    name="parallelize-dispatcher",
                    on_exit=lambda: _dispatcher_exited(made[0], me),
                    on_broken=lambda exc: _call(me, ProcessBackend._on_dispatcher_failure, exc),
                    max_tasks_per_worker=self._max_tasks,
                    max_memory_per_worker=self._max_memory,
                )
                self._wake_on_drop = weakref.finalize(self, _DropWaker(dispatcher.inbox))
                self._wake_on_drop.atexit = False  # the exit hook shuts live pools down itself
                made.append(dispatcher)
                with _running_lock:
                    _running.add(dispatcher)
                dispatcher.start()
                self._dispatcher = dispatcher
                self._transition(PoolState.RUNNING)
            elif self._cause is not None:
                raise self._broken("so no task can be submitted", self._cause) from self._cause
            elif self._dispatcher is None:
                raise PoolClosed("the pool is shut down; create a new Pool to run more work")
            return self._dispatcher

    def _on_dispatcher_failure(self, exc: BaseException) -> None:
        # In the dispatcher thread, before it fails the tasks it held (with PoolBroken).
        with self._lock:
            self._cause = exc
            self._transition(PoolState.BROKEN)
        if self.on_broken is not None:
            self.on_broken(self)

    def _on_dispatcher_exit(self) -> None:
        with self._lock:
            if self._state is PoolState.CLOSING:
                self._transition(PoolState.CLOSED)
            self._forget_drop_waker()

    def _forget_drop_waker(self) -> None:
        """The dispatcher is gone (or not ours, after a fork): nothing to wake if we are dropped.
        The caller holds _lock; detach() wins or loses atomically against the callback."""
        waker, self._wake_on_drop = self._wake_on_drop, None
        if waker is not None:
            detached = waker.detach()
            if detached is not None:
                _, callback, _, _ = detached
                assert isinstance(callback, _DropWaker)
                callback.discard()

    def _reset_after_fork(self) -> None:
        # The dispatcher thread did not survive the fork and the workers belong to the parent:
        # this process gets a fresh pool on its next submit, never a share of the parent's.
        self._lock = threading.Lock()
        self._tally = Tally()  # the child's pool is a new one: counted from now
        self._forget_drop_waker()
        if self._dispatcher is not None:
            self._dispatcher.abandon_after_fork()
            self._dispatcher = None
        if self._state not in (PoolState.CLOSED, PoolState.BROKEN):
            # Not a transition (outside the table on purpose): the child's copy starts over.
            self._state = PoolState.NEW


def _call(ref: weakref.ref[ProcessBackend], method: Callable[..., None], *args: Any) -> None:
    backend = ref()
    if backend is not None:
        method(backend, *args)


def _dispatcher_exited(dispatcher: Dispatcher, ref: weakref.ref[ProcessBackend]) -> None:
    with _running_lock:
        _running.discard(dispatcher)
    _call(ref, ProcessBackend._on_dispatcher_exit)


class _DropWaker:
    """Wakes a dropped pool's dispatcher to wind down (a weakref callback: any thread, no lock).

    It writes on a duplicate of the inbox's wake-up descriptor that only it closes, so the byte
    can never land in a descriptor number the dispatcher closed and something else reused."""

    def __init__(self, inbox: Inbox) -> None:
        self._inbox = inbox
        self._fd = inbox.dup_waker()

    def __call__(self) -> None:
        self._inbox.dropped = True  # one store; the dispatcher reads it when the byte wakes it
        with contextlib.suppress(OSError):  # full (it wakes anyway) or the dispatcher is gone
            os.write(self._fd, b"\0")
        self.discard()

    def discard(self) -> None:
        os.close(self._fd)


_live: weakref.WeakSet[ProcessBackend] = weakref.WeakSet()
# Every dispatcher started and not yet ended, whether or not anything still holds its pool: a
# dropped pool still finishing its work has no backend left, and exit must wait for it (or stop it).
_running: set[Dispatcher] = set()  # guarded by _running_lock
_running_lock = threading.Lock()
_exit_hook_registered = False
_exit_hook_lock = threading.Lock()


def _register_exit_hook() -> None:
    # Registered at the first pool start, after multiprocessing registered its own (imported
    # above): atexit runs last-registered first, so our pools drain before multiprocessing joins
    # its children.
    global _exit_hook_registered
    with _exit_hook_lock:
        if not _exit_hook_registered:
            atexit.register(shutdown_all)
            _exit_hook_registered = True


def shutdown_all() -> None:
    """The exit hook: every pool still open finishes the work submitted to it.

    Exit must stay bounded even when that work does not end (a task in a C call that holds the
    GIL, say): Ctrl-C during the wait cancels what waits and stops what runs, and the wait that
    follows is bounded by the workers' stop grace; a second Ctrl-C kills the workers outright.
    No worker may outlive this hook: multiprocessing's exit hook, which runs next, joins every
    non-daemonic child (ours are not daemonic, so tasks may start processes) without a timeout.
    """
    for backend in list(_live):
        backend.shutdown(wait=False)  # CLOSING (or CLOSED, if it never started)
    with _running_lock:
        running = list(_running)  # with dropped pools' dispatchers, still finishing their work
    try:
        for dispatcher in running:
            dispatcher.inbox.close(cancel_pending=False)
            dispatcher.join()
    except KeyboardInterrupt:
        log.warning("interrupted at exit: cancelling the pools' pending work and stopping their workers")
        for dispatcher in running:
            dispatcher.inbox.close(cancel_pending=True)
        try:
            for dispatcher in running:
                dispatcher.join()
        except KeyboardInterrupt:
            for dispatcher in running:
                for pid in dispatcher.pids():
                    with contextlib.suppress(OSError):
                        os.kill(pid, signal.SIGKILL)
            raise


def _preload_in_forkserver(context: Any) -> None:
    """Have the forkserver import our modules once, so each forked worker starts with them.

    Adds to whatever preload list is set (multiprocessing's default is ``["__main__"]``); it takes
    effect only if the forkserver has not started yet, and does no harm otherwise.
    """
    from multiprocessing import forkserver

    current = list(getattr(forkserver._forkserver, "_preload_modules", None) or ["__main__"])
    wanted = ["parallelize._worker"]
    # A program that uses the decorators sends functions from modules that import them, and with
    # them wrapt (which imports asyncio): import that once here, not in every new worker. Measured
    # (issue 13; 2 workers, medians of 5, /proc/PID/smaps_rollup): with a plain @parallel function
    # of a module, the whole pool (forkserver, tracker, workers) holds 16.2 MiB of private memory
    # (USS) with this preload and 36.9 without (each worker imports wrapt and asyncio itself:
    # 12.1 MiB a worker instead of 3.4), against 18.0 for ProcessPoolExecutor. When the workers
    # never import the decorators it costs 6.4 MiB of PSS (0.9 USS) for nothing. The first result
    # does not come sooner without it: the worker then imports wrapt on the same path (CPU of all
    # processes to the first result, medians of 15: 311 ms with, 309 without).
    if "parallelize._decorators" in sys.modules:
        wanted.append("parallelize._decorators")
    missing = [name for name in wanted if name not in current]
    if missing:
        context.set_forkserver_preload([*current, *missing])


def _after_fork_in_child() -> None:
    """Reset every pool in a forked child (called by ``_fork``, last)."""
    global _running_lock
    _running_lock = threading.Lock()
    _running.clear()  # their threads did not survive the fork
    if _live:
        _forget_parent_forkserver()
    for backend in list(_live):
        try:
            backend._reset_after_fork()
        except Exception:  # one pool's trouble must not leave the others shared
            log.exception("could not reset a pool after fork")


def _forget_parent_forkserver() -> None:
    """In a forked child, make multiprocessing start a forkserver of its own when asked.

    The child inherits the parent's forkserver state, but that server is not the child's child:
    multiprocessing then fails with ECHILD on the first start. Closing our copy of its "alive"
    pipe also lets the parent's server exit when the parent is done with it.
    """
    forkserver = sys.modules.get("multiprocessing.forkserver")
    server = getattr(forkserver, "_forkserver", None)
    if server is None or getattr(server, "_forkserver_pid", None) is None:
        return
    alive = getattr(server, "_forkserver_alive_fd", None)
    if alive is not None:
        with contextlib.suppress(OSError):
            os.close(alive)
    server._forkserver_alive_fd = None
    server._forkserver_pid = None
    server._forkserver_address = None
    server._lock = threading.Lock()
