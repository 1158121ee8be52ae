"""Task functions for the fault tests: they crash, hang, hoard memory or misbehave on purpose.

Workers import them by name (spawn and forkserver re-import this module in every new worker), so
they live in an importable module. Most take a ``marker`` path and write the worker's pid there
*before* misbehaving: the test waits for that file instead of sleeping, and then knows which
worker was hit. Files, not globals, count attempts across workers (a retry after a crash runs in
a new process).
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any

from parallelize import _role, in_process, parallel
from tests.workers import UnpicklableError, UnrebuildableError

# Longer than any test may run: a task that sleeps this long only ends when it is stopped.
FOREVER = 600.0


def warm() -> None:
    """A pool initializer: resolving it imports this module in each worker before READY.

    A worker imports a task's module on its first task, inside the task's time limit; with
    wrapt and asyncio behind ``parallelize``'s public layer that takes a tenth of a second here,
    more on a busy machine. Tests that time short items warm their workers with this instead.
    """


def record_pid(marker: str) -> None:
    """Write this process's pid to ``marker`` atomically: a reader never sees a partial file."""
    partial = f"{marker}.{os.getpid()}.partial"
    with open(partial, "w") as f:
        f.write(str(os.getpid()))
    os.replace(partial, marker)


def read_pid(marker: str) -> int:
    with open(marker) as f:
        return int(f.read())


def count_attempt(counter: str) -> int:
    """Append one line to ``counter`` and return how many lines it now holds (this attempt's number)."""
    with open(counter, "a") as f:
        f.write(f"{os.getpid()}\n")
    with open(counter) as f:
        return len(f.readlines())


def wait_for_file(path: str, seconds: float = FOREVER) -> None:
    """Block until ``path`` exists: how a task waits for the test to release it."""
    deadline = time.monotonic() + seconds
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} never appeared")
        time.sleep(0.005)


# -- deaths --------------------------------------------------------------------------------------------


def crash_exit(marker: str, code: int) -> None:
    record_pid(marker)
    os._exit(code)


def crash_signal(marker: str, sig: int) -> None:
    record_pid(marker)
    os.kill(os.getpid(), sig)
    time.sleep(FOREVER)  # SIGTERM is delivered asynchronously; never return a value


def crash_segfault(marker: str) -> None:
    import ctypes

    record_pid(marker)
    ctypes.string_at(0)


# -- hangs ---------------------------------------------------------------------------------------------


def hang(marker: str, seconds: float = FOREVER) -> str:
    record_pid(marker)
    time.sleep(seconds)
    return "woke up"


@parallel
def decorated_hang(marker: str) -> str:
    return hang(marker)


@parallel(timeout=0.5)
def parallel_hang(marker: str) -> str:
    return hang(marker)


@in_process(timeout=0.5)
def inproc_hang(marker: str) -> str:
    return hang(marker)


@in_process(isolated=True, timeout=0.5)
def isolated_hang(marker: str) -> str:
    return hang(marker)


@in_process(isolated=True)
def isolated_square(x: int) -> int:
    return x * x


def blocked_until(release: str, marker: str, value: Any = None) -> Any:
    """Started (pid in ``marker``), then blocked until the test creates ``release``."""
    record_pid(marker)
    wait_for_file(release)
    return value


# -- bad data ------------------------------------------------------------------------------------------


def unpicklable_result(marker: str) -> object:
    record_pid(marker)
    return threading.Lock()


def raise_unpicklable(marker: str) -> None:
    record_pid(marker)
    raise UnpicklableError("cannot travel")


def raise_unrebuildable(marker: str) -> None:
    record_pid(marker)
    raise UnrebuildableError("left", "right")


def never_called(arg: object) -> object:
    """Its argument fails to unpickle in the worker, so its body never runs."""
    return arg


# -- memory --------------------------------------------------------------------------------------------

_hoard: list[bytes] = []


def hog_memory(marker: str, megabytes: int) -> int:
    """Grow resident memory by ``megabytes`` (every page written), then hang holding it."""
    record_pid(marker)
    block = b"\x01" * (megabytes * 10**6)
    time.sleep(FOREVER)
    return len(block)


def leave_garbage(megabytes: int) -> int:
    """Leave ``megabytes`` of resident memory behind in this worker after returning."""
    _hoard.append(b"\x01" * (megabytes * 10**6))
    return os.getpid()


# -- retries -------------------------------------------------------------------------------------------


class FlakyError(Exception):
    """Raised by ``flaky`` until its attempt budget is used up."""


@parallel(retries=1)
def crash_once(marker: str) -> int:
    """First attempt: record the pid and kill the worker. Second: return the new worker's pid."""
    if os.path.exists(marker):
        return os.getpid()
    record_pid(marker)
    os._exit(3)


@parallel(retries=2)
def always_crash(counter: str) -> None:
    count_attempt(counter)
    os._exit(3)


def flaky(counter: str, failures: int) -> int:
    """Raise FlakyError on the first ``failures`` attempts, then return the attempt number."""
    attempt = count_attempt(counter)
    if attempt <= failures:
        raise FlakyError(f"attempt {attempt} failed")
    return attempt


flaky_retried = parallel(retries=2, retry_on=(FlakyError,))(flaky)


@parallel(timeout=0.5, retries=1)
def slow_once(marker: str) -> str:
    """First attempt: hang past the timeout. Second: return at once."""
    if os.path.exists(marker):
        return "fast"
    record_pid(marker)
    time.sleep(FOREVER)
    return "slow"


# -- map items -----------------------------------------------------------------------------------------


def crash_at(x: int, bad: int) -> int:
    if x == bad:
        os._exit(3)
    return x * x


def hang_at(x: int, bad: int) -> int:
    if x == bad:
        time.sleep(FOREVER)
    return x * x


def first_fast(x: int, directory: str) -> int:
    """Item 0 returns at once; every other item records its pid in ``directory`` and hangs."""
    if x == 0:
        return 0
    record_pid(os.path.join(directory, str(x)))
    time.sleep(FOREVER)
    return x


def touch_and_square(x: int, path: str) -> int:
    with open(path, "w"):
        pass
    return x * x


def slow_square(x: int, seconds: float) -> int:
    time.sleep(seconds)
    return x * x


# -- nesting -------------------------------------------------------------------------------------------


@parallel
def nested_inner() -> tuple[int, bool]:
    return os.getpid(), _role.IN_WORKER


@parallel
def nested_outer() -> tuple[int, int, bool]:
    inner_pid, inner_active = nested_inner().result(timeout=30)
    return os.getpid(), inner_pid, inner_active


# -- chaos ---------------------------------------------------------------------------------------------

NORMAL, CRASH, HANG = 0, 1, 2


def chaos(x: int, mode: int) -> int:
    """Cheap when ``mode`` is NORMAL; kills its worker for CRASH; hangs for HANG."""
    if mode == CRASH:
        os._exit(3)
    if mode == HANG:
        time.sleep(FOREVER)
    return 2 * x + 1


chaos_parallel = parallel(chaos)


# -- Ctrl-C --------------------------------------------------------------------------------------------

inproc_sleep = in_process(hang)
isolated_sleep = in_process(isolated=True)(hang)
