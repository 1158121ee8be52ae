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
MAX_CHUNK = 16384
CHUNKS_PER_WORKER = 2


class ChunkSizer:
    """Chooses the next chunk size from the measured time per item.

    The time per item is a running average in which each older chunk counts half as much as the
    one after it: a first chunk that paid for a slow import in the worker (seconds, for one item)
    is forgotten within a few chunks instead of holding the size down for thousands of items,
    and a map whose items turn slow shrinks its chunks as soon as that shows.
    """

    def __init__(self, fixed: int | None) -> None:
        if fixed is not None and (isinstance(fixed, bool) or not isinstance(fixed, int) or fixed < 1):
            raise ValueError(f"chunksize must be at least 1 (an int), got {fixed!r}")
        self._fixed = fixed
        self._items = 0.0
        self._seconds = 0.0
        self._size = 1

    def next_size(self) -> int:
        return self._fixed or self._size

    def observe(self, items: int, seconds: float) -> None:
        if self._fixed or items == 0:
            return
        self._items = self._items / 2 + items
        self._seconds = self._seconds / 2 + seconds
        per_item = self._seconds / self._items
        wanted = MAX_CHUNK if per_item <= 0 else int(TARGET_SECONDS / per_item)
        # Grow at most eightfold per chunk: one lucky fast chunk must not make the next one huge.
        self._size = max(1, min(wanted, self._size * 8, MAX_CHUNK))


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
