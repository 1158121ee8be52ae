"""``Pool``: a process pool's public face.

A Pool *has* a backend (``_process.ProcessBackend``), the engine behind the ``_backends.Backend``
seam that the thread and sync backends implement too; the lifecycle (``PoolState``, shutdown, the
exit hook, what happens after a fork and when a pool is dropped unshut) lives there. What stays
here is what users call, and checking what they pass.
"""

from __future__ import annotations

import concurrent.futures
import functools
import time
from collections.abc import Callable, Iterable
from multiprocessing.context import BaseContext
from typing import TYPE_CHECKING, Any, Literal, ParamSpec, TypeVar, overload

from . import _settings
from ._backends import submit_call
from ._errors import PoolClosed
from ._functions import handle_for
from ._futures import Future
from ._initializer import Initializer, make_initializer
from ._process import PoolState, ProcessBackend
from ._task import check_timeout, options_of

if TYPE_CHECKING:
    from typing_extensions import Self  # typing.Self is 3.11+; typing_extensions is slow to import

    from ._decorators import ParallelFunction
    from ._mapping import MapIterator
    from ._progress import ProgressOption
    from ._stats import PoolStats

__all__ = ["Pool", "PoolState"]

P = ParamSpec("P")
R = TypeVar("R")


class Pool(concurrent.futures.Executor):
    """A pool of worker processes, and a ``concurrent.futures.Executor``.

    ``workers`` defaults to the CPUs this process may use and ``start_method`` to the configured
    one (forkserver on Linux, spawn elsewhere). ``initializer(*initargs)`` runs once in each worker
    before its first task. ``max_tasks_per_worker`` and ``max_memory_per_worker`` (bytes, or a
    string such as "2GB") replace a worker before it grows without bound; a worker over its memory
    limit while a task runs is stopped, and the task fails with WorkerCrashed.

    Use it as a context manager, or call ``shutdown()``; pools still open when the interpreter
    exits are shut down then, after their submitted work is done. A pool dropped without
    ``shutdown()`` winds down once it is collected: its submitted work completes, then its workers
    exit (as ``shutdown(wait=False)``).

    ``ProcessPoolExecutor``'s names are accepted where they mean the same: ``max_workers`` for
    ``workers``, ``mp_context`` (a multiprocessing context) for ``start_method``, and
    ``max_tasks_per_child`` for ``max_tasks_per_worker``; giving both names of one setting is an
    error. ``initargs`` may hold a ``multiprocessing.Queue``, ``Lock`` or ``Semaphore``: like
    multiprocessing, the pool hands those to each worker as it starts (see README
    "Compatibility with concurrent.futures").
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
        max_workers: int | None = None,
        mp_context: BaseContext | None = None,
        max_tasks_per_child: int | None = None,
    ) -> None:
        workers = _one_of("workers", workers, "max_workers", max_workers)
        start_method = _one_of("start_method", start_method, "mp_context", _method_of(mp_context))
        max_tasks_per_worker = _one_of(
            "max_tasks_per_worker", max_tasks_per_worker, "max_tasks_per_child", max_tasks_per_child
        )
        settings = _settings.settings()
        if max_tasks_per_worker is not None:
            _settings.check_workers(max_tasks_per_worker, "max_tasks_per_worker")
        self._max_tasks = max_tasks_per_worker or settings.max_tasks_per_worker
        self._max_memory = (
            settings.max_memory_per_worker
            if max_memory_per_worker is None
            else _settings.parse_memory(max_memory_per_worker)
        )
        name = "workers" if max_workers is None else "max_workers"  # the name the caller used
        self._workers = settings.workers if workers is None else _settings.check_workers(workers, name)
        self._start_method = _settings.check_start_method(start_method or settings.start_method)
        self._initializer: Initializer | None = None
        if initializer is not None:
            handle = handle_for(initializer).snapshot()  # as it is now, as the initargs are
            self._initializer = make_initializer(
                initializer, handle.key, handle.definition, tuple(initargs), self._start_method
            )
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

    def stats(self) -> PoolStats:
        """Live counts: workers alive, tasks queued, running, completed, failed, cancelled,
        workers replaced, and since when. Cheap enough to poll from a UI thread: it waits for no
        lock the pool holds for long and asks the workers nothing (see README "Live counts")."""
        return self._backend.stats()

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
        worker is stopped and the future raises TaskTimeout). Where ``fn`` itself takes an
        argument named ``timeout`` (or ``**kwargs``), ``Executor.submit`` would pass it on, so
        rather than guess, this raises TypeError: bind ``fn``'s with ``functools.partial`` (the
        keyword is then ours), or give the task a time limit with ``@parallel(timeout=...)``. A
        ``@parallel`` function brings its own ``timeout``, ``retries`` and ``retry_on``.
        """
        options = options_of(fn)
        if "timeout" in kwargs:
            if _takes_timeout(fn):
                raise TypeError(
                    f"submit() got timeout={kwargs['timeout']!r}, which is Pool.submit's own time limit, "
                    f"but {getattr(fn, '__qualname__', fn)!r} also takes a timeout argument, which "
                    f"concurrent.futures would pass to it; to pass it to the function, bind it with "
                    f"functools.partial(fn, timeout=...); to limit the task, use @parallel(timeout=...) "
                    f"or bind the function's with partial and keep timeout= here"
                )
            options = options._replace(timeout=check_timeout(kwargs.pop("timeout")))
        return submit_call(self._backend, handle_for(fn), args, kwargs, options)

    @overload
    def map(
        self,
        fn: ParallelFunction[..., R],
        *iterables: Iterable[Any],
        timeout: float | None = None,
        chunksize: int | None = None,
        item_timeout: float | None = None,
        progress: ProgressOption = None,
        ordered: bool = True,
        return_exceptions: Literal[False] = False,
    ) -> MapIterator[R]: ...
    @overload
    def map(
        self,
        fn: ParallelFunction[..., R],
        *iterables: Iterable[Any],
        timeout: float | None = None,
        chunksize: int | None = None,
        item_timeout: float | None = None,
        progress: ProgressOption = None,
        ordered: bool = True,
        return_exceptions: bool,
    ) -> MapIterator[R | BaseException]: ...
    @overload
    def map(
        self,
        fn: Callable[..., R],
        *iterables: Iterable[Any],
        timeout: float | None = None,
        chunksize: int | None = None,
        item_timeout: float | None = None,
        progress: ProgressOption = None,
        ordered: bool = True,
        return_exceptions: Literal[False] = False,
    ) -> MapIterator[R]: ...
    @overload
    def map(
        self,
        fn: Callable[..., R],
        *iterables: Iterable[Any],
        timeout: float | None = None,
        chunksize: int | None = None,
        item_timeout: float | None = None,
        progress: ProgressOption = None,
        ordered: bool = True,
        return_exceptions: bool,
    ) -> MapIterator[R | BaseException]: ...
    def map(
        self,
        fn: Callable[..., Any],
        *iterables: Iterable[Any],
        timeout: float | None = None,
        chunksize: int | None = None,
        item_timeout: float | None = None,
        progress: ProgressOption = None,
        ordered: bool = True,
        return_exceptions: bool = False,
    ) -> MapIterator[Any]:
        """Like ``builtins.map``, run in the workers: ordered, chunked automatically.

        As ``Executor.map``, ``timeout`` is a deadline for the whole map, counted from this call;
        a result not ready by then raises TimeoutError from ``next()``, and the map's remaining
        work is cancelled. ``item_timeout`` is this pool's own: it bounds each item's running
        time, even inside a chunk (TaskTimeout for that item, the map goes on). Unlike
        ``Executor.map``, the map is lazy like ``builtins.map``: it starts (and takes its one
        snapshot of ``fn``) at the first ``next()``, reads the input a few chunks ahead of the
        output, never all at once, and a failed item does not end it (README "Compatibility with
        concurrent.futures"). ``progress=True`` draws a bar of the items completed (see README
        "Progress"); ``ordered=False`` yields results as their chunks finish;
        ``return_exceptions=True`` yields a failed item's exception in its place instead of
        raising it.
        """
        if self._backend.state in (PoolState.CLOSING, PoolState.CLOSED):
            raise PoolClosed("the pool is shut down, so map() was not started; create a new Pool")
        options = options_of(fn)
        if item_timeout is not None:
            options = options._replace(timeout=check_timeout(item_timeout))
        deadline = None if timeout is None else time.monotonic() + _check_deadline(timeout)
        from ._chunking import zip_arguments  # on the first map: a pool that never maps never loads them
        from ._mapping import map_items

        mapping = map_items(
            self._backend,
            handle_for(fn),
            zip_arguments(iterables),
            chunksize,
            options,
            ordered,
            return_exceptions,
        )
        if timeout is not None:
            mapping._deadline, mapping._timeout = deadline, timeout
        return mapping._counted(iterables, progress)

    def shutdown(
        self, wait: bool = True, *, cancel_futures: bool = False, cancel_pending: bool = False
    ) -> None:
        """Stop accepting work, and finish what was submitted.

        ``cancel_futures=True`` (``Executor``'s) cancels what has not started (tasks already
        waiting in a worker's pipe included) and lets what is running finish;
        ``cancel_pending=True`` (ours) also stops what is running, whose futures are then
        cancelled too. ``wait=False`` returns at once and the pool winds down in the background.
        Calling it again is harmless, and may add either.
        """
        self._backend.shutdown(wait, cancel_pending=cancel_pending, cancel_queued=cancel_futures)

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


