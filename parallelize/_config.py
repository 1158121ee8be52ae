"""Configuration, the machine's CPU budget, and the shared default backends.

Precedence, highest first: ``configure()``, then the ``PARALLELIZE_WORKERS``,
``PARALLELIZE_START_METHOD`` and ``PARALLELIZE_BACKEND`` environment variables, then the machine:
the CPUs this process may use (affinity and cgroup quota, not ``os.cpu_count()``) and forkserver on
Linux, spawn elsewhere (fork from a process with threads can deadlock, and warns on 3.12+).

Settings are read once, by the first call that uses the default backend, and again only after
``shutdown()`` or ``configure()``: a call on the default pool costs what a call on an explicit
``Pool`` does (reading the CPU budget alone opens seven /proc and cgroup files). ``configure()``
after the default pool started raises rather than silently doing nothing: call ``shutdown()``
first, and the next use builds a new pool with the new settings.
"""

from __future__ import annotations

import math
import multiprocessing
import os
import sys
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, NamedTuple

from . import _worker
from ._backends import Backend, SyncBackend, ThreadBackend
from ._errors import ParallelizeError

if TYPE_CHECKING:
    from ._dask import DaskBackend
    from ._pool import Pool

__all__ = ["available_cpus", "configure", "restart", "settings", "shutdown"]

BACKENDS = ("process", "thread", "sync", "dask")
ENV_WORKERS = "PARALLELIZE_WORKERS"
ENV_START_METHOD = "PARALLELIZE_START_METHOD"
ENV_BACKEND = "PARALLELIZE_BACKEND"
ENV_DASK_ADDRESS = "PARALLELIZE_DASK_ADDRESS"


class Settings(NamedTuple):
    workers: int
    start_method: str
    backend: str
    max_tasks_per_worker: int | None = None
    max_memory_per_worker: int | None = None  # bytes
    dask_address: str | None = None  # None: the current dask client, else an embedded cluster


# _lock guards every write of the four globals below, and reads that must agree with each other
# (configure() checking nothing has started). The per-call paths read _resolved, _default_pool
# and _thread_backend without it: each is one reference, published only once the object it names
# is fully built, so a reader sees either None (and takes _lock to build or wait) or a usable
# backend. Whatever replaces or drops the default pool or thread backend must clear _resolved in
# the same locked block (shutdown, configure, the at-fork hook).
_lock = threading.RLock()
_overrides: dict[str, object] = {}  # what configure() set
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
        for key, value in (
            ("workers", workers),
            ("start_method", start_method),
            ("backend", backend),
            ("max_tasks_per_worker", max_tasks_per_worker),
            ("max_memory_per_worker", memory),
            ("dask_address", dask_address),
        ):
            if value is not None:
                _overrides[key] = value
        _resolved = None  # e.g. a sync default, which starts nothing, is chosen again next call


def settings() -> Settings:
    """The settings in force now: configure(), then the environment, then the machine."""
    with _lock:
        overrides = dict(_overrides)
    workers = overrides.get("workers")
    if workers is None:
        raw = os.environ.get(ENV_WORKERS, "").strip()
        workers = _parse_workers(raw) if raw else available_cpus()
    start_method = overrides.get("start_method") or _from_env(ENV_START_METHOD, check_start_method)
    backend = overrides.get("backend") or _from_env(ENV_BACKEND, check_backend)
    return Settings(
        workers=int(workers),  # type: ignore[call-overload]
        start_method=str(start_method) if start_method else default_start_method(),
        backend=str(backend) if backend else "process",
        max_tasks_per_worker=overrides.get("max_tasks_per_worker"),  # type: ignore[arg-type]
        max_memory_per_worker=overrides.get("max_memory_per_worker"),  # type: ignore[arg-type]
        dask_address=str(overrides.get("dask_address") or os.environ.get(ENV_DASK_ADDRESS, "").strip())
        or None,
    )


def _from_env(name: str, check: Callable[[str], str]) -> str | None:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return None
    try:
        return check(raw)
    except ValueError as exc:
        raise ValueError(f"{name}={raw!r} is not valid: {exc}") from None


def default_backend() -> Backend:
    """The backend of functions decorated without ``pool=`` or ``backend=``.

    Called on every call of such a function, so the common case is one global read, no lock:
    the settings are resolved by the first call only (see the module docstring).
    """
    if _worker.ACTIVE:
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
            return pool
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
            from ._pool import Pool

            _default_pool = Pool()
        return _default_pool


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
    backends: tuple[Backend | None, ...] = (pool, threads, distributed)
    for backend in backends:
        if backend is not None:
            backend.shutdown(wait, cancel_pending=cancel_pending)


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
        _overrides.clear()
        _resolved = None


