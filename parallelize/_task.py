"""One unit of work as the engine sees it, whatever the backend.

A Task is made in the caller's thread by the backend's ``_encode`` (which pickles it when the
backend crosses a process boundary) and carried to a worker by the backend's ``_enqueue``. The
future it fills is made by the public layer, so a throttle can hold a task without the engine's
help. A map chunk is one Task whose items may be settled in several runs: after a timeout or a
crash, the dispatcher re-sends only the items not yet settled.
"""

from __future__ import annotations

import itertools
from typing import Any, NamedTuple

from ._functions import FunctionHandle
from ._futures import Future

_ids = itertools.count(1)


class TaskOptions(NamedTuple):
    """What a caller may ask of one call (or of each item of a map)."""

    timeout: float | None = None  # seconds of running time; queueing does not count
    retries: int = 0  # extra attempts after WorkerCrashed, TaskTimeout or a retry_on exception
    retry_on: tuple[type[BaseException], ...] = ()


NO_OPTIONS = TaskOptions()


class Task:
    # A plain class rather than a dataclass: dataclasses imports inspect, which costs more start-up
    # time than this whole package.
    __slots__ = (
        "args",
        "attempts",
        "bare",
        "done",
        "errors",
        "function",
        "future",
        "id",
        "items",
        "kwargs",
        "options",
        "payload",
        "stream",
        "values",
    )

    def __init__(
        self,
        function: FunctionHandle,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        future: Future[Any],
        items: list[Any] | None = None,
        options: TaskOptions = NO_OPTIONS,
        *,
        bare: bool = False,
    ) -> None:
        self.function = function
        self.args = args
        self.kwargs = kwargs
        self.future = future
        self.options = options
        # The pickled call, for backends that cross a process boundary.
        self.payload: bytes | None = None
        self.id = next(_ids)
        self.attempts = 0  # runs started (the dispatcher counts them)
        # A map chunk: its items (``args`` is then empty), and what is settled so far: ``done``
        # items, their values, and the errors of the ones that failed. An item is an argument
        # tuple, or with ``bare`` (a one-iterable map) the single argument itself: no 1-tuple is
        # built, pickled or unpacked per item.
        self.items = items
        self.bare = bare
        self.done = 0
        self.stream = False  # send as RUN_EACH: set for per-item deadlines and after a crash
        self.values: list[Any] = []
        self.errors: dict[int, BaseException] = {}

    def describe(self) -> str:
        """How error messages name this task: 'mod.f(3)', or one item of a map."""
        if self.items is not None:
            if self.done < len(self.items):
                return self.describe_item(self.done)
            return f"a chunk of {len(self.items)} items of {self.function.label}"
        return self.function.describe(self.args, self.kwargs)

    def describe_item(self, index: int) -> str:
        """How error messages name item ``index`` of a map chunk: 'mod.f(3)'."""
        assert self.items is not None
        item = self.items[index]
        return self.function.describe((item,) if self.bare else item)


def id_bound() -> int:
    """An id above every task made so far and below every task made later: what "the work
    there was when Ctrl-C came" means (see Inbox.interrupt)."""
    return next(_ids)


class ChunkResult:
    """What one chunk of a map resolves to: a value for every item, except where ``errors`` holds
    that item's exception (its value is then None)."""

    __slots__ = ("errors", "seconds", "values")

    def __init__(self, values: list[Any], errors: dict[int, BaseException], seconds: float) -> None:
        self.values = values
        self.errors = errors
        self.seconds = seconds


def check_timeout(timeout: float | None) -> float | None:
    if timeout is None:
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not timeout > 0:
        raise ValueError(f"timeout must be a positive number of seconds or None, got {timeout!r}")
    return float(timeout)


def make_options(
    timeout: float | None = None,
    retries: int = 0,
    retry_on: type[BaseException] | tuple[type[BaseException], ...] = (),
) -> TaskOptions:
    """Validate what a decorator or a call asks for, once, at decoration or call time."""
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
        raise ValueError(f"retries must be a non-negative int, got {retries!r}")
    kinds = retry_on if isinstance(retry_on, tuple) else (retry_on,)
    for kind in kinds:
        if not (isinstance(kind, type) and issubclass(kind, BaseException)):
            raise TypeError(f"retry_on takes exception classes, got {kind!r}")
    return TaskOptions(check_timeout(timeout), retries, kinds)


def options_of(function: object) -> TaskOptions:
    """The task options a ``@parallel`` or ``@in_process`` function carries (none for others)."""
    if getattr(type(function), "_parallelize_proxy", False):
        options: TaskOptions = getattr(function, "_self_task_options", NO_OPTIONS)
        return options
    return NO_OPTIONS
