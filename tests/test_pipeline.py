"""Pipelining: small tasks queued in a busy worker's pipe (see _dispatcher._prefetch).

A queued task has not started, so it must behave exactly like one still in the pool's queue: a
cancelled one never runs, and one whose worker dies or is stopped runs elsewhere, once, without
using up its retries. Tests hold the running task back until the queued ones are in place (their
futures say "running" only once they are written to the worker), and raise the prefetch budget so
a loaded machine's slow round trips cannot keep tasks from being queued.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from parallelize import Future, Pool, WorkerCrashed, _prefetch
from tests import pipeline_tasks as pt
from tests.conftest import wait_until


@pytest.fixture
def pool1(start_method: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Pool]:
    """One worker, whose function's few warm-up calls make it count as cheap."""
    monkeypatch.setattr(_prefetch, "SECONDS", 60.0)
    with Pool(1, start_method=start_method) as pool:
        yield pool


def _warm(pool: Pool, log: Path) -> None:
    assert [pool.submit(pt.step, str(log), -1).result(timeout=30) for _ in range(3)] == [-1] * 3


def _queued_behind(
    pool: Pool, log: Path, release: Path, values: list[int], **head: bool
) -> tuple[Future[int], list[Future[int]]]:
    """A running task held until ``release`` exists, and tasks for ``values`` queued behind it."""
    first = pool.submit(pt.step, str(log), 0, str(release), **head)
    wait_until(lambda: 0 in pt.runs(str(log)), 30, "the first task to start")
    queued = [pool.submit(pt.step, str(log), value) for value in values]
    wait_until(lambda: all(f.running() for f in queued), 30, "the tasks to be queued in the worker")
    return first, queued


def test_many_small_tasks_keep_their_results_and_order(start_method: str, tmp_path: Path) -> None:
    log = tmp_path / "log"
    with Pool(2, start_method=start_method) as pool:
        futures = [pool.submit(pt.step, str(log), i) for i in range(3000)]
        assert [f.result(timeout=60) for f in futures] == list(range(3000))
    assert sorted(pt.runs(str(log))) == list(range(3000))


def test_a_cancelled_queued_task_never_runs_and_costs_no_worker(pool1: Pool, tmp_path: Path) -> None:
    log, release = tmp_path / "log", tmp_path / "release"
    _warm(pool1, log)
    pid = pool1.worker_pids()
    first, (doomed, kept) = _queued_behind(pool1, log, release, [1, 2])
    assert doomed.cancel()
    assert doomed.cancelled()
    release.touch()
    assert first.result(timeout=30) == 0
    assert kept.result(timeout=30) == 2
    assert pool1.submit(pt.step, str(log), 3).result(timeout=30) == 3
    assert 1 not in pt.runs(str(log))
    assert pool1.worker_pids() == pid  # dropped by the worker, not by stopping it


def test_queued_tasks_survive_their_worker_crashing(pool1: Pool, tmp_path: Path) -> None:
    log, release = tmp_path / "log", tmp_path / "release"
    _warm(pool1, log)
    first, queued = _queued_behind(pool1, log, release, [1, 2, 3], crash=True)
    release.touch()
    with pytest.raises(WorkerCrashed):
        first.result(timeout=30)
    assert [f.result(timeout=30) for f in queued] == [1, 2, 3]
    assert pt.runs(str(log))[-3:] == [1, 2, 3]  # each ran once, after the crash, in order


def test_queued_tasks_run_elsewhere_when_the_running_one_is_cancelled(pool1: Pool, tmp_path: Path) -> None:
    log, release = tmp_path / "log", tmp_path / "release"
    _warm(pool1, log)
    pid = pool1.worker_pids()
    first, queued = _queued_behind(pool1, log, release, [1, 2])
    assert first.cancel()  # stops the worker that runs it
    assert [f.result(timeout=30) for f in queued] == [1, 2]
    assert pool1.worker_pids() != pid
    assert pt.runs(str(log))[-2:] == [1, 2]


def test_queued_tasks_keep_their_retries(pool1: Pool, tmp_path: Path) -> None:
    # Taken back from a dead worker without having started, a task has not used an attempt: with
    # no retries allowed it still runs.
    log, release = tmp_path / "log", tmp_path / "release"
    _warm(pool1, log)
    first, queued = _queued_behind(pool1, log, release, [1], crash=True)
    release.touch()
    with pytest.raises(WorkerCrashed):
        first.result(timeout=30)
    assert queued[0].result(timeout=30) == 1


def test_slow_functions_are_not_queued_behind_a_running_task(
    start_method: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # With no budget for waiting work, the second task waits in the pool's own queue, pending.
    monkeypatch.setattr(_prefetch, "SECONDS", 0.0)
    log, release = tmp_path / "log", tmp_path / "release"
    with Pool(1, start_method=start_method) as pool:
        _warm(pool, log)
        first = pool.submit(pt.step, str(log), 0, str(release))
        wait_until(lambda: 0 in pt.runs(str(log)), 30, "the first task to start")
        second = pool.submit(pt.step, str(log), 1)
        third = pool.submit(pt.step, str(log), 2)
        assert not second.running()
        assert second.cancel()  # pending: an ordinary cancel
        release.touch()
        assert first.result(timeout=30) == 0
        assert third.result(timeout=30) == 2
    assert 1 not in pt.runs(str(log))
