"""The threads rows: one pool shared by 1, 4 and 16 submitting threads (how cost grows with callers).

* threads_submit_T: the submit row from T threads at once: each submits its share of the no-ops one
  by one, then waits for its own; tasks/s over the whole, from the moment all threads are released
  to the moment the last has its results.
* threads_p99_T: the 99th percentile of the round trip when T threads each call
  ``submit(noop, x).result()`` one call at a time (a closed loop). That is the latency a caller sees
  while T - 1 others share the pool, the way a web server's request threads would use it: a p99
  over a batch submitted at once would measure the queue's length, not the pool.

Both in one warm pool per round, the thread counts in turn; the bare pipe has no threads to share.
mpire runs the one-thread rows only: its ``apply_async`` is not safe to call from several threads
at once (here, with 4 threads, its workers died on a malformed task, ``ValueError: not enough
values to unpack`` in mpire/worker.py, and the calls never returned).
"""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Callable
from typing import Any

import _peers
from _growth import growth
from _measure import WAIT, Session, opened
from _tasks import noop


def _together(count: int, work: Callable[[int], Any]) -> tuple[float, list[Any]]:
    """Run ``work(index)`` in ``count`` threads released at once: (seconds until the last is done,
    what each returned)."""
    start = threading.Barrier(count + 1)
    results: list[Any] = [None] * count
    failures: list[BaseException] = []

    def run(index: int) -> None:
        try:
            start.wait(WAIT)
            results[index] = work(index)
        except BaseException as exc:  # noqa: BLE001 - handed to the measuring thread
            failures.append(exc)

    threads = [
        threading.Thread(target=run, args=(i,), name=f"bench-caller-{i}", daemon=True) for i in range(count)
    ]
    for thread in threads:
        thread.start()
    start.wait(WAIT)
    started = time.perf_counter()
    for thread in threads:
        thread.join(WAIT * 2)
    seconds = time.perf_counter() - started
    if failures:
        raise failures[0]
    if any(thread.is_alive() for thread in threads):
        raise TimeoutError(f"{sum(t.is_alive() for t in threads)} of {count} calling threads did not finish")
    return seconds, results


def submit_rate(pool: _peers.Adapter, threads: int, total: int) -> float:
    share = total // threads

    def work(index: int) -> None:
        handles = [pool.submit(noop, i) for i in range(share)]
        for handle in handles:
            pool.wait(handle, WAIT)

    seconds, _ = _together(threads, work)
    return share * threads / seconds


def p99_round_trip(pool: _peers.Adapter, threads: int, total: int) -> float:
    share = max(1, total // threads)

    def work(index: int) -> list[float]:
        spent = []
        for i in range(share):
            started = time.perf_counter()
            pool.wait(pool.submit(noop, i), WAIT)
            spent.append(time.perf_counter() - started)
        return spent

    _, per_thread = _together(threads, work)
    trips = [t for spent in per_thread for t in spent]
    return statistics.quantiles(trips, n=100)[98] * 1e6


NOT_FROM_THREADS = {
    "mpire": "its apply_async is not safe from several threads at once (its workers die on a malformed "
    "task, ValueError in mpire/worker.py, and the calls never return); one thread only",
}


def measure_threads(column: str, s: Session, out: dict[str, float]) -> None:
    if column == "bare":
        return
    g = growth(s.plan)
    with opened(column, 300, s.notes) as pool:
        for threads in g.threads:
            if threads > 1 and column in NOT_FROM_THREADS:
                s.failures[f"threads_submit_{threads}"] = NOT_FROM_THREADS[column]
                s.failures[f"threads_p99_{threads}"] = NOT_FROM_THREADS[column]
                continue
            out[f"threads_submit_{threads}"] = submit_rate(pool, threads, g.thread_submits)
            out[f"threads_p99_{threads}"] = p99_round_trip(pool, threads, g.thread_trips)
