"""One unit of work as the engine sees it, whatever the backend.

A Task is made in the caller's thread by the backend's ``encode`` (which pickles it when the backend
crosses a process boundary) and carried to a worker by the backend's ``enqueue``. The future it
fills is made by the public layer, so a throttle or a retry can hold a task without the engine's
help.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

from ._futures import Future
from ._serialize import FunctionHandle

_ids = itertools.count(1)


@dataclass(eq=False, slots=True)
class Task:
    function: FunctionHandle
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    future: Future[Any]
    # Set for one chunk of a map: the argument tuples of its items (``args`` is then empty).
    items: list[tuple[Any, ...]] | None = None
    # The pickled call, for backends that cross a process boundary.
    payload: bytes | None = None
    id: int = field(default_factory=lambda: next(_ids))

    def describe(self) -> str:
        """How error messages name this task: 'mod.f(3)' or 'a chunk of 40 items of mod.f'."""
        if self.items is not None:
            return f"a chunk of {len(self.items)} items of {self.function.label}"
        return self.function.describe(self.args, self.kwargs)


@dataclass(slots=True)
class ChunkResult:
    """What one chunk of a map resolves to: the values of its leading items that succeeded, then the
    exception of the first item that failed (its later items were not run)."""

    values: list[Any]
    error: BaseException | None
    seconds: float
