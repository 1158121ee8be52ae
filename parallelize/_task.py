"""One unit of work as the engine sees it, whatever the backend.

A Task is made in the caller's thread by the backend's ``encode`` (which pickles it when the backend
crosses a process boundary) and carried to a worker by the backend's ``enqueue``. The future it
fills is made by the public layer, so a throttle or a retry can hold a task without the engine's
help.
"""

from __future__ import annotations

import itertools
from typing import Any

from ._futures import Future
from ._serialize import FunctionHandle

_ids = itertools.count(1)


class Task:
    # A plain class rather than a dataclass: dataclasses imports inspect, which costs more start-up
    # time than this whole package.
    __slots__ = ("args", "function", "future", "id", "items", "kwargs", "payload")

    def __init__(
        self,
        function: FunctionHandle,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        future: Future[Any],
        items: list[tuple[Any, ...]] | None = None,
    ) -> None:
        self.function = function
        self.args = args
        self.kwargs = kwargs
        self.future = future
        # Set for one chunk of a map: the argument tuples of its items (``args`` is then empty).
        self.items = items
        # The pickled call, for backends that cross a process boundary.
        self.payload: bytes | None = None
        self.id = next(_ids)

    def describe(self) -> str:
        """How error messages name this task: 'mod.f(3)' or 'a chunk of 40 items of mod.f'."""
        if self.items is not None:
            return f"a chunk of {len(self.items)} items of {self.function.label}"
        return self.function.describe(self.args, self.kwargs)


class ChunkResult:
    """What one chunk of a map resolves to: the values of its leading items that succeeded, then the
    exception of the first item that failed (its later items were not run)."""

    __slots__ = ("error", "seconds", "values")

    def __init__(self, values: list[Any], error: BaseException | None, seconds: float) -> None:
        self.values = values
        self.error = error
        self.seconds = seconds
