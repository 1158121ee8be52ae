"""Importable task functions for the tests: workers find them by module and name.

Each does one thing a real task might: compute, sleep, raise, crash, or return something that
cannot cross a process boundary.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from typing import Any

import parallelize
from parallelize import in_process, parallel


def square(x: int) -> int:
    return x * x


def add(a: int, b: int) -> int:
    return a + b


def identity(x: Any) -> Any:
    return x


def getpid(_: object = None) -> int:
    return os.getpid()


def sleep_then(seconds: float, value: Any = None) -> Any:
    time.sleep(seconds)
    return value


def in_worker() -> bool:
    from parallelize import _role

    return _role.IN_WORKER


class CustomError(Exception):
    """A user exception with extra state that pickles normally."""

    def __init__(self, message: str, code: int = 0) -> None:
        super().__init__(message, code)
        self.code = code


class UnpicklableError(Exception):
    """Holds a lock, so pickling it fails in the worker."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.lock = threading.Lock()


class UnrebuildableError(Exception):
    """Pickles fine but cannot be rebuilt: __init__ needs two arguments, args holds one."""

    def __init__(self, a: str, b: str) -> None:
        super().__init__(f"{a}/{b}")


def raise_value_error(message: str = "bad value") -> None:
    raise ValueError(message)


def raise_custom(message: str, code: int) -> None:
    raise CustomError(message, code)


def raise_unpicklable(message: str = "cannot travel") -> None:
    raise UnpicklableError(message)


def raise_unrebuildable() -> None:
    raise UnrebuildableError("left", "right")


def raise_system_exit(code: int = 3) -> None:
    raise SystemExit(code)


def return_lock() -> object:
    return threading.Lock()


def return_lock_at(x: int, bad: int) -> object:
    """For map: item ``bad`` returns something unpicklable."""
    return threading.Lock() if x == bad else x


def fail_at(x: int, bad: int) -> int:
    """For map: item ``bad`` raises."""
    if x == bad:
        raise ValueError(f"item {x} is bad")
    return x


def exit_with(code: int) -> None:
    os._exit(code)


def kill_self(sig: int = signal.SIGKILL) -> None:
    os.kill(os.getpid(), sig)


def segfault() -> None:
    import ctypes

    ctypes.string_at(0)


class FailsToUnpickle:
    """Pickles in the parent, raises when unpickled in the worker."""

    def __reduce__(self) -> tuple[Any, ...]:
        return (_refuse, ())


def _refuse() -> None:
    raise RuntimeError("this object refuses to be unpickled")


def initializer_sets(value: str) -> None:
    os.environ["PARALLELIZE_TEST_INIT"] = value


def initializer_fails() -> None:
    raise RuntimeError("initializer failed on purpose")


def read_init_value() -> str | None:
    return os.environ.get("PARALLELIZE_TEST_INIT")


@parallel
def decorated_square(x: int) -> int:
    return x * x


@parallel(workers=1)
def decorated_limited(seconds: float) -> int:
    time.sleep(seconds)
    return os.getpid()


@in_process
def inproc_add(a: int, b: int) -> int:
    return a + b


@in_process
def inproc_raise(message: str) -> int:
    raise CustomError(message, 7)


@in_process(isolated=True)
def isolated_pid() -> int:
    return os.getpid()


@in_process(isolated=True)
def isolated_crash() -> int:
    os._exit(9)


@parallel
def nested_outer(x: int) -> tuple[int, bool]:
    """Calls another decorated function from inside a worker (runs inline there)."""
    return decorated_square(x).result(timeout=30), in_worker()


def default_pool_pids() -> list[int]:
    from parallelize import _config

    pool = _config._default_pool
    return [] if pool is None else pool.worker_pids()


__all__ = [name for name in dir() if not name.startswith("_")] + ["parallelize"]
