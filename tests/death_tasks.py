"""Task functions for tests/test_parent_death.py: a worker in each state a parent can die in."""

from __future__ import annotations

import os
import time
from pathlib import Path


def mark(directory: str, what: str) -> None:
    Path(directory, f"{what}-{os.getpid()}").touch()


def pid() -> int:
    return os.getpid()


def sleep_marked(directory: str) -> None:
    mark(directory, "sleeping")
    time.sleep(600)


def hold_the_gil_marked(directory: str) -> int:
    """A C loop that never releases the GIL: the worker's watchdog thread cannot run meanwhile."""
    mark(directory, "gil")
    return sum(range(10**14))


def boot_forever(directory: str) -> None:
    """An initializer that never finishes: the worker stays booting (never READY)."""
    mark(directory, "booting")
    time.sleep(600)


def length(data: bytes) -> int:
    return len(data)
