"""Task functions for tests/test_engine_faults.py: user objects that misbehave while they travel."""

from __future__ import annotations

import os
from typing import Any


def _exit_now() -> None:
    raise SystemExit(7)


class ExitWhenRebuilt:
    """Pickles fine; unpickling it raises SystemExit (a hostile or buggy __reduce__)."""

    def __reduce__(self) -> tuple[Any, ...]:
        return (_exit_now, ())


class ExitWhenPickled:
    """Pickling it raises SystemExit."""

    def __reduce__(self) -> tuple[Any, ...]:
        raise SystemExit(8)


class ErrorThatExitsWhenRebuilt(Exception):
    def __reduce__(self) -> tuple[Any, ...]:
        return (_exit_now, ())


def return_exit_when_rebuilt() -> ExitWhenRebuilt:
    return ExitWhenRebuilt()


def return_exit_when_pickled() -> tuple[int, ExitWhenPickled]:
    return os.getpid(), ExitWhenPickled()


def raise_error_that_exits_when_rebuilt() -> None:
    raise ErrorThatExitsWhenRebuilt("rebuilding me raises SystemExit")


def hostile_item(x: int) -> object:
    """A map item: item 9's value raises SystemExit when rebuilt, item 26's when pickled."""
    if x == 9:
        return ExitWhenRebuilt()
    if x == 26:
        return ExitWhenPickled()
    return x * 2


def raise_keyboard_interrupt() -> None:
    raise KeyboardInterrupt("raised by the task itself")


def pid_of(x: int) -> tuple[int, int]:
    return x, os.getpid()


def leave_a_thread(x: int) -> tuple[int, int]:
    """Return ``(x, pid)`` and leave a non-daemon thread running: the worker can no longer exit
    by itself, since interpreter exit waits for that thread."""
    import threading
    import time

    threading.Thread(target=time.sleep, args=(3600,), name="left-behind").start()
    return x, os.getpid()
