"""Live counts (issue 11, "Live counts"): ``pool.stats()`` and ``parallelize.stats()``.

Each count is checked against a workload whose outcome the test controls: calls that return or
raise, a task that hangs until its worker is killed, tasks held behind a busy worker and then
cancelled. A future that is done is already counted, so checks right after ``result()`` are exact;
where a task is only moving between two places (the inbox and a worker), the test waits for the
count with ``wait_until``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from pathlib import Path

import pytest

import parallelize
from parallelize import Pool, PoolStats, WorkerCrashed, _config, parallel
from tests import fault_tasks, workers
from tests.conftest import wait_until

WAIT = 30


def counts(stats: PoolStats) -> tuple[int, int, int, int, int, int]:
    return stats.queued, stats.running, stats.completed, stats.failed, stats.cancelled, stats.replaced


def test_a_new_pool_counts_nothing_and_starts_nothing(start_method: str) -> None:
    before = time.time()
    with Pool(2, start_method=start_method) as pool:
        stats = pool.stats()
        assert stats == PoolStats("process", 0, 0, 0, 0, 0, 0, 0, stats.since)
        assert stats.since is not None
        assert before <= stats.since <= time.time()
        assert pool.state is parallelize.PoolState.NEW


def test_completed_failed_running_and_a_replaced_worker(pool: Pool, tmp_path: Path) -> None:
    futures = [pool.submit(workers.square, i) for i in range(20)]
    assert [f.result(timeout=WAIT) for f in futures] == [i * i for i in range(20)]
    assert counts(pool.stats()) == (0, 0, 20, 0, 0, 0)

    error = pool.submit(workers.raise_value_error, "no").exception(timeout=WAIT)
    assert isinstance(error, ValueError)
    stats = pool.stats()
    assert counts(stats) == (0, 0, 20, 1, 0, 0)
    assert stats.workers == 2

    marker = tmp_path / "hang"
    hanging = pool.submit(fault_tasks.hang, str(marker))
    wait_until(marker.exists, WAIT, "the task to start")
    assert counts(pool.stats()) == (0, 1, 20, 1, 0, 0)

    os.kill(int(marker.read_text()), signal.SIGKILL)
    assert isinstance(hanging.exception(timeout=WAIT), WorkerCrashed)
    stats = pool.stats()
    assert counts(stats) == (0, 0, 20, 2, 0, 1)
    assert stats.workers == 1  # its replacement starts when work needs it
    assert pool.submit(workers.square, 3).result(timeout=WAIT) == 9
    assert counts(pool.stats()) == (0, 0, 21, 2, 0, 1)


def test_queued_then_cancelled(tmp_path: Path, start_method: str) -> None:
    with Pool(1, start_method=start_method) as pool:
        marker = tmp_path / "hang"
        hanging = pool.submit(fault_tasks.hang, str(marker))
        wait_until(marker.exists, WAIT, "the task to start")
        waiting = [pool.submit(workers.square, i) for i in range(3)]
        wait_until(lambda: pool.stats().queued == 3, WAIT, "three queued tasks")
        assert pool.stats().running == 1
        for future in waiting:
            assert future.cancel()
        assert pool.stats().cancelled == 3  # counted as cancel() returns
        wait_until(lambda: pool.stats().queued == 0, WAIT, "the cancelled tasks to leave the line")
        assert hanging.cancel()  # running: its worker is stopped
        assert hanging.cancelled()
        assert counts(pool.stats())[2:5] == (0, 0, 4)


def test_a_map_counts_its_chunks(pool: Pool) -> None:
    from tests import map_tasks

    results = pool.map(map_tasks.fail_every_7th, range(14), chunksize=7)
    values = []
    for _ in range(14):
        with contextlib.suppress(map_tasks.Every7thError):
            values.append(next(results))
    assert len(values) == 12
    # Two chunks of 7 items, each holding one failed item (3, 10): both count as failed.
    assert counts(pool.stats()) == (0, 0, 0, 2, 0, 0)


def test_the_default_pool(default_start_method: str) -> None:
    stats = parallelize.stats()
    assert stats == PoolStats("process", 0, 0, 0, 0, 0, 0, 0, None)  # before the first call
    futures = [workers.decorated_square(i) for i in range(10)]
    assert [f.result(timeout=WAIT) for f in futures] == [i * i for i in range(10)]
    stats = parallelize.stats()
    assert (stats.backend, stats.workers, stats.completed) == ("process", 2, 10)
    assert stats.since is not None
    parallelize.shutdown()
    assert parallelize.stats().since is None  # the next call builds a new pool, counted anew
    parallelize.configure(workers=2)  # stats() created no pool: configure() is still allowed


def test_stats_never_wait_for_the_dispatcher(pool: Pool) -> None:
    assert pool.submit(workers.square, 2).result(timeout=WAIT) == 4
    dispatcher = pool._backend._dispatcher
    assert dispatcher is not None
    got: list[PoolStats] = []
    # The locks a busy dispatcher holds: its own (whenever it is awake) and its inbox's.
    with dispatcher._lock, dispatcher.inbox.lock:
        poller = threading.Thread(target=lambda: got.append(pool.stats()))
        poller.start()
        poller.join(WAIT)
        assert not poller.is_alive(), "stats() waited for a lock the dispatcher holds"
    assert got[0].completed == 1


def test_the_thread_backend(tmp_path: Path) -> None:
    parallelize.configure(backend="thread", workers=1)
    started, release = threading.Event(), threading.Event()

    @parallel
    def gate() -> int:
        started.set()
        release.wait(WAIT)
        return 1

    first = gate()
    assert started.wait(WAIT)
    second = gate()
    stats = parallelize.stats()
    assert (stats.backend, stats.workers) == ("thread", 1)
    assert counts(stats) == (1, 1, 0, 0, 0, 0)
    release.set()
    assert first.result(timeout=WAIT) == second.result(timeout=WAIT) == 1
    with pytest.raises(ValueError, match="no"):
        parallel(workers.raise_value_error)("no").result(timeout=WAIT)
    assert counts(parallelize.stats()) == (0, 0, 2, 1, 0, 0)


def test_the_sync_backend() -> None:
    parallelize.configure(backend="sync")
    assert parallelize.stats().since is None  # chosen by the first call, not by stats()
    assert parallel(workers.square)(3).result(timeout=WAIT) == 9
    before = parallelize.stats()
    assert parallel(workers.square)(4).result(timeout=WAIT) == 16
    with pytest.raises(ValueError, match="no"):
        parallel(workers.raise_value_error)("no").result(timeout=WAIT)
    after = parallelize.stats()
    assert (after.backend, after.workers, after.queued, after.running) == ("sync", 0, 0, 0)
    # the shared sync backend counts from its creation: compare with before
    assert (after.completed - before.completed, after.failed - before.failed) == (1, 1)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork only")
def test_a_fork_while_counting_leaves_the_child_counting() -> None:
    parallelize.configure(backend="sync")
    square = parallel(workers.square)
    assert square(2).result(timeout=WAIT) == 4
    before = parallelize.stats().completed  # the shared sync backend counts from its creation
    tally = _config._sync_backend._tally
    with tally._lock:  # as if another thread were counting a settled future at the fork
        pid = os.fork()
        if pid == 0:  # the child: its futures must settle, and be counted, on a lock of its own
            ok = square(3).result(timeout=WAIT) == 9 and parallelize.stats().completed == before + 1
            os._exit(0 if ok else 1)
    statuses: list[int] = []

    def reaped() -> bool:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            statuses.append(status)
        return bool(done)

    try:
        wait_until(reaped, WAIT, "the forked child to settle its call and exit")
    finally:
        if not statuses:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(statuses[0]) == 0
