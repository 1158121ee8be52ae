"""``Pool``: a process pool's public face.

A Pool *has* a backend (``_process.ProcessBackend``), the engine behind the ``_backends.Backend``
seam that the thread and sync backends implement too; the lifecycle (``PoolState``, shutdown, the
exit hook, what happens after a fork and when a pool is dropped unshut) lives there. What stays
here is what users call, and checking what they pass.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, Literal, ParamSpec, TypeVar, overload

from . import _settings
from ._backends import submit_call
from ._functions import handle_for
from ._futures import Future
from ._mapping import MapIterator, map_items, zip_arguments
from ._process import PoolState, ProcessBackend
from ._serialize import dumps
from ._task import check_timeout, options_of

if TYPE_CHECKING:
    from typing_extensions import Self  # typing.Self is 3.11+; typing_extensions is slow to import

    from ._decorators import ParallelFunction

__all__ = ["Pool", "PoolState"]

P = ParamSpec("P")
R = TypeVar("R")


class Pool:
    """A pool of worker processes.

    ``workers`` defaults to the CPUs this process may use and ``start_method`` to the configured
    one (forkserver on Linux, spawn elsewhere). ``initializer(*initargs)`` runs once in each worker
    before its first task. ``max_tasks_per_worker`` and ``max_memory_per_worker`` (bytes, or a
    string such as "2GB") replace a worker before it grows without bound; a worker over its memory
    limit while a task runs is stopped, and the task fails with WorkerCrashed.

    Use it as a context manager, or call ``shutdown()``; pools still open when the interpreter
    exits are shut down then, after their submitted work is done. A pool dropped without
    ``shutdown()`` winds down once it is collected: its submitted work completes, then its workers
    exit (as ``shutdown(wait=False)``).
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
        settings = _settings.settings()
        if max_tasks_per_worker is not None:
            _settings.check_workers(max_tasks_per_worker, "max_tasks_per_worker")
        self._max_tasks = max_tasks_per_worker or settings.max_tasks_per_worker
        self._max_memory = (
            settings.max_memory_per_worker
            if max_memory_per_worker is None
            else _settings.parse_memory(max_memory_per_worker)
        )
        self._workers = settings.workers if workers is None else _settings.check_workers(workers)
        self._start_method = _settings.check_start_method(start_method or settings.start_method)
        self._initializer: bytes | None = None
        if initializer is not None:
            handle = handle_for(initializer).snapshot()  # as it is now, as the initargs are
            self._initializer = dumps((handle.key, handle.definition, tuple(initargs)))
        self._backend = ProcessBackend(
            self._workers, self._start_method, self._initializer, self._max_tasks, self._max_memory
        )

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
        """NEW, RUNNING, CLOSING, CLOSED (after ``shutdown()``) or BROKEN (its engine failed)."""
        return self._backend.state

    def worker_pids(self) -> list[int]:
        """The pids of the worker processes alive now (empty before the first task)."""
        return self._backend.pids()

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
        return submit_call(self._backend, handle_for(fn), args, kwargs, options)

    @overload
    def map(
        self,
        fn: ParallelFunction[..., R],
        /,
        *iterables: Iterable[Any],
        chunksize: int | None = None,
        timeout: float | None = None,
        ordered: bool = True,
        return_exceptions: Literal[False] = False,
    ) -> MapIterator[R]: ...
    @overload
    def map(
        self,
        fn: ParallelFunction[..., R],
        /,
        *iterables: Iterable[Any],
        chunksize: int | None = None,
        timeout: float | None = None,
        ordered: bool = True,
        return_exceptions: bool,
    ) -> MapIterator[R | BaseException]: ...
    @overload
    def map(
        self,
        fn: Callable[..., R],
        /,
        *iterables: Iterable[Any],
        chunksize: int | None = None,
        timeout: float | None = None,
        ordered: bool = True,
        return_exceptions: Literal[False] = False,
    ) -> MapIterator[R]: ...
    @overload
    def map(
        self,
        fn: Callable[..., R],
        /,
        *iterables: Iterable[Any],
        chunksize: int | None = None,
        timeout: float | None = None,
        ordered: bool = True,
        return_exceptions: bool,
    ) -> MapIterator[R | BaseException]: ...
    def map(
        self,
        fn: Callable[..., Any],
        /,
        *iterables: Iterable[Any],
        chunksize: int | None = None,
        timeout: float | None = None,
        ordered: bool = True,
        return_exceptions: bool = False,
    ) -> MapIterator[Any]:
        """Like ``builtins.map``, run in the workers: lazy, ordered, chunked automatically.

        ``timeout`` bounds each item's running time, even inside a chunk. ``ordered=False``
        yields results as their chunks finish; ``return_exceptions=True`` yields a failed item's
        exception in its place instead of raising it.
        """
        options = options_of(fn)
        if timeout is not None:
            options = options._replace(timeout=check_timeout(timeout))
        return map_items(
            self._backend,
            handle_for(fn),
            zip_arguments(iterables),
            chunksize,
            options,
            ordered,
            return_exceptions,
        )

    def shutdown(self, wait: bool = True, *, cancel_pending: bool = False) -> None:
        """Stop accepting work; finish what was submitted (or cancel what has not started).

        ``wait=False`` returns at once and the pool winds down in the background. Calling it
        again is harmless, and may add ``cancel_pending=True``.
        """
        self._backend.shutdown(wait, cancel_pending=cancel_pending)

    def restart(self) -> None:
        """Replace every worker, so code reloaded in this process (``importlib.reload``) reaches
        the workers: idle workers are retired now, busy ones when their current work is done;
        new ones start on demand. No task is lost and the pool stays open. Tasks submitted after
        this returns run only in new workers. Raises PoolClosed after ``shutdown()``
        (PoolBroken if the pool broke).
        """
        self._backend.restart()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.shutdown(wait=True)


Pool.__module__ = "parallelize"
PoolState.__module__ = "parallelize"
