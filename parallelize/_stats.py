"""``PoolStats``: a snapshot of a pool's live counts (``pool.stats()``, ``parallelize.stats()``).

A dataclass, so this module is imported on the first ``stats()`` call only (dataclasses imports
inspect, which would add to every program's start-up); the counting itself is ``_tally``'s.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["PoolStats"]


@dataclass(frozen=True)
class PoolStats:
    """What a pool is doing now, and what it has done since ``since``.

    Counts are of tasks: a call is one task, and a map sends its items in chunks, each chunk one
    task (a chunk counts as failed when any of its items failed; ``progress=`` counts items). A
    future that is done is already counted in ``completed``, ``failed`` or ``cancelled``. The
    snapshot is read without stopping the pool, so a task moving on at that moment may show in
    two neighbouring counts, or in neither.
    """

    backend: str  # "process", "thread", "sync" or "dask"
    workers: int  # worker processes alive (threads, for the thread backend; dask workers)
    queued: int  # submitted, not started
    running: int  # started, not finished
    completed: int  # finished with a result
    failed: int  # finished with an exception (a chunk: with at least one failed item)
    cancelled: int  # cancelled before or while running (Ctrl-C, close(), shutdown)
    replaced: int  # workers that left while the pool was open: crashed, stopped, recycled
    since: float | None  # time.time() when the counting began; None: no pool yet


PoolStats.__module__ = "parallelize"
