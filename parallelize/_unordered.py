"""``map(..., ordered=False)``: results as their chunks finish, like ``imap_unordered``.

Everything but the choice of the next chunk is the ordered map's (``_mapping.MapIterator``): the
same chunk sizes, read-ahead, per-item timeouts, crash handling and one outcome per item. Inside a
chunk the results keep their order; the chunks come in the order they finish, so a slow item
holds back only the rest of its own chunk, and a finished chunk's place is refilled at once.

Each chunk's future reports to the map's ``Arrivals`` when it is done, from whichever thread
settles it (the dispatcher, a thread-backend worker, or a canceller). The consumer sleeps on a
bare ``_thread`` lock that an arrival releases: the settling side never blocks or takes a lock
the consumer could hold, so a Ctrl-C in the consumer (which may strike anywhere) can never leave
the dispatcher waiting for it (the failure ``_futures._FutureLock`` closes for one future). The
arrivals hold no reference to the map, so a map dropped mid-way is still collected and its chunks
cancelled.
"""

from __future__ import annotations

import _thread
import concurrent.futures
import contextlib
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from ._futures import Future
from ._task import ChunkResult

InFlight = deque[tuple[Future[ChunkResult], int]]
_SLICE = 0.1  # seconds: a progress bar's redraw interval, and a pending Ctrl-C's longest wait


class Arrivals:
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
        """A chunk's done-callback."""
        self.done.append(future)
        # Already unlocked (RuntimeError) when the consumer has not taken the last wake-up yet.
        with contextlib.suppress(RuntimeError):
            self.signal.release()
        wakes, self.wakes = self.wakes, []
        for wake in wakes:
            wake()

    def next_done(
        self, in_flight: InFlight, deadline: float | None = None, draw: Callable[[], None] | None = None
    ) -> Future[ChunkResult] | None:
        """Wait for a chunk of ``in_flight`` to finish; move it to the front and return it. None
        when ``deadline`` (a ``time.monotonic()`` moment) passes first. The wait is in slices, so
        a progress bar is redrawn (``draw``) and a Ctrl-C whose handler is pending is raised."""
        while True:
            while not self.done:
                step = _SLICE if deadline is None else min(_SLICE, deadline - time.monotonic())
                if step <= 0:
                    return None
                try:
                    self.signal.acquire(True, step)
                except KeyboardInterrupt as exc:
                    _interrupted(in_flight, exc)
                    raise
                if draw is not None:
                    draw()
            future = self.done.popleft()
            for index, entry in enumerate(in_flight):
                if entry[0] is future:
                    del in_flight[index]
                    in_flight.appendleft(entry)
                    return entry[0]
            # A chunk of before close() (cancelled by it) that reported late: not ours any more.

    def watch(self, wake: Callable[[], None]) -> bool:
        """``MapIterator._watch`` for an unordered map: False if a chunk is done already."""
        self.wakes.append(wake)
        if self.done:  # arrived before the wake-up was set: nothing to wait for
            with contextlib.suppress(ValueError):  # unless an arrival took it meanwhile
                self.wakes.remove(wake)
            return False
        return True

    def clear(self) -> None:
        self.done.clear()
        self.wakes = []


def _interrupted(in_flight: InFlight, exc: KeyboardInterrupt) -> None:
    # What ``Future.result`` does on Ctrl-C: stop the pool's work (the map closes after).
    for future, _ in in_flight:
        if isinstance(future, Future) and future._engine is not None:
            future._interrupted(exc)
            return
