"""Task functions for tests/test_unordered.py and tests/test_amap.py (importable by name in workers).

Items that must finish in a given order wait for a file the test creates (``fault_tasks``'s
``wait_for_file``), never for a time: the order of results is then the order the test released
them in.
"""

from __future__ import annotations

import os
import time

from parallelize import parallel
from tests.fault_tasks import FOREVER, record_pid, wait_for_file

# How long a held item waits for its release before it fails: far longer than any test needs.
HOLD_LIMIT = 15.0


def held(x: int, release: str | None) -> int:
    """``x * 10``, after ``release`` exists (at once for None)."""
    if release is not None:
        wait_for_file(release, HOLD_LIMIT)
    return x * 10


def started_then_held(x: int, directory: str) -> int:
    """Record this worker's pid in ``directory/item-<x>``, then wait for ``directory/release``."""
    record_pid(os.path.join(directory, f"item-{x}"))
    wait_for_file(os.path.join(directory, "release"), FOREVER)
    return x


def crash_or_hang(x: int) -> int:
    """Item 3 kills its worker, item 5 never ends (a map's timeout stops it), the rest square."""
    if x == 3:
        os._exit(3)
    if x == 5:
        time.sleep(FOREVER)
    return x * x


@parallel
async def async_triple(x: int) -> int:
    return 3 * x


@parallel
def fails_on_odd(x: int) -> int:
    if x % 2:
        raise ValueError(f"item {x} is odd")
    return x


class Scaler:
    """A class with a ``@parallel`` method, to map over through an instance."""

    def __init__(self, factor: int) -> None:
        self.factor = factor

    @parallel
    def scale(self, x: int) -> int:
        return self.factor * x


@parallel
async def async_hang(marker: str) -> str:
    """An async def that records its worker's pid, then awaits for ever."""
    import asyncio

    record_pid(marker)
    await asyncio.sleep(FOREVER)
    return "woke up"
