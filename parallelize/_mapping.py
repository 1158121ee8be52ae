"""Lazy, ordered, chunked ``map`` over any backend.

The input is consumed as the output is, with a bounded number of chunks in flight (a few per
worker), so a generator of a million items is never held in memory, and leaving the loop early
(break, ``close()``, garbage collection) cancels what was still queued or running.

Every item has its own outcome, and no iterator over a map ends early. ``next()`` raises a failed
item's exception at that item's position and the next ``next()`` goes on with the following items
(unlike a generator, which a raise ends). The same holds for the iterator ``iter(m)`` returns, the
one ``for``, ``zip``, ``list()`` and ``itertools`` use: a ``for`` loop or ``list()`` stops at the
failure as usual, but that iterator, like the map, goes on from the next item when asked again.
Only the end of the input (or ``close()``) ends them, and then with StopIteration.

Without an explicit ``chunksize`` the chunk size adapts: the first chunks hold one item each, so
the first results come back at once; after that each chunk is sized to take about
``TARGET_SECONDS`` in the worker, judged from how long the recent items took. That amortises the
round trip for tiny items without starving workers when items are slow.

Per item, a map of tiny items costs the caller almost nothing in Python: a one-iterable map sends
its items bare (no 1-tuple each), the worker runs a chunk in one C loop, and a ``for`` loop or
``list()`` takes results through ``itertools.chain`` straight from the chunk's list::

    input --islice--> chunk list --pickle--> worker: list.extend(map(f, items)) --pickle-->
    chunk values --split at failed items--> runs --chain--> the consumer's loop

A failed item reaches the chain as a run of its own that raises its exception once (``_chunking.Raising``):
``itertools.chain`` drops its source of runs for good when the source raises, but not the run it
is taking from, so the source of runs never raises and the chain goes on after a failure.

``return_exceptions=True`` puts a failed item's exception in its place among the values instead
(one run per chunk). ``ordered=False`` takes chunks as they finish (``_unordered``), and ``async
for`` waits for the next chunk without blocking the event loop (``_amap``); both only change which
chunk ``_load`` takes next and how the wait for it is made.
"""

from __future__ import annotations

import concurrent.futures
import functools
import itertools
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any, Generic, NoReturn, TypeVar

from . import _interrupts as interrupts
from ._backends import Backend, submit_chunk
from ._chunking import (
    CHUNKS_PER_WORKER,
    ChunkSizer,
    OneIterable,
    Raising,
    handing_out,
    runs_of,
)
from ._functions import FunctionHandle
from ._futures import Future
from ._progress import Tracker, make_tracker, total_of
from ._task import NO_OPTIONS, ChunkResult, TaskOptions

if TYPE_CHECKING:
    from typing_extensions import Self  # typing.Self is 3.11+

    from ._unordered import Arrivals

R = TypeVar("R")


