"""How a map cuts its work into chunks, and its output into runs a loop can take in C.

``ChunkSizer`` sizes each chunk from the measured time per item; ``zip_arguments`` makes a
map's argument tuples (a one-iterable map sends its items bare); ``runs_of`` turns a chunk's
outcome into runs of values with each failed item's exception between them, handed out by
``handing_out`` (which lets go of each value) and ``Raising``. ``_mapping.MapIterator`` is the map.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

__all__ = [
    "CHUNKS_PER_WORKER",
    "ChunkSizer",
    "OneIterable",
    "Raising",
    "handing_out",
    "runs_of",
    "zip_arguments",
]

TARGET_SECONDS = 0.01
# Each round trip costs the caller's process a fixed share of CPU (a task, a future, a pickle, two
# thread hand-offs), and on a small machine that CPU is taken from the workers: at 4096 items of
# ``x * 2`` per chunk the parent spent about 1.5x the CPU per item it spends at 16384. The read-
# ahead stays bounded: at most CHUNKS_PER_WORKER chunks per worker in flight, plus the one in hand.
# Four, not two: a map of a known length is cut into at least this many chunks per worker (see
# ``ChunkSizer.next_size``; multiprocessing.Pool cuts a map into four per worker too), so a short
# map is all in flight at once and each worker's next chunk already waits in its pipe; with two, a
# map of 20,000 tiny items ran at 0.7x multiprocessing.Pool, with four at 1.0x (alternating runs,
# /tmp/map20k.py in the issue 13 note).
MAX_CHUNK = 16384
CHUNKS_PER_WORKER = 4


class ChunkSizer:
    """Chooses the next chunk size from the measured time per item.

    The time per item is a running average in which each older chunk counts half as much as the
    one after it: a first chunk that paid for a slow import in the worker (seconds, for one item)
    is forgotten within a few chunks instead of holding the size down for thousands of items,
    and a map whose items turn slow shrinks its chunks as soon as that shows.

    A function never measured starts at one item per chunk and grows at most eightfold per
    result. One that an earlier map measured (``known``: its seconds per item then) starts one
    such step below the size that measure asks for: a short map of a cheap function is not
    over before its chunks have grown (a map of 20,000 tiny items took half its time ramping
    up), and if its items turn out slower this time, the first chunks overshoot by one step.
    """

    def __init__(self, fixed: int | None, known: float | None = None) -> None:
        if fixed is not None and (isinstance(fixed, bool) or not isinstance(fixed, int) or fixed < 1):
            raise ValueError(f"chunksize must be at least 1 (an int), got {fixed!r}")
        self._fixed = fixed
        self._items = 0.0
        self._seconds = 0.0
        self._size = 1 if known is None else max(1, _wanted(known) // _GROWTH)
        self.per_item: float | None = None  # the latest measure, kept for the function's next map

    def next_size(self, total: int | None = None, workers: int = 1) -> int:
        """The next chunk's size; with ``total`` (the input's length, when known) no more than
        one of the CHUNKS_PER_WORKER pieces of each worker's share, so that a short map is all in
        flight at once and its last chunks end close together instead of one worker finishing a
        big one alone."""
        if self._fixed:
            return self._fixed
        if total is None:
            return self._size
        return max(1, min(self._size, -(-total // (CHUNKS_PER_WORKER * max(1, workers)))))

    def observe(self, items: int, seconds: float) -> None:
        if self._fixed or items == 0:
            return
        self._items = self._items / 2 + items
        self._seconds = self._seconds / 2 + seconds
        self.per_item = self._seconds / self._items
        # Grow at most eightfold per chunk: one lucky fast chunk must not make the next one huge.
        self._size = max(1, min(_wanted(self.per_item), self._size * _GROWTH))


_GROWTH = 8


def _wanted(per_item: float) -> int:
    """The chunk size whose items take about TARGET_SECONDS at ``per_item`` seconds each."""
    return MAX_CHUNK if per_item <= 0 else max(1, min(MAX_CHUNK, int(TARGET_SECONDS / per_item)))


def handing_out(run: list[Any]) -> tuple[list[Any], Iterator[Any]]:
    """An iterator over ``run`` that lets go of each value as it hands it out (a map must not keep
    a result the caller may have dropped), and the list that ends it early when cleared. All in C:
    ``map`` pops the reversed run once per entry of a list of references to it."""
    run.reverse()
    references = [run] * len(run)
    return references, map(list.pop, references)


class Raising(Iterator[Any]):
    """A run that raises one exception when first asked, then is empty.

    ``itertools.chain`` keeps the run it takes from when that run raises, so the consumer's next
    request finds this one empty and the chain moves on to the runs after the failed item.
    """

    __slots__ = ("_error",)

    def __init__(self, error: BaseException) -> None:
        self._error: BaseException | None = error

    def __next__(self) -> Any:
        error, self._error = self._error, None
        if error is None:
            raise StopIteration
        try:
            raise error
        finally:
            del error  # no reference cycle through this frame's traceback


def runs_of(values: list[Any], errors: dict[int, BaseException]) -> list[list[Any] | BaseException]:
    """A chunk's output as runs of values with each failed item's exception between them."""
    if not errors:
        return [values] if values else []
    pieces: list[list[Any] | BaseException] = []
    start = 0
    for index in sorted(errors):
        if index > start:
            pieces.append(values[start:index])
        pieces.append(errors[index])
        start = index + 1
    if start < len(values):
        pieces.append(values[start:])
    return pieces


class OneIterable(Iterator[tuple[Any, ...]]):
    """The arguments of a one-iterable map: 1-tuples to whoever iterates them, but ``map_items``
    takes ``items`` directly and sends the items bare, with no tuple per item."""

    __slots__ = ("items", "source")

    def __init__(self, iterable: Iterable[Any]) -> None:
        self.items = iter(iterable)
        self.source = iterable

    def __next__(self) -> tuple[Any, ...]:
        return (next(self.items),)


def zip_arguments(iterables: tuple[Iterable[Any], ...]) -> Iterator[tuple[Any, ...]]:
    if not iterables:
        raise TypeError("map() needs at least one iterable")
    if len(iterables) == 1:
        return OneIterable(iterables[0])
    return zip(*iterables, strict=False)  # like builtins.map: stop at the shortest
