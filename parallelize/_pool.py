"""``Pool``: a process pool's public face and its lifecycle.

The lifecycle is one state machine, changed only by ``_transition`` under ``_lock``::

    NEW --first submit--> RUNNING --shutdown()--> CLOSING --dispatcher gone--> CLOSED
     \\______________________________shutdown()__________________________________/

Nothing starts until the first task: no thread, no pipe, no process. The engine itself lives in
``_dispatcher``; this module owns creation, shutdown, the exit hook and what happens after a fork.
"""

from __future__ import annotations

import atexit
import contextlib
import enum
import logging
import multiprocessing
import os
import sys
import threading
import weakref
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar, overload

from . import _config, _guard
from ._backends import encode, submit_call
from ._dispatcher import Dispatcher
from ._errors import PoolClosed
from ._functions import handle_for
from ._futures import Future
from ._mapping import MapIterator, map_items, zip_arguments
from ._serialize import dumps
from ._task import Task, check_timeout, options_of

if TYPE_CHECKING:
    from typing_extensions import Self  # typing.Self is 3.11+; typing_extensions is slow to import

    from ._decorators import ParallelFunction

__all__ = ["Pool", "PoolState"]

log = logging.getLogger("parallelize")

P = ParamSpec("P")
R = TypeVar("R")


class PoolState(enum.Enum):
    NEW = "new"  # nothing started yet (lazy creation)
    RUNNING = "running"
    CLOSING = "closing"  # shutdown() called: draining, or cancelling what waits
    CLOSED = "closed"  # every worker is gone; submit() raises PoolClosed


_ALLOWED = {
    PoolState.NEW: {PoolState.RUNNING, PoolState.CLOSED},
    PoolState.RUNNING: {PoolState.CLOSING},
    PoolState.CLOSING: {PoolState.CLOSED},
    PoolState.CLOSED: set(),
}