class MapIterator(Iterator[R], AsyncIterator[R], Generic[R]):
    """The iterator ``map`` returns: results in input order, one outcome per item.

    It is an async iterator too: ``async for`` inside a running event loop awaits each chunk
    without blocking the loop, and cancelling the consuming task closes the map.

    ``close()`` (or dropping the last reference) cancels the chunks still queued or running.
    ``iter()`` of it (what ``for`` and ``list()`` call) is not the map itself but a faster
    iterator at the same position: each result is handed out once, whether through it or
    through ``next()`` on the map, however the two are mixed. Both go on past a failed item.
    """

    # Executor.map's timeout: a monotonic deadline for the whole map, and the seconds it came from.
    _deadline: float | None = None
    _timeout: float | None = None

    def __init__(
        self,
        backend: Backend,
        handle: FunctionHandle,
        arguments: Iterator[Any],
        chunksize: int | None,
        options: TaskOptions,
        *,
        bare: bool = False,
        ordered: bool = True,
        return_exceptions: bool = False,
    ) -> None:
        for name, flag in (("ordered", ordered), ("return_exceptions", return_exceptions)):
            if not isinstance(flag, bool):
                raise TypeError(f"map()'s {name}= takes True or False, got {flag!r}")
        self._sizer = ChunkSizer(chunksize, handle.item_seconds)
        self._backend = backend
        self._handle = handle
        self._options = options
        # Argument tuples, or with ``bare`` (a one-iterable map) the single arguments themselves.
        # None once the input is used up or the map is closed.
        self._arguments: Iterator[Any] | None = arguments
        # A list given to a one-iterable map is cut into chunks by slicing, about four times
        # cheaper than islice: ``_taken`` items of it are read so far.
        self._list: list[Any] | None = None
        self._taken = 0
        self._bare = bare
        self._return_exceptions = return_exceptions
        # For ordered=False: the chunks that are done, in the order they finished.
        self._arrivals: Arrivals | None = None
        if not ordered:
            from ._unordered import Arrivals

            self._arrivals = Arrivals()
        self._workers = backend._capacity()
        self._limit = max(2, CHUNKS_PER_WORKER * self._workers)
        self._in_flight: deque[tuple[Future[ChunkResult], int]] = deque()
        # The output is handed out from one iterator at a time, ``_current`` over a run of results
        # with no failure among them, which lets go of each as it goes (``_handing_out``; emptying
        # ``_values`` ends it). ``next()`` and the iterator
        # that ``__iter__`` returns both take from this same object, so whichever is used, and
        # however they are mixed, each result is handed out once and in order. ``_pending`` holds
        # the rest of the chunk in hand: more runs (lists), and the exceptions of the failed items
        # between them, in order.
        self._values: list[Any] = []
        self._current: Iterator[Any] = iter(self._values)
        self._pending: deque[list[Any] | BaseException] = deque()
        self._source_error: BaseException | None = None
        # The input's length when known (see _counted), the items read from it so far, and the
        # progress= display (see _progress).
        self._total: int | None = None
        self._read = 0
        self._progress: Tracker | None = None

    def _counted(self, iterables: Iterable[Iterable[Any]], progress: object) -> MapIterator[R]:
        """Learn the length of the input ``iterables`` and, with ``progress=``, draw the count."""
        self._total = total_of(iterables)
        name = getattr(self._handle.function, "__qualname__", None) or self._handle.label
        self._progress = make_tracker(progress, self._total, name)
        return self

    def __length_hint__(self) -> int:
        """The items still to come, when the input's length is known (``operator.length_hint``)."""
        if self._total is None:
            return NotImplemented  # type: ignore[no-any-return]
        unread = 0 if self._arguments is None else max(0, self._total - self._read)
        in_flight = sum(count for _, count in self._in_flight)
        pending = sum(len(piece) if isinstance(piece, list) else 1 for piece in self._pending)
        # The run being handed out shrinks as it goes (``handing_out``); ``_values`` refers to it.
        current = len(self._values[0]) if self._values else 0
        return unread + in_flight + pending + current

    def __iter__(self) -> Iterator[R]:
        # ``for`` loops and ``list()`` come here. The chain takes each value straight from the
        # shared list iterator, in C, and calls back into Python once per run of values (once per
        # chunk when nothing failed) instead of once per item as ``__next__`` would.
        return itertools.chain.from_iterable(self._runs())

    def _runs(self) -> Iterator[Iterator[R]]:
        # Never raises: a generator that raises is finished, and the chain would end with it.
        while True:
            current = self._current
            yield current
            # The chain emptied ``current``. If next() moved on to another run meanwhile, that
            # run is not empty yet: hand it out as it is rather than skip past it.
            if current is not self._current:
                continue
            try:
                if not self._load():
                    return
            except StopIteration as exc:
                # Passed on as it is, an item's StopIteration would read as the end of its run and
                # the item would vanish; a generator turns it into a RuntimeError too (PEP 479).
                error = RuntimeError(
                    "an item of the map raised StopIteration, which would end this loop as if the "
                    "map were done; the item's exception is the cause of this one, and the map goes on"
                )
                error.__cause__ = exc
                yield Raising(error)
            except BaseException as exc:  # noqa: BLE001 - raised by the chain, at this item's place
                yield Raising(exc)

    def __next__(self) -> R:
        for value in self._current:
            return value  # type: ignore[no-any-return]
        while self._load():
            for value in self._current:
                return value  # type: ignore[no-any-return]
        raise StopIteration

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> R:
        for value in self._current:  # a value in hand: no need to suspend (see _amap)
            return value  # type: ignore[no-any-return]
        from ._amap import anext_of

        awaited: R = await anext_of(self)
        return awaited

    def _load(self) -> bool:
        """Make the next run of values current: False at the end; raises a failed item's error."""
        # The current run is used up: let go of its values before waiting for more (the caller
        # has them; a map must not keep results it already handed out).
        self._values = []
        self._current = iter(self._values)
        while True:
            if self._pending:
                return self._hand_out(self._pending.popleft())
            if not self._in_flight:
                self._refill_or_close()
                if not self._in_flight:
                    return self._end()
            try:
                chunk = self._wait_for_chunk()
            except KeyboardInterrupt:
                # Ctrl-C while waiting (the future has stopped the pool's work) or part-way
                # through taking a result: this map is over either way.
                self.close()
                raise
            except _OutOfTime:
                raise
            except BaseException as exc:  # noqa: BLE001 - the whole chunk failed, see _chunk_failed
                self._chunk_failed(exc)
                continue
            self._chunk_done(chunk)

    def _hand_out(self, piece: list[Any] | BaseException) -> bool:
        if isinstance(piece, BaseException):
            if self._progress is not None:
                self._progress.failed()
            raise piece
        self._values, self._current = handing_out(piece)
        return True

    def _wait_for_chunk(self) -> ChunkResult:
        """The next chunk's result (its own exception if it failed as a whole); _OutOfTime when the
        map's deadline (``Executor.map``'s ``timeout``) comes first."""
        head = self._next_done()
        if head is None:
            self._out_of_time()
        left = None if self._deadline is None else max(0.0, self._deadline - time.monotonic())
        try:
            return head.result(left)
        except concurrent.futures.TimeoutError:
            if head.done():
                raise  # the chunk's own outcome
            self._out_of_time()

    def _chunk_failed(self, exc: BaseException) -> None:
        """The whole chunk failed (its arguments could not be pickled or unpickled): its exception
        is raised once, in place of its items (or, with ``return_exceptions``, stands for each)."""
        size = self._in_flight.popleft()[1]
        self._refill_or_close()
        if self._progress is not None:
            self._progress.took(size)
        if not self._return_exceptions:
            if self._progress is not None:
                self._progress.failed()
            raise exc
        self._pending.append([exc] * size)

    def _chunk_done(self, chunk: ChunkResult) -> None:
        self._in_flight.popleft()
        self._sizer.observe(len(chunk.values), chunk.seconds)
        if self._sizer.per_item is not None:
            self._handle.item_seconds = self._sizer.per_item
        self._refill_or_close()
        if self._return_exceptions:  # each failed item's exception in its place
            for index, error in chunk.errors.items():
                chunk.values[index] = error
            self._pending.append(chunk.values)
        else:
            self._pending.extend(runs_of(chunk.values, chunk.errors))
        if self._progress is not None:
            self._progress.took(len(chunk.values))
            if self._arguments is None and not self._in_flight:
                self._progress.finish()  # N/N before the consumer gets the last results

    def _out_of_time(self) -> NoReturn:
        self.close()
        raise _OutOfTime(
            f"the map did not finish within its timeout of {self._timeout} s (Executor.map's "
            f"deadline for the whole map); its work still queued or running was cancelled"
        )

    def _next_done(self) -> Future[ChunkResult] | None:
        """The chunk ``_load`` takes next, moved to the front of ``_in_flight``: the first one
        (unordered: the first to finish, waited for here); None if the map's deadline came first."""
        progress = self._progress
        if self._arrivals is not None:
            draw = None if progress is None else functools.partial(progress.draw, self._in_flight)
            return self._arrivals.next_done(self._in_flight, self._deadline, draw)
        if progress is not None:
            progress.wait(self._in_flight, self._deadline)
        return self._in_flight[0][0]

    def _watch(self, wake: Callable[[], None]) -> bool:
        """Call ``wake`` (from any thread) once the chunk ``_next_done`` gives is done: True; or
        False, without calling it, if that chunk is done already (``_in_flight`` is not empty)."""
        if self._arrivals is not None:
            return self._arrivals.watch(wake)
        head = self._in_flight[0][0]
        if head.done():
            return False
        head.add_done_callback(lambda _: wake())
        return True

    def _refill_or_close(self) -> None:
        # Ctrl-C while submitting the next chunks: what this map had in flight stops, as it
        # would had Ctrl-C come a moment later, while waiting.
        try:
            self._refill()
        except KeyboardInterrupt:
            self.close()
            raise

    def _end(self) -> bool:
        error, self._source_error = self._source_error, None
        self._arguments = self._list = None
        if error is not None:
            if self._progress is not None:
                self._progress.end()
            raise error
        if self._progress is not None:
            self._progress.finish()
        return False

    def _refill(self) -> None:
        while (
            self._arguments is not None and self._source_error is None and len(self._in_flight) < self._limit
        ):
            items: list[Any] = []
            size = self._sizer.next_size(self._total, self._workers)
            try:
                if self._list is not None:
                    items = self._list[self._taken : self._taken + size]
                    self._taken += len(items)
                else:
                    items.extend(itertools.islice(self._arguments, size))
            except Exception as exc:  # noqa: BLE001 - raised at its position, after earlier results
                self._source_error = exc
            if not items:
                if self._source_error is None:
                    self._arguments = self._list = None
                return
            self._read += len(items)
            try:
                future = submit_chunk(self._backend, self._handle, items, self._options, bare=self._bare)
            except Exception as exc:  # noqa: BLE001 - e.g. SerializationError: raised in its place
                future = Future()
                future.set_exception(exc)
            self._in_flight.append((future, len(items)))
            if self._arrivals is not None:
                future.add_done_callback(self._arrivals)
            if self._source_error is not None:
                return

    def close(self) -> None:
        """Stop: cancel the chunks still queued or running, and read no more input."""
        in_flight, self._in_flight = self._in_flight, deque()
        self._arguments = self._list = None
        # Emptying the list also empties the iterator over it, which a loop over this map may be
        # part-way through: that loop ends at its next item too.
        self._values.clear()
        self._current = iter(self._values)
        self._pending.clear()
        for future, _ in in_flight:
            future.cancel()
        if self._progress is not None:
            self._progress.end()
        if self._arrivals is not None:
            self._arrivals.clear()

    def __del__(self) -> None:
        try:
            self.close()
        except KeyboardInterrupt:
            # A finaliser's exception is dropped: hand Ctrl-C back to the main thread instead.
            interrupts.raise_again_later(MapIterator.__del__.__code__)
        except Exception:  # noqa: BLE001 - never raise from a finaliser (e.g. at interpreter exit)
            pass


def map_items(
    backend: Backend,
    handle: FunctionHandle,
    arguments: Iterator[tuple[Any, ...]],
    chunksize: int | None = None,
    options: TaskOptions = NO_OPTIONS,
    ordered: bool = True,
    return_exceptions: bool = False,
) -> MapIterator[Any]:
    """Yield ``handle``'s result for each argument tuple, in order (or as chunks finish).

    The map takes one snapshot of the function, here at its start: a by-value function is pickled
    once, with its first chunk, and every chunk runs that same function (see ``_functions``).
    """
    flags = {"ordered": ordered, "return_exceptions": return_exceptions}
    handle = handle.snapshot()
    if not isinstance(arguments, OneIterable):
        return MapIterator(backend, handle, arguments, chunksize, options, **flags)
    mapping: MapIterator[Any] = MapIterator(
        backend, handle, arguments.items, chunksize, options, bare=True, **flags
    )
    if type(arguments.source) is list:
        # Read like list_iterator would (up to the list's length at each read), but by slices.
        mapping._list = arguments.source
    return mapping


MapIterator.__module__ = "parallelize"


class _OutOfTime(concurrent.futures.TimeoutError):
    """``Executor.map``'s deadline for the whole map passed (a TimeoutError, as it says)."""
