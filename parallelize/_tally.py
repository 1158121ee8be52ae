"""How many of a backend's tasks completed, failed and were cancelled: the counts behind
``PoolStats`` (``_stats``) that the backends' own structures cannot tell.

A backend hands its tally to each task's future when it accepts the task (``future._tally``), and
the future bumps it as it settles (``_futures.Future``): under the future's own lock, before any
thread waiting on it returns, so whoever sees a future done sees it counted. Any thread may settle
a future, so the counters have a lock of their own, held for an addition or a copy, never while
anything else is done. The thread and sync backends also count what they accepted and started,
from which their queued and running tasks follow.
"""

from __future__ import annotations

import threading
import time
import weakref
from typing import TYPE_CHECKING

from ._task import ChunkResult

if TYPE_CHECKING:
    from ._stats import PoolStats

__all__ = ["Tally"]


class Tally:
    __slots__ = (
        "__weakref__",
        "_lock",
        "cancelled",
        "completed",
        "failed",
        "replaced",
        "since",
        "started",
        "submitted",
    )

    def __init__(self) -> None:
        self._lock = threading.Lock()
        _every.add(self)
        self.since = time.time()
        # All guarded by _lock.
        self.submitted = 0  # thread backend: accepted
        self.started = 0  # thread and sync backends: begun running
        self.completed = 0
        self.failed = 0
        self.cancelled = 0
        self.replaced = 0  # dask: workers restarted or lost (the process backend's crew counts its own)

    def finished(self, result: object) -> None:
        """A future got its result (a chunk's result may hold failed items)."""
        failed = type(result) is ChunkResult and bool(result.errors)
        with self._lock:
            if failed:
                self.failed += 1
            else:
                self.completed += 1

    def add(self, counter: str) -> None:
        """One more of ``counter`` ("failed", "cancelled", "submitted", "started", "replaced")."""
        with self._lock:
            setattr(self, counter, getattr(self, counter) + 1)

    def snapshot(
        self,
        backend: str,
        *,
        workers: int,
        queued: int | None = None,
        running: int | None = None,
        replaced: int | None = None,
    ) -> PoolStats:
        """The stats, with the backend's own counts; ``queued`` and ``running`` left out are
        derived from what was accepted and started (the thread and sync backends)."""
        from ._stats import PoolStats

        with self._lock:
            submitted, started = self.submitted, self.started
            completed, failed, cancelled = self.completed, self.failed, self.cancelled
            lost = self.replaced
        if queued is None:
            queued = max(0, submitted - started - cancelled)  # a thread task is cancelled only unstarted
        if running is None:
            running = max(0, started - completed - failed)
        return PoolStats(
            backend=backend,
            workers=workers,
            queued=queued,
            running=running,
            completed=completed,
            failed=failed,
            cancelled=cancelled,
            replaced=lost if replaced is None else replaced,
            since=self.since,
        )


# Every tally, for the at-fork reset: a lock held by another thread at a fork stays held in the
# child, and every future settled there would wait for it.
_every: weakref.WeakSet[Tally] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    """Called by ``_fork``: a fresh lock for every tally (the counts stay as they were)."""
    for tally in list(_every):
        tally._lock = threading.Lock()


def empty(backend: str) -> PoolStats:
    """The stats of a default backend not created yet: nothing has run, nothing is counted."""
    from ._stats import PoolStats

    return PoolStats(backend, 0, 0, 0, 0, 0, 0, 0, None)
