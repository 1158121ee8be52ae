"""Engine faults found by attacking it (issue 9), each pinned by a test that failed before its fix.

* a user's object that raises SystemExit while it is pickled in the worker or rebuilt here costs
  its own task, never the worker or the dispatcher thread;
* a task that raises KeyboardInterrupt is that task's outcome, not a Ctrl-C of this process;
* cancel() racing a result never stops a worker that held no cancelled task;
* workers that cannot exit (a task left a non-daemon thread) do not pile up: a retiring worker
  that outlives its grace is killed, and shutdown stops every worker in one grace.
"""

from __future__ import annotations

import concurrent.futures
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from parallelize import Future, Pool, SerializationError, _channel

from . import core_tasks, engine_tasks, workers
from .conftest import all_processes, infrastructure_pids, pid_alive, wait_until

RESULT_TIMEOUT = 30
# cancel() racing completions: rounds of tasks, each cancelled as soon as it runs
ROUNDS = 5
PER_ROUND = 200

pytestmark = pytest.mark.timeout(60)


# -- SystemExit from a user's object, on either side ------------------------------------------------


def test_a_result_that_raises_system_exit_when_rebuilt_fails_only_its_task(pool: Pool) -> None:
    bad = pool.submit(engine_tasks.return_exit_when_rebuilt)
    with pytest.raises(SerializationError, match=r"could not be unpickled here: SystemExit: 7"):
        bad.result(timeout=RESULT_TIMEOUT)
    # The dispatcher thread survived: the pool goes on serving.
    assert pool.submit(workers.add, 2, 3).result(timeout=RESULT_TIMEOUT) == 5


def test_an_exception_that_raises_system_exit_when_rebuilt_gets_a_stand_in(pool: Pool) -> None:
    bad = pool.submit(engine_tasks.raise_error_that_exits_when_rebuilt)
    with pytest.raises(
        SerializationError, match=r"ErrorThatExitsWhenRebuilt: rebuilding me raises SystemExit"
    ):
        bad.result(timeout=RESULT_TIMEOUT)
    assert pool.submit(workers.add, 1, 1).result(timeout=RESULT_TIMEOUT) == 2


def test_a_result_that_raises_system_exit_when_pickled_keeps_the_worker(pool1: Pool) -> None:
    before = pool1.submit(workers.getpid).result(timeout=RESULT_TIMEOUT)
    bad = pool1.submit(engine_tasks.return_exit_when_pickled)
    with pytest.raises(SerializationError, match=r"could not be pickled in worker \d+: SystemExit: 8"):
        bad.result(timeout=RESULT_TIMEOUT)
    assert pool1.submit(workers.getpid).result(timeout=RESULT_TIMEOUT) == before


def test_a_map_whose_items_raise_system_exit_in_transit_fails_only_those_items(pool: Pool) -> None:
    """A value the worker cannot pickle fails its own item (the worker finds it); a chunk whose
    values cannot be rebuilt here fails as a whole, its error raised once in place of its items,
    as any chunk that cannot be unpickled does (see _mapping)."""
    outcomes: list[object] = []
    it = pool.map(engine_tasks.hostile_item, range(40), chunksize=8)
    while True:
        try:
            outcomes.append(next(it))
        except StopIteration:
            break
        except SerializationError as exc:
            outcomes.append(str(exc))
    expected: list[object] = [x * 2 for x in range(8)]
    expected += ["SystemExit: 7"]  # the chunk of items 8 to 15
    expected += [x * 2 for x in range(16, 26)] + ["SystemExit: 8"] + [x * 2 for x in range(27, 40)]
    assert len(outcomes) == len(expected)
    for got, want in zip(outcomes, expected, strict=True):
        if isinstance(want, str):
            assert isinstance(got, str)
            assert want in got
        else:
            assert got == want


# -- a task's own KeyboardInterrupt ---------------------------------------------------------------