class Pool:
    """A pool of worker processes.

    ``workers`` defaults to the CPUs this process may use and ``start_method`` to the configured
    one (forkserver on Linux, spawn elsewhere). ``initializer(*initargs)`` runs once in each worker
    before its first task. ``max_tasks_per_worker`` and ``max_memory_per_worker`` (bytes, or a
    string such as "2GB") replace a worker before it grows without bound; a worker over its memory
    limit while a task runs is stopped, and the task fails with WorkerCrashed.

    Use it as a context manager, or call ``shutdown()``; pools still open when the interpreter
    exits are shut down then, after their submitted work is done.
    """

    def __init__(
        self,
        workers: int | None = None,
        *,
        start_method: str | None = None,
        initializer: Callable[..., object] | None = None,
        initargs: Iterable[Any] = (),
        max_tasks_per_worker: int | None = None,
        max_memory_per_worker: int | str | None = None,
    ) -> None:
        settings = _config.settings()
        if max_tasks_per_worker is not None:
            _config.check_workers(max_tasks_per_worker, "max_tasks_per_worker")
        self._max_tasks = max_tasks_per_worker or settings.max_tasks_per_worker
        self._max_memory = (
            settings.max_memory_per_worker
            if max_memory_per_worker is None
            else _config.parse_memory(max_memory_per_worker)
        )
        self._workers = settings.workers if workers is None else _config.check_workers(workers)
        self._start_method = _config.check_start_method(start_method or settings.start_method)
        self._initializer: bytes | None = None
        if initializer is not None:
            handle = handle_for(initializer).snapshot()  # as it is now, as the initargs are
            self._initializer = dumps((handle.key, handle.definition, tuple(initargs)))
        self._lock = threading.Lock()
        self._state = PoolState.NEW  # guarded by _lock
        self._dispatcher: Dispatcher | None = None  # guarded by _lock; set once, on NEW -> RUNNING
        _live_pools.add(self)

    def __repr__(self) -> str:
        return (
            f"<parallelize.Pool workers={self._workers} start_method={self._start_method!r} "
            f"{self.state.value}>"
        )

    @property
    def workers(self) -> int:
        """The most worker processes this pool runs at once."""
        return self._workers

    @property
    def state(self) -> PoolState:
        return self._state

    def worker_pids(self) -> list[int]:
        """The pids of the worker processes alive now (empty before the first task)."""
        dispatcher = self._dispatcher
        return [] if dispatcher is None else dispatcher.pids()

    # The timeout= forms come first: a call that passes timeout= means ours (see the docstring).
    @overload
    def submit(
        self, fn: ParallelFunction[..., R], /, *args: Any, timeout: float | None, **kwargs: Any
    ) -> Future[R]: ...
    @overload
    def submit(
        self, fn: Callable[..., R], /, *args: Any, timeout: float | None, **kwargs: Any
    ) -> Future[R]: ...
    @overload
    def submit(self, fn: ParallelFunction[P, R], /, *args: P.args, **kwargs: P.kwargs) -> Future[R]: ...
    @overload
    def submit(self, fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> Future[R]: ...
    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        """Run ``fn(*args, **kwargs)`` in a worker. Arguments are pickled here and now.

        The keyword ``timeout=`` is this method's own (seconds of running time, after which the
        worker is stopped and the future raises TaskTimeout); to pass an argument named
        ``timeout`` to ``fn``, bind it with ``functools.partial``. A ``@parallel`` function
        brings its own ``timeout``, ``retries`` and ``retry_on``.
        """
        options = options_of(fn)
        if "timeout" in kwargs:
            options = options._replace(timeout=check_timeout(kwargs.pop("timeout")))
        return submit_call(self, handle_for(fn), args, kwargs, options)

    @overload
    def map(
        self,
        fn: ParallelFunction[..., R],
        /,
        *iterables: Iterable[Any],
        chunksize: int | None = None,
        timeout: float | None = None,
    ) -> MapIterator[R]: ...
    @overload
    def map(
        self,
        fn: Callable[..., R],
        /,
        *iterables: Iterable[Any],
        chunksize: int | None = None,
        timeout: float | None = None,
    ) -> MapIterator[R]: ...
    def map(
        self,
        fn: Callable[..., Any],
        /,
        *iterables: Iterable[Any],
        chunksize: int | None = None,
        timeout: float | None = None,
    ) -> MapIterator[Any]:
        """Like ``builtins.map``, run in the workers: lazy, ordered, chunked automatically.

        ``timeout`` bounds each item's running time, even inside a chunk.
        """
        options = options_of(fn)
        if timeout is not None:
            options = options._replace(timeout=check_timeout(timeout))
        return map_items(self, handle_for(fn), zip_arguments(iterables), chunksize, options)

    def shutdown(self, wait: bool = True, *, cancel_pending: bool = False) -> None:
        """Stop accepting work; finish what was submitted (or cancel what has not started).

        ``wait=False`` returns at once and the pool winds down in the background. Calling it
        again is harmless, and may add ``cancel_pending=True``.
        """
        with self._lock:
            dispatcher = self._dispatcher
            if self._state is PoolState.NEW:
                self._transition(PoolState.CLOSED)
                return
            if self._state is PoolState.RUNNING:
                self._transition(PoolState.CLOSING)
        if dispatcher is None:
            return
        dispatcher.inbox.close(cancel_pending)
        if wait:
            dispatcher.join()

    def restart(self) -> None:
        """Replace every worker, so code reloaded in this process (``importlib.reload``) reaches
        the workers: idle workers are retired now, busy ones when their current work is done;
        new ones start on demand. No task is lost and the pool stays open. Tasks submitted after
        this returns run only in new workers. Raises PoolClosed after ``shutdown()``.
        """
        with self._lock:
            dispatcher = self._dispatcher
            if self._state is PoolState.NEW:
                return  # no worker yet: the first ones will load the code as it is then
            if self._state is not PoolState.RUNNING or dispatcher is None:
                raise PoolClosed("the pool is shut down, so it was not restarted; create a new Pool")
        dispatcher.inbox.restart()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.shutdown(wait=True)

    # -- the backend seam (see _backends.Backend) ------------------------------------------------------

    def _encode(self, task: Task) -> None:
        encode(task)

    def _enqueue(self, task: Task) -> None:
        dispatcher = self._dispatcher or self._start()
        # The future can now stop its task when cancelled while running, or on Ctrl-C.
        task.future._engine = dispatcher.inbox
        task.future._task = task
        if not dispatcher.send_now(task):
            dispatcher.inbox.put(task)

    def _capacity(self) -> int:
        return self._workers

    # -- lifecycle ----------------------------------------------------------------------------------

    def _transition(self, new: PoolState) -> None:
        """The one place the state changes; the caller holds _lock."""
        if new not in _ALLOWED[self._state]:
            raise AssertionError(f"pool state cannot go from {self._state.value} to {new.value}")
        self._state = new

    def _start(self) -> Dispatcher:
        with self._lock:
            if self._state is PoolState.NEW:
                _guard.exit_if_importing_main()  # a script without `if __name__ == "__main__":`
                _register_exit_hook()
                context = multiprocessing.get_context(self._start_method)
                if self._start_method == "forkserver":
                    _preload_in_forkserver(context)
                dispatcher = Dispatcher(
                    context,
                    self._workers,
                    self._initializer,
                    name="parallelize-dispatcher",
                    on_exit=self._on_dispatcher_exit,
                    max_tasks_per_worker=self._max_tasks,
                    max_memory_per_worker=self._max_memory,
                )
                dispatcher.start()
                self._dispatcher = dispatcher
                self._transition(PoolState.RUNNING)
            elif self._dispatcher is None:
                raise PoolClosed("the pool is shut down; create a new Pool to run more work")
            return self._dispatcher

    def _on_dispatcher_exit(self) -> None:
        with self._lock:
            if self._state is PoolState.CLOSING:
                self._transition(PoolState.CLOSED)

    def _after_fork_in_child(self) -> None:
        # The dispatcher thread did not survive the fork and the workers belong to the parent:
        # this process gets a fresh pool on its next submit, never a share of the parent's.
        self._lock = threading.Lock()
        if self._dispatcher is not None:
            self._dispatcher.abandon_after_fork()
            self._dispatcher = None
        if self._state is not PoolState.CLOSED:
            self._state = PoolState.NEW


Pool.__module__ = "parallelize"
PoolState.__module__ = "parallelize"

_live_pools: weakref.WeakSet[Pool] = weakref.WeakSet()
_exit_hook_registered = False
_exit_hook_lock = threading.Lock()


def _register_exit_hook() -> None:
    # Registered at the first pool start, after multiprocessing registered its own: atexit runs
    # last-registered first, so our pools drain before multiprocessing reaps its children.
    global _exit_hook_registered
    with _exit_hook_lock:
        if not _exit_hook_registered:
            atexit.register(shutdown_all)
            _exit_hook_registered = True


def _preload_in_forkserver(context: Any) -> None:
    """Have the forkserver import our modules once, so each forked worker starts with them.

    Adds to whatever preload list is set (multiprocessing's default is ``["__main__"]``); it takes
    effect only if the forkserver has not started yet, and does no harm otherwise.
    """
    from multiprocessing import forkserver

    current = list(getattr(forkserver._forkserver, "_preload_modules", None) or ["__main__"])
    wanted = ["parallelize._worker"]
    # A program that uses the decorators sends functions from modules that import them, and with
    # them wrapt (which imports asyncio): import that once here, not in every new worker.
    if "parallelize._decorators" in sys.modules:
        wanted.append("parallelize._decorators")
    missing = [name for name in wanted if name not in current]
    if missing:
        context.set_forkserver_preload([*current, *missing])


def shutdown_all(wait: bool = True) -> None:
    """Shut every pool down (the exit hook): submitted work still completes."""
    for pool in list(_live_pools):
        pool.shutdown(wait=wait)


def _after_fork_in_child() -> None:
    if _live_pools:
        _forget_parent_forkserver()
    for pool in list(_live_pools):
        try:
            pool._after_fork_in_child()
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


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
