"""Tasks for the Executor conformance suite (tests/test_executor*.py), importable by name in
spawn and forkserver workers alike, for ProcessPoolExecutor and Pool.

``init_gate`` hands each worker two pipe ends through ``initargs`` (so by inheritance, the way
multiprocessing shares them): ``gated(i)`` says it started, then waits for the test to open the
gate (util.Gate). That is how tests hold work running or queued without sleeping.
"""

from __future__ import annotations

import logging
import logging.handlers
import os
import signal
import threading
import time
from typing import Any

_shared: dict[str, Any] = {}


def square(x: int) -> int:
    return x * x


def capture(*args: Any, **kwargs: Any) -> tuple[tuple[Any, ...], dict[str, Any]]:
    return args, kwargs


def fail_at(x: int, bad: int) -> int:
    if x == bad:
        raise ValueError(f"item {x} fails on purpose")
    return x


def raise_value_error(message: str) -> None:
    raise ValueError(message)


def raise_system_exit(code: int) -> None:
    raise SystemExit(code)


def sleep_then(seconds: float, value: Any = None) -> Any:
    time.sleep(seconds)
    return value


def sleep_and_print(seconds: float, message: str) -> None:
    time.sleep(seconds)
    print(message, flush=True)


class Dummy:
    """A result whose lifetime the tests watch with a weakref."""


def make_dummy(_: int) -> Dummy:
    return Dummy()


class Holder:
    """Its bound method is the submitted callable; its collection is what the tests watch."""

    def method(self) -> int:
        return 7


def return_lock() -> object:
    return threading.Lock()


class FailsToUnpickle(Exception):
    """Pickles in the worker, and cannot be rebuilt in the parent."""

    def __reduce__(self) -> tuple[Any, ...]:
        return (_refuse, ())


def _refuse() -> None:
    raise RuntimeError("this exception refuses to be unpickled")


def raise_unrebuildable() -> None:
    raise FailsToUnpickle("raised on purpose")


def exit_worker(code: int) -> None:
    os._exit(code)


def kill_worker() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


# -- initializers --------------------------------------------------------------------------------


def init_value(value: str) -> None:
    _shared["value"] = value


def read_value() -> str | None:
    return _shared.get("value")


def init_fails() -> None:
    raise RuntimeError("initializer failed on purpose")


def init_logging(queue: Any) -> None:
    """The logging cookbook's recipe: every worker's records go to one queue the parent reads."""
    root = logging.getLogger()
    root.handlers[:] = [logging.handlers.QueueHandler(queue)]
    root.setLevel(logging.INFO)


def log_message(message: str) -> int:
    logging.getLogger("tests.executor").info("from worker %s: %s", os.getpid(), message)
    return os.getpid()


def init_sync(lock: Any, semaphore: Any) -> None:
    _shared["lock"] = lock
    _shared["semaphore"] = semaphore


def try_lock(wait: float) -> bool:
    lock = _shared["lock"]
    if lock.acquire(timeout=wait):
        lock.release()
        return True
    return False


def try_semaphore(wait: float) -> bool:
    return bool(_shared["semaphore"].acquire(timeout=wait))


def init_gate(starts: Any, gate: Any) -> None:
    _shared["starts"] = starts
    _shared["gate"] = gate


def gated(i: int) -> int:
    _shared["starts"].send(i)  # one small write: atomic among the workers sharing the pipe
    if not _shared["gate"].poll(60):
        raise TimeoutError("the test never opened the gate")
    return i
