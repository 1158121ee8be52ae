"""Importable task functions for the core API tests (api, futures, map, errors, backends, config).

Workers find these by module and name, so they live here rather than in the test files. Tasks that
must prove something about concurrency do it with files in a directory the test owns: a task says
it started by creating a file, and waits for the test (or its peers) by watching for one.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any

from parallelize import Future, in_process, parallel

# How long a task waits for a file before giving up, so a broken test fails instead of hanging.
WAIT_LIMIT = 20.0

# Appended to by record_call: only a call that runs in this very process shows up here.
CALLS: list[object] = []


def _wait_for(predicate: Any, what: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"task in process {os.getpid()} gave up waiting for {what} after {timeout} s")
        time.sleep(0.005)


def block_until(release: str, started: str | None = None, timeout: float = WAIT_LIMIT) -> int:
    """Say it started (by creating ``started``), then wait until ``release`` exists; return the pid."""
    if started is not None:
        Path(started).touch()
    _wait_for(lambda: os.path.exists(release), f"{release} to appear", timeout)
    return os.getpid()


def touch(path: str) -> int:
    """Create ``path``: the evidence that this call ran."""
    Path(path).touch()
    return os.getpid()


def rendezvous(directory: str, count: int, timeout: float = WAIT_LIMIT) -> int:
    """Arrive, then wait until ``count`` calls have arrived: succeeds only if they all run at once."""
    Path(directory).mkdir(exist_ok=True)
    Path(directory, f"{os.getpid()}-{threading.get_ident()}").touch()
    _wait_for(lambda: len(os.listdir(directory)) >= count, f"{count} calls to arrive in {directory}", timeout)
    return os.getpid()


def probe(directory: str, seconds: float) -> tuple[float, float, bool, int]:
    """Hold ``directory/running`` for ``seconds``: (start, end, saw another call running, pid).

    The file is created exclusively, so a call that starts while another is still inside finds it
    there and reports the overlap.
    """
    Path(directory).mkdir(exist_ok=True)
    marker = os.path.join(directory, "running")
    start = time.time()
    try:
        fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        overlapped, fd = True, -1
    else:
        overlapped = False
    time.sleep(seconds)  # the work itself, not synchronisation
    end = time.time()
    if fd >= 0:
        os.close(fd)
        os.remove(marker)
    return start, end, overlapped, os.getpid()


def pid_and_square(x: int) -> tuple[int, int]:
    return os.getpid(), x * x


def jitter(x: int) -> int:
    """Return ``x`` after a short, item-dependent pause, so items finish out of order."""
    time.sleep((x * 7 % 5) * 0.002)
    return x


def ppid() -> tuple[int, int]:
    """(pid, parent pid) of the process running the call."""
    return os.getpid(), os.getppid()


def thread_ident() -> int:
    return threading.get_ident()


def thread_name() -> str:
    return threading.current_thread().name


def record_call(x: object) -> object:
    CALLS.append(x)
    return x


def append_one(items: list[int]) -> list[int]:
    items.append(1)
    return items


def initializer_record(value: str, directory: str) -> None:
    """Initializer: set an environment variable and leave a file named after this worker's pid."""
    os.environ["PARALLELIZE_CORE_INIT"] = value
    Path(directory, str(os.getpid())).touch()


def init_value_after_rendezvous(directory: str, count: int) -> tuple[int, str | None]:
    """Meet ``count - 1`` peers (so each call has a worker of its own), then report what the
    initializer left in this worker."""
    pid = rendezvous(directory, count)
    return pid, os.environ.get("PARALLELIZE_CORE_INIT")


def call_decorated(function: Any, x: int) -> Any:
    """Call a decorated function passed in as an argument (it arrives in the worker by reference)."""
    future = function(x)
    assert isinstance(future, Future)
    return future.result(timeout=WAIT_LIMIT)


@parallel
def decorated_getpid() -> int:
    return os.getpid()


@parallel
def decorated_ppid() -> tuple[int, int]:
    return os.getpid(), os.getppid()


@parallel
def padd(a: int, b: int) -> int:
    return a + b


@parallel(workers=2)
def documented(a: int, b: str = "x", *, flag: bool = False) -> str:
    """Join a number and a string; the docstring must survive decoration."""
    return f"{a}{b}{flag}"


@in_process
def inproc_documented(a: int, *, scale: float = 1.0) -> float:
    """Scale a number in a worker process."""
    return a * scale


@in_process
def inproc_getpid() -> int:
    return os.getpid()


@parallel
def nested_pids() -> tuple[int, int]:
    """(this call's pid, the pid a nested decorated call ran in)."""
    return os.getpid(), decorated_getpid().result(timeout=WAIT_LIMIT)


decorated_rendezvous = parallel(rendezvous)
decorated_thread_name = parallel(thread_name)
limited_probe = parallel(workers=1)(probe)
limited_block = parallel(workers=1)(block_until)
limited_touch = parallel(workers=1)(touch)