def check_workers(workers: int, name: str = "workers") -> int:
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"{name} must be a positive int, got {workers!r}")
    return workers


_MEMORY_UNITS = {
    "": 1,
    "b": 1,
    "k": 10**3,
    "kb": 10**3,
    "m": 10**6,
    "mb": 10**6,
    "g": 10**9,
    "gb": 10**9,
    "t": 10**12,
    "tb": 10**12,
    "kib": 2**10,
    "mib": 2**20,
    "gib": 2**30,
    "tib": 2**40,
}


def parse_memory(value: int | str) -> int:
    """Bytes from an int or a string such as "512MB", "2GB" (powers of 1000) or "1.5GiB" (of 1024)."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise TypeError(f"a memory size must be bytes or a string like '2GB', got {value!r}")
    if isinstance(value, int):
        number, unit = float(value), ""
    else:
        text = value.strip().lower().replace(" ", "")
        digits = text.rstrip("abcdefghijklmnopqrstuvwxyz")
        try:
            number, unit = float(digits), text[len(digits) :]
        except ValueError:
            number, unit = -1.0, ""
    if unit not in _MEMORY_UNITS or number <= 0:
        raise ValueError(f"a memory size must be bytes or a string like '2GB', got {value!r}")
    return int(number * _MEMORY_UNITS[unit])


def check_start_method(method: str) -> str:
    methods = multiprocessing.get_all_start_methods()
    if method not in methods:
        raise ValueError(f"start_method must be one of {', '.join(methods)}; got {method!r}")
    return method


def check_backend(name: str) -> str:
    if name not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}; got {name!r}")
    return name


def _parse_workers(raw: str) -> int:
    try:
        return check_workers(int(raw))
    except ValueError:
        raise ValueError(f"{ENV_WORKERS} must be a positive integer, got {raw!r}") from None


def default_start_method() -> str:
    return "forkserver" if sys.platform.startswith("linux") else "spawn"


def available_cpus() -> int:
    """CPUs this process may use: its affinity mask, capped by a cgroup CPU quota if any."""
    if hasattr(os, "process_cpu_count"):  # 3.13+: affinity-aware
        count = os.process_cpu_count() or 1
    elif hasattr(os, "sched_getaffinity"):
        count = len(os.sched_getaffinity(0))
    else:
        count = os.cpu_count() or 1
    quota = _cgroup_cpu_quota()
    if quota is not None:
        count = min(count, max(1, math.ceil(quota)))
    return max(1, count)


def _cgroup_cpu_quota() -> float | None:
    """The CPU quota (in CPUs) of this process's cgroup, v2 or v1; None when there is none."""
    try:
        with open("/proc/self/cgroup") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if controllers == "":  # cgroup v2
            for base in (f"/sys/fs/cgroup{path}", "/sys/fs/cgroup"):
                quota = _read_quota(f"{base}/cpu.max")
                if quota is not None:
                    return quota
        elif "cpu" in controllers.split(","):  # cgroup v1
            for base in (f"/sys/fs/cgroup/cpu{path}", "/sys/fs/cgroup/cpu"):
                quota = _read_quota_v1(base)
                if quota is not None:
                    return quota
    return None


def _read_quota(path: str) -> float | None:
    try:
        with open(path) as f:
            limit, period = f.read().split()[:2]
    except (OSError, ValueError):
        return None
    return None if limit == "max" else int(limit) / int(period)


def _read_quota_v1(base: str) -> float | None:
    try:
        with open(f"{base}/cpu.cfs_quota_us") as f:
            quota = int(f.read())
        with open(f"{base}/cpu.cfs_period_us") as f:
            period = int(f.read())
    except (OSError, ValueError):
        return None
    return quota / period if quota > 0 and period > 0 else None


def _after_fork_in_child() -> None:
    # The parent's thread backend has no threads here, and a lock may have been held mid-fork.
    # The default pool object stays (it resets itself to NEW, see _pool), but the choice is made
    # again: a forked worker must run calls inline, and a thread default must not be the parent's.
    global _lock, _thread_backend, _dask_backend, _resolved
    _lock = threading.RLock()
    _thread_backend = None
    _dask_backend = None  # the parent's client and cluster are the parent's
    _resolved = None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
