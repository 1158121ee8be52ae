"""Task functions for the map tests, one argument each so that a one-iterable map sends bare items.

Workers import them by name, so they live in an importable module that imports only the
standard library and the test helpers.
"""

from __future__ import annotations

import os
import time
from typing import Any

from parallelize import parallel
from tests.fault_tasks import count_attempt


class Every7thError(Exception):
    """Raised by ``fail_every_7th`` for the items it refuses."""


def fail_every_7th(x: int) -> int:
    """Fail item x when x % 7 == 3 (several failures per chunk, none at a chunk's edge only)."""
    if x % 7 == 3:
        raise Every7thError(f"item {x} is refused")
    return x * 10


def stop_at_4(x: int) -> int:
    """Raise StopIteration at item 4: a consumer loop must not take it for the end of the chunk."""
    if x == 4:
        raise StopIteration("item 4 stops")
    return x


def exit_at_5(x: int) -> int:
    """SystemExit inside a chunk fails that item only; the worker goes on."""
    if x == 5:
        raise SystemExit(5)
    return x


def crash_at_5(x: int) -> int:
    """Kill the worker at item 5, inside a chunk of bare items."""
    if x == 5:
        os._exit(3)
    return x * x


def hang_at_5(x: int) -> int:
    if x == 5:
        time.sleep(600)
    return x * x


def args_of(*args: Any) -> tuple[Any, ...]:
    """What the function was called with: tells ``f(item)`` from ``f(*item)``."""
    return args


def pause(x: int) -> int:
    """Longer than the chunk sizer's target: chunks of such items must stay at one item."""
    time.sleep(0.03)
    return x


class FlakyItem(Exception):
    """Raised by ``flaky_item`` on an item's first attempt."""


def flaky_item(path: str) -> int:
    """Fail the first attempt for each path, succeed on the second: the attempt number."""
    attempt = count_attempt(path)
    if attempt == 1:
        raise FlakyItem(f"first attempt at {os.path.basename(path)}")
    return attempt


flaky_item_retried = parallel(retries=1, retry_on=FlakyItem)(flaky_item)


class Box:
    """An argument whose lifetime a test can watch with a weak reference."""

    def __init__(self, value: int) -> None:
        self.value = value


def unbox(box: Box) -> int:
    return box.value
