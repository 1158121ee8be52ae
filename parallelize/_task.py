"""The units of work as the engine sees them, whatever the backend: a call, or a chunk of a map.

A task is made in the caller's thread by ``submit_call`` or ``submit_chunk`` (``_backends``); the
backend's ``_encode`` pickles it when it crosses a process boundary, and its ``_enqueue`` carries
it to a worker. The future it fills is made by the public layer, so a throttle can hold a task
without the engine's help. The two kinds are two types: a ``CallTask`` runs once and settles its
future with the call's value; a ``ChunkTask`` runs a map chunk whose items may be settled over
several runs (after a timeout or a crash only the items not yet settled are sent again) and
settles its future with a ``ChunkResult``.
"""

from __future__ import annotations

import itertools
from typing import Any, NamedTuple

from . import _protocol as wire
from ._encode import encode_call, encode_chunk
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
    """What both kinds have. Plain classes rather than dataclasses: dataclasses imports inspect,
    which costs more start-up time than this whole package."""

    __slots__ = ("attempts", "function", "future", "id", "options", "payload")

    def __init__(self, function: FunctionHandle, future: Future[Any], options: TaskOptions) -> None:
        self.function = function
        self.future = future
        self.options = options
        # The pickled task, for backends that cross a process boundary.
        self.payload: bytes | None = None
        self.id = next(_ids)
        self.attempts = 0  # runs started (the dispatcher counts them)

    def describe(self) -> str:
        """How error messages name this task: 'mod.f(3)', or one item of a map."""
        raise NotImplementedError

    def calls(self) -> int:
        """How many calls of its function one run makes (to measure the time per call)."""
        raise NotImplementedError

    def encode(self, segments: list[str]) -> bytes:
        """Pickle the task; large arguments go into shared memory, their names into ``segments``."""
        raise NotImplementedError

    def message(self) -> tuple[int, bytes]:
        """The wire kind and payload of its next run (see _protocol)."""
        raise NotImplementedError


class CallTask(Task):
    """One call, ``function(*args, **kwargs)``."""

    __slots__ = ("args", "kwargs")

    def __init__(
        self,
        function: FunctionHandle,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        future: Future[Any],
        options: TaskOptions = NO_OPTIONS,
    ) -> None:
        super().__init__(function, future, options)
        self.args = args
        self.kwargs = kwargs

    def describe(self) -> str:
        return self.function.describe(self.args, self.kwargs)

    def calls(self) -> int:
        return 1

    def encode(self, segments: list[str]) -> bytes:
        options = self.options
        return encode_call(self.function, self.args, self.kwargs, options.retries, options.retry_on, segments)

    def message(self) -> tuple[int, bytes]:
        assert self.payload is not None
        return wire.RUN, self.payload


class ChunkTask(Task):
    """A chunk of a map, and what is settled of it so far: ``done`` items, their values, and the
    errors of the ones that failed. An item is an argument tuple, or with ``bare`` (a one-iterable
    map) the single argument itself: no 1-tuple is built, pickled or unpacked per item."""

    __slots__ = ("bare", "done", "errors", "items", "stream", "values")

    def __init__(
        self,
        function: FunctionHandle,
        items: list[Any],
        future: Future[Any],
        options: TaskOptions = NO_OPTIONS,
        *,
        bare: bool = False,
    ) -> None:
        super().__init__(function, future, options)
        self.items = items
        self.bare = bare
        self.done = 0
        self.stream = False  # send as RUN_EACH: set for per-item deadlines and after a crash
        self.values: list[Any] = []
        self.errors: dict[int, BaseException] = {}

    def describe(self) -> str:
        if self.done < len(self.items):
            return self.describe_item(self.done)
        return f"a chunk of {len(self.items)} items of {self.function.label}"

    def describe_item(self, index: int) -> str:
        """How error messages name item ``index``: 'mod.f(3)'."""
        item = self.items[index]
        return self.function.describe((item,) if self.bare else item)

    def calls(self) -> int:
        return len(self.items)

    def left(self) -> int:
        """Items not settled yet."""
        return len(self.items) - self.done

    def encode(self, segments: list[str]) -> bytes:
        options = self.options
        return encode_chunk(
            self.function, self.items, options.retries, options.retry_on, segments, bare=self.bare
        )

    def message(self) -> tuple[int, bytes]:
        options = self.options
        kind = wire.RUN_EACH if self.stream or options.timeout is not None else wire.RUN_MANY
        if self.done == 0:
            assert self.payload is not None
            return kind, self.payload
        rest = self.items[self.done :]
        return kind, encode_chunk(self.function, rest, options.retries, options.retry_on, bare=self.bare)

    def settle_item(self, value: Any, error: BaseException | None) -> None:
        """The outcome of the next item: its value, or its error (its value is then None)."""
        if error is not None:
            self.errors[self.done] = error
        self.values.append(value)
        self.done += 1

    def result(self, seconds: float) -> ChunkResult:
        return ChunkResult(self.values, self.errors, seconds)


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