@pytest.fixture
def release(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "release"
    try:
        yield path
    finally:
        path.touch()


def test_a_task_that_raises_keyboard_interrupt_does_not_interrupt_the_pool(
    pool: Pool, tmp_path: Path, release: Path
) -> None:
    started = tmp_path / "started"
    other = pool.submit(core_tasks.block_until, str(release), str(started))
    wait_until(started.exists, RESULT_TIMEOUT, "another caller's task to start")
    bad = pool.submit(engine_tasks.raise_keyboard_interrupt)
    with pytest.raises(KeyboardInterrupt, match="raised by the task itself"):
        bad.result(timeout=RESULT_TIMEOUT)
    with pytest.raises(KeyboardInterrupt, match="raised by the task itself"):
        raise bad.exception(timeout=RESULT_TIMEOUT)  # type: ignore[misc]
    # The next task is not cancelled, and the other caller's running task runs on to its end.
    assert pool.submit(workers.add, 2, 2).result(timeout=RESULT_TIMEOUT) == 4
    assert not other.cancelled()
    alive = set(pool.worker_pids())
    release.touch()
    assert other.result(timeout=RESULT_TIMEOUT) in alive  # it ran to its end in its first worker


# -- cancel() racing completions ------------------------------------------------------------------


def test_a_result_arriving_inside_cancel_stops_no_worker(pool: Pool, tmp_path: Path) -> None:
    """The race made certain: cancel() runs the future's done-callbacks between marking it
    cancelled and asking the dispatcher to stop its task; the callback here lets the task finish
    and waits until the dispatcher has settled it (which unties the task from the future). A
    cancel that then asked to stop "no task" stopped every idle worker; now it stops none."""
    directory = str(tmp_path)
    before = set(pool.map(core_tasks.rendezvous, [directory] * 2, [2] * 2, chunksize=1))
    assert len(before) == 2
    release, started = tmp_path / "release", tmp_path / "started"
    future = pool.submit(core_tasks.block_until, str(release), str(started))
    wait_until(started.exists, RESULT_TIMEOUT, "the task to start")

    def finish_first(f: object) -> None:
        release.touch()
        # settle() unties the task from its future when the answer is in: the dispatcher is done
        wait_until(lambda: future._task is None, RESULT_TIMEOUT, "the dispatcher to settle the task")

    future.add_done_callback(finish_first)
    assert future.cancel()
    again = tmp_path / "again"
    again.mkdir()
    after = set(pool.map(core_tasks.rendezvous, [str(again)] * 2, [2] * 2, chunksize=1))
    assert after == before


def test_cancels_racing_completions_stop_only_workers_that_held_a_cancelled_task(pool: Pool) -> None:
    """Cancels land on running tasks just as their results arrive. A cancel that wins over a
    running task costs its worker (stopped and replaced); one that loses costs nothing. The
    canceller waits for each future to be running (or done) first, so a cancel that wins stopped
    at most one worker: the pool may start at most one new worker per such win beyond its own
    two, and every future that was not cancelled has its own result. (The old cancel() could read
    the task after the result had untied it, and then stopped every idle worker.)"""
    won = 0
    seen: set[int] = set()

    def cancel_each(futures: list[Future[tuple[int, int]]], done: threading.Event) -> None:
        nonlocal won
        for future in futures:
            while not (future.running() or future.done()):
                time.sleep(0)  # yield the GIL; the dispatcher marks it running soon
            if future.cancel():
                won += 1
        done.set()

    if True:
        for round_ in range(ROUNDS):
            futures = [pool.submit(engine_tasks.pid_of, round_ * 1000 + i) for i in range(PER_ROUND)]
            done = threading.Event()
            canceller = threading.Thread(target=cancel_each, args=(futures, done))
            canceller.start()
            for i, future in enumerate(futures):
                try:
                    x, pid = future.result(timeout=RESULT_TIMEOUT)
                except concurrent.futures.CancelledError:
                    continue
                assert x == round_ * 1000 + i
                seen.add(pid)
            assert done.wait(RESULT_TIMEOUT)
            canceller.join(RESULT_TIMEOUT)
            seen.update(pool.worker_pids())
    assert len(seen) <= pool.workers + won, (len(seen), won)
    assert pool.submit(workers.add, 3, 4).result(timeout=RESULT_TIMEOUT) == 7


# -- workers that cannot exit -----------------------------------------------------------------------

# Tasks on a 2-worker pool with max_tasks_per_worker=1, each leaving a non-daemon thread behind:
# enough for more retired workers than the pool may hold beside its own.
STUCK_TASKS = 6
# A bound that catches only a hang: shutdown took one STOP_GRACE per stuck worker (6 x 5 s).
SHUTDOWN_BOUND = 4 * _channel.STOP_GRACE


def _live_workers() -> set[int]:
    """Worker processes alive now: children of this process or of the forkserver (from /proc)."""
    parents = {os.getpid(), *infrastructure_pids()}
    return {
        pid
        for pid, fields in all_processes()
        if int(fields[1]) in parents and pid not in infrastructure_pids() and pid_alive(pid)
    }


def test_workers_that_cannot_exit_are_killed_and_never_pile_up() -> None:
    pool = Pool(2, max_tasks_per_worker=1)
    try:
        most = 0
        done = threading.Event()

        def watch() -> None:
            nonlocal most
            while not done.is_set():
                most = max(most, len(_live_workers()))
                done.wait(0.01)

        watcher = threading.Thread(target=watch)
        watcher.start()
        try:
            futures = [pool.submit(engine_tasks.leave_a_thread, x) for x in range(STUCK_TASKS)]
            results = [f.result(timeout=RESULT_TIMEOUT) for f in futures]
        finally:
            done.set()
            watcher.join(RESULT_TIMEOUT)
        assert [x for x, _ in results] == list(range(STUCK_TASKS))
        assert len({pid for _, pid in results}) == STUCK_TASKS  # one task per worker, as asked
        # Its size, plus at most one worker being replaced per slot; never one per task run.
        assert most <= 2 * pool.workers, most
        assert len(_live_workers()) <= 2 * pool.workers
    finally:
        started = time.monotonic()
        pool.shutdown()
        took = time.monotonic() - started
    assert took < SHUTDOWN_BOUND, f"shutdown() took {took:.1f} s: it waited for one worker after another"
    assert not _live_workers()