def _one_of(ours: str, value: Any, theirs: str, synonym: Any) -> Any:
    """The setting given under our name or ``ProcessPoolExecutor``'s, never both."""
    if synonym is None:
        return value
    if value is not None:
        raise TypeError(
            f"Pool() got both {ours}={value!r} and {theirs}={synonym!r}, two names for one setting "
            f"({theirs} is concurrent.futures' name for {ours}); pass only one"
        )
    return synonym


def _method_of(context: Any) -> str | None:
    if context is None:
        return None
    get = getattr(context, "get_start_method", None)
    if get is None:
        raise TypeError(
            f"Pool(mp_context=...) takes a multiprocessing context such as "
            f"multiprocessing.get_context('spawn'), got {context!r}; or pass start_method='spawn'"
        )
    method: str = get()
    return method


def _check_deadline(timeout: float) -> float:
    if isinstance(timeout, bool) or not isinstance(timeout, int | float):
        raise TypeError(f"map()'s timeout must be a number of seconds or None, got {timeout!r}")
    return float(timeout)  # zero or less: only results ready at once come back, as Executor.map


def _takes_timeout(fn: Callable[..., Any]) -> bool:
    """Whether ``fn`` would take ``timeout=`` as its own argument (and not already bound)."""
    import inspect

    if isinstance(fn, functools.partial) and "timeout" in fn.keywords:
        return False
    try:
        parameters = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):  # no signature to read (some builtins): it is ours
        return False
    return any(
        p.kind is p.VAR_KEYWORD or (p.name == "timeout" and p.kind is not p.POSITIONAL_ONLY)
        for p in parameters
    )


Pool.__module__ = "parallelize"
PoolState.__module__ = "parallelize"
