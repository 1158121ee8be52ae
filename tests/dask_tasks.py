"""Importable task functions for tests/test_dask.py (workers import them by name).

The ones that must be seen running write their worker's pid to a file first, so a test knows the
task started, and which process to watch die, without guessing how long anything takes.
"""

from __future__ import annotations

import os
import random
import time
from pathlib import Path

# How long a "forever" task runs if nothing stops it: longer than any test waits.
FOREVER = 120.0


def square(x: int) -> int:
    return x * x


def reciprocal(x: int) -> float:
    return 1 / x


def current_key(_: int) -> str:
    """The dask key of the task running this item: one key per chunk of a map."""
    from distributed.worker import thread_state

    return str(thread_state.key)


def dask_keywords(
    x: int,
    key: object = None,
    pure: object = None,
    retries: object = None,
    workers: object = None,
    resources: object = None,
    priority: object = None,
) -> tuple[object, ...]:
    return (x, key, pure, retries, workers, resources, priority)


def fail(message: str) -> None:
    raise ValueError(message)


def draw() -> float:
    """A fresh number from the worker's own generator: impure, so two calls must differ."""
    return random.random()


def pid_then_sleep(path: str) -> int:
    """Write this worker's pid to ``path``, then run until stopped."""
    Path(path).write_text(str(os.getpid()))
    time.sleep(FOREVER)
    return os.getpid()


def log_then_exit(path: str) -> None:
    """Append a line per run to ``path``, then kill this worker process."""
    with open(path, "a") as f:
        f.write(f"{os.getpid()}\n")
    os._exit(3)


def flaky(path: str, failures: int) -> int:
    """Raise ConnectionError for the first ``failures`` runs (counted in ``path``), then succeed."""
    with open(path, "a") as f:
        f.write("run\n")
    runs = len(Path(path).read_text().splitlines())
    if runs <= failures:
        raise ConnectionError(f"run {runs} failed")
    return runs


def unpicklable_result() -> object:
    import threading

    return threading.Lock()


def square_or_hang(x: int, hang_at: int, path: str) -> int:
    """``x * x``, except that item ``hang_at`` writes its worker's pid to ``path`` and runs on."""
    if x == hang_at:
        return pid_then_sleep(path)
    return x * x
