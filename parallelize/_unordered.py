"""``map(..., ordered=False)``: results as their chunks finish, like ``imap_unordered``.

Everything but the choice of the next chunk is the ordered map's (``_mapping.MapIterator``): the
same chunk sizes, read-ahead, per-item timeouts, crash handling and one outcome per item. Inside a
chunk the results keep their order; the chunks come in the order they finish, so a slow item
holds back only the rest of its own chunk, and a finished chunk's place is refilled at once.

Each chunk's future reports to ``_Arrivals`` when it is done, from whichever thread settles it
(the dispatcher, a thread-backend worker, or a canceller). The consumer sleeps on a bare
``_thread`` lock that an arrival releases: the settling side never blocks or takes a lock the
consumer could hold, so a Ctrl-C in the consumer (which may strike anywhere) can never leave the
dispatcher waiting for it (the failure ``_futures._FutureLock`` closes for a single future).
The arrivals hold no reference to the map, so a map dropped mid-way is still collected and its
chunks cancelled.
"""

from __future__ import annotations

import _thread
import concurrent.futures
import contextlib
import itertools
from collections import deque
from collections.abc import Callable
from typing import Any, TypeVar

from ._futures import Future
from ._mapping import MapIterator
from ._task import ChunkResult

R = TypeVar("R")


class _Arrivals:
    """The chunks that are done and not taken yet, in the order they finished."""

    __slots__ = ("done", "signal", "wakes")

    def __init__(self) -> None:
        self.done: deque[concurrent.futures.Future[Any]] = deque()
        # Locked while nothing has arrived since the consumer last woke; an arrival unlocks it.
        self.signal = _thread.allocate_lock()
        self.signal.acquire()
        # Async consumers' wake-ups (thread-safe), each called once by the next arrival.
        self.wakes: list[Callable[[], None]] = []

    def __call__(self, future: concurrent.futures.Future[Any]) -> None:
        self.done.append(future)
        # Already unlocked (RuntimeError) when the consumer has not taken the last wake-up yet.
        with contextlib.suppress(RuntimeError):
            self.signal.release()
        wakes, self.wakes = self.wakes, []
        for wake in wakes:
            wake()


class UnorderedMapIterator(MapIterator[R]):
    """A map whose chunks are taken as they finish (see the module docstring)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._arrivals = _Arrivals()

    def _refill(self) -> None:
        before = len(self._in_flight)
        super()._refill()  # only appends
        for future, _ in itertools.islice(self._in_flight, before, None):
            future.add_done_callback(self._arrivals)

    def _next_done(self) -> Future[ChunkResult]:
        arrivals = self._arrivals
        while True:
            while not arrivals.done:
                try:
                    arrivals.signal.acquire()
                except KeyboardInterrupt as exc:
                    self._interrupted(exc)
                    raise
            future = arrivals.done.popleft()
            for index, entry in enumerate(self._in_flight):
                if entry[0] is future:
                    del self._in_flight[index]
                    self._in_flight.appendleft(entry)
                    return future
            # A chunk of before close() (cancelled by it) that reported late: not ours any more.

    def _interrupted(self, exc: KeyboardInterrupt) -> None:
        # What ``Future.result`` does on Ctrl-C: stop the pool's work (the map closes after).
        for future, _ in self._in_flight:
            if isinstance(future, Future) and future._engine is not None:
                future._interrupted(exc)
                return

    def _watch(self, wake: Callable[[], None]) -> bool:
        arrivals = self._arrivals
        arrivals.wakes.append(wake)
        if arrivals.done:  # arrived before the wake-up was set: nothing to wait for
            with contextlib.suppress(ValueError):  # unless an arrival took it meanwhile
                arrivals.wakes.remove(wake)
            return False
        return True

    def close(self) -> None:
        super().close()
        self._arrivals.done.clear()
        self._arrivals.wakes = []
