"""The shared default backends, and configure() / shutdown() / restart() over them.

Settings are read once, by the first call that uses the default backend, and again only after
``shutdown()`` or ``configure()``: a call on the default pool costs what a call on an explicit
``Pool`` does (reading the CPU budget alone opens seven /proc and cgroup files). ``configure()``
after the default pool started raises rather than silently doing nothing: call ``shutdown()``
first, and the next use builds a new pool with the new settings. A default pool that broke (its
dispatcher failed) is forgotten at once, so the next call builds a new one.

The settings themselves live in ``_settings``, which imports no pool; this module imports ``_pool``
only when it builds the default pool, and ``_pool`` never imports this module (no cycle).
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from . import _role, _settings
from ._backends import Backend, SyncBackend, ThreadBackend
from ._errors import ParallelizeError
from ._settings import (
    available_cpus,
    check_backend,
    check_start_method,
    check_workers,
    parse_memory,
    settings,
)

if TYPE_CHECKING:
    from ._dask import DaskBackend
    from ._pool import Pool
    from ._stats import PoolStats

__all__ = ["available_cpus", "configure", "restart", "settings", "shutdown", "stats"]
__all__ += ["check_backend", "check_start_method", "check_workers", "parse_memory"]  # for callers here


# _lock guards every write of the three globals below and configure()'s write of the settings,
# and reads that must agree with each other (configure() checking nothing has started). The
# per-call paths read _resolved, _default_pool and _thread_backend without it: each is one
# reference, published only once the object it names is fully built, so a reader sees either None
# (and takes _lock to build or wait) or a usable backend. Whatever replaces or drops the default
# pool or thread backend must clear _resolved in the same locked block (shutdown, configure, a
# broken default pool, the at-fork hook).
_lock = threading.RLock()
_default_pool: Pool | None = None
_thread_backend: ThreadBackend | None = None
_dask_backend: DaskBackend | None = None  # started lazily; dask is imported only then
_resolved: Backend | None = None  # default_backend()'s answer, until shutdown() or configure()
_sync_backend = SyncBackend()


def configure(
    *,
    workers: int | None = None,
    start_method: str | None = None,
    backend: str | None = None,
    max_tasks_per_worker: int | None = None,
    max_memory_per_worker: int | str | None = None,
    dask_address: str | None = None,
) -> None:
    """Set the defaults for the shared pool before its first use; ``None`` leaves a setting as is.

    ``max_tasks_per_worker`` and ``max_memory_per_worker`` (bytes, or "512MB", "2GB", "1.5GiB")
    recycle workers; they also become the defaults of ``Pool()``. ``dask_address``
    ("tcp://host:8786") is the scheduler the dask backend uses. Raises ParallelizeError once the
    default pool or thread backend has started: call ``parallelize.shutdown()`` first.
    """
    if workers is not None:
        check_workers(workers)
    if max_tasks_per_worker is not None:
        check_workers(max_tasks_per_worker, "max_tasks_per_worker")
    memory = None if max_memory_per_worker is None else parse_memory(max_memory_per_worker)
    if start_method is not None:
        check_start_method(start_method)
    if backend is not None:
        check_backend(backend)
    global _resolved
    with _lock:
        if _default_pool is not None or _thread_backend is not None or _dask_backend is not None:
            raise ParallelizeError(
                "configure() was called after the default pool started, so it would have no effect; "
                "call parallelize.shutdown() first, then configure()"
            )
        values = {
            "workers": workers,
            "start_method": start_method,
            "backend": backend,
            "max_tasks_per_worker": max_tasks_per_worker,
            "max_memory_per_worker": memory,
            "dask_address": dask_address,
        }
        _settings.override({key: value for key, value in values.items() if value is not None})
        _resolved = None  # e.g. a sync default, which starts nothing, is chosen again next call


def default_backend() -> Backend:
    """The backend of functions decorated without ``pool=`` or ``backend=``.

    Called on every call of such a function, so the common case is one global read, no lock:
    the settings are resolved by the first call only (see the module docstring).
    """
    if _role.IN_WORKER:
        # Inside a worker, a decorated call runs inline: a pool inside every worker would multiply
        # the processes by the pool size. (An explicit Pool still works there.)
        return _sync_backend
    backend = _resolved
    if backend is None:
        backend = _resolve_default()
    return backend


def _resolve_default() -> Backend:
    global _resolved
    with _lock:
        # Threads that raced here wait for the first one and take what it built.
        if _resolved is None:
            _resolved = backend_named(settings().backend)
        return _resolved


def backend_named(name: str) -> Backend:  # noqa: PLR0911 - one fast path per backend
    """The shared backend called ``name``; built on first use (per call: one global read)."""
    global _default_pool, _thread_backend, _dask_backend
    if name == "process":
        pool = _default_pool
        if pool is not None:
            return pool._backend
    elif name == "thread":
        threads = _thread_backend
        if threads is not None:
            return threads
    elif name == "sync":
        return _sync_backend
    elif name == "dask":
        distributed = _dask_backend
        if distributed is not None:
            return distributed
    check_backend(name)
    with _lock:
        if name == "dask":
            if _dask_backend is None:
                from ._dask import DaskBackend

                current = settings()
                _dask_backend = DaskBackend(current.dask_address, current.workers)
            return _dask_backend
        if name == "thread":
            if _thread_backend is None:
                _thread_backend = ThreadBackend(settings().workers)
            return _thread_backend
        if _default_pool is None:
            from ._pool import Pool  # here, not at the top: workers import this module, not pools

            _default_pool = Pool()
            _default_pool._backend.on_broken = _forget_broken
        return _default_pool._backend


def _forget_broken(backend: object) -> None:
    """The default pool broke (called in its dying dispatcher thread): the next call builds a new
    one. The broken pool keeps its state and error for whoever still holds it."""
    global _default_pool, _resolved
    with _lock:
        if _default_pool is not None and _default_pool._backend is backend:
            _default_pool = None
            _resolved = None


def shutdown(wait: bool = True, *, cancel_pending: bool = False) -> None:
    """Shut down the default pool, thread and dask backends; the next use starts new ones.

    Called at interpreter exit (with ``wait=True``), so a script that submits work and never asks
    for the results still gets its work done.
    """
    global _default_pool, _thread_backend, _dask_backend, _resolved
    with _lock:
        pool, _default_pool = _default_pool, None
        threads, _thread_backend = _thread_backend, None
        distributed, _dask_backend = _dask_backend, None
        _resolved = None
    backends: tuple[Pool | Backend | None, ...] = (pool, threads, distributed)
    for backend in backends:
        if backend is not None:
            backend.shutdown(wait, cancel_pending=cancel_pending)


def stats() -> PoolStats:
    """Live counts of the default backend (the pool plain ``@parallel`` functions use); see
    ``Pool.stats``. Starts nothing: before the first call, or after ``shutdown()``, every count
    is 0 and ``since`` is None. Inside a worker, the inline backend's."""
    if _role.IN_WORKER:
        return _sync_backend.stats()
    backend = _resolved
    if backend is None:
        from ._tally import empty

        return empty(settings().backend)
    return backend.stats()


def restart() -> None:
    """Replace the default pool's workers (see ``Pool.restart``): after ``importlib.reload``, or
    to free what workers hold. Does nothing if the default pool has not started."""
    with _lock:
        pool = _default_pool
    if pool is not None:
        pool.restart()


def reset_for_tests() -> None:
    """Forget configure()'s settings (the test suite's fixture; not public API)."""
    global _resolved
    with _lock:
        _settings.clear()
        _resolved = None


def _after_fork_in_child() -> None:
    # The parent's thread backend has no threads here, and a lock may have been held mid-fork.
    # The default pool object stays (it resets itself to NEW, see _process), but the choice is made
    # again: a forked worker must run calls inline, and a thread default must not be the parent's.
    global _lock, _thread_backend, _dask_backend, _resolved
    _lock = threading.RLock()
    _thread_backend = None
    _dask_backend = None  # the parent's client and cluster are the parent's
    _resolved = None
