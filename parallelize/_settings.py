"""Settings: what configure() set, then the environment, then the machine.

Precedence, highest first: ``configure()``, then the ``PARALLELIZE_WORKERS``,
``PARALLELIZE_START_METHOD`` and ``PARALLELIZE_BACKEND`` environment variables, then the machine:
the CPUs this process may use (affinity and cgroup quota, not ``os.cpu_count()``) and forkserver on
Linux, spawn elsewhere (fork from a process with threads can deadlock, and warns on 3.12+).

This module knows no pool: ``_pool`` reads its settings here, and ``_config`` (the shared default
backends, which builds pools) writes them, so neither imports the other both ways.
"""

from __future__ import annotations

import math
import multiprocessing
import os
import sys
import threading
from collections.abc import Callable
from typing import NamedTuple

__all__ = [
    "Settings",
    "available_cpus",
    "check_backend",
    "check_start_method",
    "check_workers",
    "parse_memory",
    "settings",
]

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


# _lock guards _overrides. Writers (configure, the test fixture) go through _config, which holds
# its own lock around the write so that no default pool is built from half-written settings.
_lock = threading.Lock()
_overrides: dict[str, object] = {}  # what configure() set


def override(values: dict[str, object]) -> None:
    """Record configure()'s settings (``None`` values are left out by the caller)."""
    with _lock:
        _overrides.update(values)


def clear() -> None:
    """Forget configure()'s settings (the test suite's fixture, through _config)."""
    with _lock:
        _overrides.clear()


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
    global _lock
    _lock = threading.Lock()  # another thread may have held it at the fork
