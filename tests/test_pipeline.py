"""Pipelining: small tasks queued in a busy worker's pipe (see _scheduler.Scheduler.feed).

A queued task has not started, so it must behave exactly like one still in the pool's queue: a
cancelled one never runs, and one whose worker dies or is stopped runs elsewhere, once, without
using up its retries. Tests hold the running task back until the queued ones are in place (their
futures say "running" only once they are written to the worker), and raise the prefetch budget so
a loaded machine's slow round trips cannot keep tasks from being queued.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Iterator
from pathlib import Path

import pytest

from parallelize import Future, Pool, WorkerCrashed, _prefetch
from parallelize import _protocol as wire
from parallelize._channel import start_worker
from parallelize._encode import encode_call
from parallelize._functions import handle_for
from parallelize._serialize import loads
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


def _fence(pool: Pool, log: Path, values: list[int]) -> list[Future[int]]:
    """Queue tasks one after another behind the held one, each waited for until written.

    ``cancel()`` only asks the dispatcher to send a SKIP. The dispatcher takes stops before new
    work on each turn, so a task submitted after the cancel and seen written to the worker was
    written after the SKIP, unless the stop came in during the turn that wrote it; the second
    task closes that gap. The worker reads everything in its pipe before choosing its next task.
    """
    fences = []
    for value in values:
        fences.append(pool.submit(pt.step, str(log), value))
        wait_until(fences[-1].running, 30, "the fence task to be queued in the worker")
    return fences


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
    fences = _fence(pool1, log, [3, 4])
    release.touch()
    assert first.result(timeout=30) == 0
    assert [f.result(timeout=30) for f in [kept, *fences]] == [2, 3, 4]
    assert pool1.submit(pt.step, str(log), 5).result(timeout=30) == 5
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


def test_worker_reads_ahead_skips_and_names_the_next_task(start_method: str, tmp_path: Path) -> None:
    # The worker's side of the protocol, spoken directly to a real worker process: a batch of
    # three tasks and a SKIP for the middle one wait in its pipe while it runs a first task.
    log, release = tmp_path / "log", tmp_path / "release"
    worker = start_worker(multiprocessing.get_context(start_method), 1, None)
    replies: list[tuple[int, int, int]] = []
    values: dict[int, object] = {}

    def read_until(count: int) -> None:
        while len(replies) < count:
            for message in worker.reader.read():
                kind, task_id, _, next_id, payload = wire.unpack(message)
                replies.append((kind, task_id, next_id))
                if kind == wire.RESULT:
                    values[task_id] = loads(payload)

    def run(task_id: int, *args: object) -> bytes:
        return wire.pack(wire.RUN, task_id, encode_call(handle_for(pt.step), args, {}))

    try:
        read_until(1)
        assert replies == [(wire.READY, 0, 0)]
        worker.tasks.send_bytes(run(1, str(log), 1, str(release)))
        wait_until(lambda: log.exists() and pt.runs(str(log)) == [1], 30, "the first task to start")
        worker.tasks.send_bytes(
            wire.pack_batch([run(2, str(log), 2), run(3, str(log), 3), run(4, str(log), 4)])
        )
        worker.tasks.send_bytes(wire.pack(wire.SKIP, 3))
        release.touch()
        read_until(5)
        assert replies[1:] == [
            (wire.SKIPPED, 3, 0),
            (wire.RESULT, 1, 2),  # done with 1, starting 2
            (wire.RESULT, 2, 4),  # 3 was skipped
            (wire.RESULT, 4, 0),  # nothing left: idle
        ]
        assert values == {1: 1, 2: 2, 4: 4}
        assert pt.runs(str(log)) == [1, 2, 4]
    finally:
        worker.tasks.send_bytes(wire.pack(wire.STOP))
        worker.process.join(30)
        assert worker.process.exitcode == 0
        worker.close()
