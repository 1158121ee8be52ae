"""Lazy, ordered, chunked ``map`` over any backend.

The input is consumed as the output is, with a bounded number of chunks in flight (a few per
worker), so a generator of a million items is never held in memory, and leaving the loop early
(break, ``close()``, garbage collection) cancels what was still queued.

Without an explicit ``chunksize`` the chunk size adapts: the first chunks hold one item each, so
the first results come back at once; after that each chunk is sized to take about
``TARGET_SECONDS`` in the worker, judged from how long the items so far took. That amortises the
round trip for tiny items without starving workers when items are slow.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Iterable, Iterator
from typing import Any

from ._backends import Backend, submit_chunk
from ._futures import Future
from ._serialize import FunctionHandle
from ._task import ChunkResult

TARGET_SECONDS = 0.01
MAX_CHUNK = 4096
CHUNKS_PER_WORKER = 2


class ChunkSizer:
    """Chooses the next chunk size from the measured time per item."""

    def __init__(self, fixed: int | None) -> None:
        if fixed is not None and fixed < 1:
            raise ValueError(f"chunksize must be at least 1, got {fixed}")
        self._fixed = fixed
        self._items = 0
        self._seconds = 0.0
        self._size = 1

    def next_size(self) -> int:
        return self._fixed or self._size

    def observe(self, items: int, seconds: float) -> None:
        if self._fixed or items == 0:
            return
        self._items += items
        self._seconds += seconds
        per_item = self._seconds / self._items
        wanted = MAX_CHUNK if per_item <= 0 else int(TARGET_SECONDS / per_item)
        # Grow at most eightfold per chunk: one lucky fast chunk must not make the next one huge.
        self._size = max(1, min(wanted, self._size * 8, MAX_CHUNK))


def map_items(
    backend: Backend,
    handle: FunctionHandle,
    arguments: Iterator[tuple[Any, ...]],
    chunksize: int | None = None,
) -> Iterator[Any]:
    """Yield ``handle``'s result for each argument tuple, in order."""
    sizer = ChunkSizer(chunksize)
    limit = max(2, CHUNKS_PER_WORKER * backend._capacity())
    in_flight: deque[Future[ChunkResult]] = deque()
    source_error: BaseException | None = None

    def refill() -> None:
        nonlocal source_error
        while source_error is None and len(in_flight) < limit:
            items: list[tuple[Any, ...]] = []
            try:
                items.extend(itertools.islice(arguments, sizer.next_size()))
            except Exception as exc:  # noqa: BLE001 - raised at its position, after earlier results
                source_error = exc
            if items:
                in_flight.append(submit_chunk(backend, handle, items))
            if not items or source_error is not None:
                return

    try:
        refill()
        while in_flight:
            chunk = in_flight.popleft().result()
            sizer.observe(len(chunk.values) + (chunk.error is not None), chunk.seconds)
            refill()
            yield from chunk.values
            if chunk.error is not None:
                raise chunk.error
        if source_error is not None:
            raise source_error
    finally:
        for future in in_flight:
            future.cancel()


def zip_arguments(iterables: tuple[Iterable[Any], ...]) -> Iterator[tuple[Any, ...]]:
    if not iterables:
        raise TypeError("map() needs at least one iterable")
    return zip(*iterables, strict=False)  # like builtins.map: stop at the shortest
