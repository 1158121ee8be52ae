"""The scheduler's decisions, without processes: events in (a task lost, a timer, a worker that
is busy or retiring), decisions out (what is retried, failed, queued, started, killed).

Workers here are plain objects with the fields the scheduler reads; the line of new tasks is a
deque behind a lock, as in the Inbox. Nothing starts a process or opens a pipe.
"""

from __future__ import annotations

import threading
from collections import deque
from typing import Any

import pytest

from parallelize import TaskTimeout, WorkerCrashed, _prefetch
from parallelize._channel import BOOTING, BUSY, IDLE, LOST, RETIRING, STOPPING, WorkerState
from parallelize._functions import handle_for
from parallelize._futures import Future
from parallelize._scheduler import Scheduler
from parallelize._task import CallTask, ChunkTask, Task, TaskOptions
from tests import workers as worker_functions


class Line:
    def __init__(self, *tasks: Task) -> None:
        self.lock = threading.Lock()
        self.tasks: deque[Task] = deque(tasks)
        self.restarting = False


class FakeWorker:
    def __init__(self, state: WorkerState = IDLE, task: Task | None = None) -> None:
        self.state = state
        self.task = task
        self.queued: dict[Task, tuple[int, float]] = {}
        self.queued_bytes = 0
        self.queued_seconds = 0.0
        self.sent_at = 0.0
        self.tasks_run = 0
        self.stale = False
        self.deadline: float | None = None
        self.kill_at: float | None = None

    def clear_queue(self) -> None:
        self.queued.clear()
        self.queued_bytes, self.queued_seconds = 0, 0.0


NO_OPTIONS = TaskOptions()


def call(
    options: TaskOptions = NO_OPTIONS, *, measured: float | None = None, function: Any = worker_functions.add
) -> CallTask:
    """A call of ``function``, whose time per call (shared by all its calls) is ``measured``."""
    handle = handle_for(function).snapshot()
    handle.seconds = measured
    task = CallTask(handle, (1, 2), {}, Future(), options)
    task.payload = b"x" * 100
    return task


def chunk(items: int, options: TaskOptions = NO_OPTIONS) -> ChunkTask:
    task = ChunkTask(
        handle_for(worker_functions.add).snapshot(), [(i, i) for i in range(items)], Future(), options
    )
    task.payload = b"x" * 100
    return task


def scheduler(
    *tasks: Task, size: int = 2, max_tasks: int | None = None, max_memory: int | None = None
) -> Scheduler:
    return Scheduler(Line(*tasks), size, max_tasks, max_memory)


def crashed(attempts: int) -> BaseException:
    return WorkerCrashed(f"crashed after {attempts}")


# -- the line -----------------------------------------------------------------------------------


def test_next_task_skips_cancelled_tasks_and_marks_the_next_running() -> None:
    first, second = call(), call()
    first.future.cancel()
    plan = scheduler(first, second)
    assert plan.next_task() is second
    assert second.future.running()
    assert plan.next_task() is None


def test_given_back_tasks_go_first_and_a_pending_restart_holds_new_ones() -> None:
    new, old = call(), call()
    plan = scheduler(new)
    plan.requeue(old)
    plan.source.restarting = True  # type: ignore[misc]
    assert plan.next_task() is old
    assert plan.next_task() is None  # submitted after restart(): waits for new workers
    plan.source.restarting = False  # type: ignore[misc]
    assert plan.next_task() is new


def test_a_dead_workers_queued_tasks_come_back_unstarted() -> None:
    a, b, done = call(), call(), call()
    for task in (a, b, done):
        task.attempts = 1
    done.future.set_running_or_notify_cancel()
    done.future.set_result(0)
    worker = FakeWorker(BUSY, call())
    worker.queued = {a: (10, 0.1), b: (10, 0.1), done: (10, 0.1)}
    plan = scheduler()
    plan.give_back(worker)
    assert list(plan.requeued) == [a, b]  # in their order, at the front; a settled one dropped
    assert a.attempts == b.attempts == 0  # never started: no attempt used up
    assert not worker.queued


# -- a task whose worker is gone -------------------------------------------------------------------


def test_a_lost_call_is_retried_while_its_budget_lasts_then_fails() -> None:
    task = call(TaskOptions(retries=1))
    task.future.set_running_or_notify_cancel()
    plan = scheduler()
    task.attempts = 1
    plan.lost(task, crashed, retryable=True)
    assert plan.next_task() is task  # retried
    task.attempts = 2
    plan.lost(task, crashed, retryable=True)
    assert not plan.requeued
    with pytest.raises(WorkerCrashed, match="crashed after 2"):
        task.future.result(timeout=0)


def test_a_lost_call_that_may_not_be_retried_fails_at_once() -> None:
    task = call(TaskOptions(retries=3))
    task.future.set_running_or_notify_cancel()
    task.attempts = 1
    scheduler().lost(task, lambda n: TaskTimeout("too slow"), retryable=False)
    with pytest.raises(TaskTimeout):
        task.future.result(timeout=0)


def test_a_lost_chunk_is_sent_again_item_by_item_and_only_the_running_item_fails() -> None:
    task = chunk(3)
    task.future.set_running_or_notify_cancel()
    task.attempts = 1
    plan = scheduler()
    plan.lost(task, crashed, retryable=True)
    # Which item was running is unknown: again, one item at a time, no attempt used up.
    assert plan.next_task() is task
    assert task.stream
    assert task.attempts == 0
    task.settle_item(10, None)  # the first item's result came back, then the worker died
    task.attempts = 1
    plan.lost(task, crashed, retryable=True)
    assert task.errors.keys() == {1}
    assert task.done == 2
    assert plan.next_task() is task  # the last item is sent again
    task.attempts = 1
    plan.lost(task, crashed, retryable=True)
    result = task.future.result(timeout=0)
    assert result.values == [10, None, None]
    assert set(result.errors) == {1, 2}


def test_a_cancelled_task_that_is_lost_stays_cancelled() -> None:
    task = call(TaskOptions(retries=5))
    task.future.cancel()
    plan = scheduler()
    plan.lost(task, crashed, retryable=True)
    assert not plan.requeued


# -- workers ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("states", "waiting", "expected"),
    [
        ([], 5, 2),  # one per waiting task, up to the size
        ([], 1, 1),
        ([BOOTING], 1, 0),  # a booting worker will take it
        ([BUSY, BUSY], 3, 0),  # full
        ([RETIRING, STOPPING], 3, 2),  # being replaced: replacements may start
        ([RETIRING, RETIRING, LOST], 3, 1),  # but at most one extra process per slot
        ([RETIRING, RETIRING, STOPPING, BUSY], 3, 0),
    ],
)
def test_workers_to_start_never_exceed_the_size_plus_those_being_replaced(
    states: list[WorkerState], waiting: int, expected: int
) -> None:
    plan = scheduler(*(call() for _ in range(waiting)))
    assert plan.workers_to_start([FakeWorker(state) for state in states]) == expected


def test_a_worker_retires_after_its_share_or_over_the_memory_limit_or_after_a_restart() -> None:
    plan = scheduler(max_tasks=2, max_memory=1000)
    worker = FakeWorker(BUSY)
    worker.tasks_run = 1
    assert not plan.retires(worker, lambda: 500)
    assert plan.retires(worker, lambda: 2000)
    worker.tasks_run = 2
    assert plan.retires(worker, lambda: None)
    fresh = FakeWorker(BUSY)
    fresh.stale = True
    assert scheduler().retires(fresh, lambda: None)


# -- timers -------------------------------------------------------------------------------------


def test_due_names_workers_past_their_grace_and_tasks_past_their_deadline() -> None:
    plan = scheduler(max_memory=1000)
    late, running, retiring = FakeWorker(BUSY, call()), FakeWorker(BUSY, call()), FakeWorker(RETIRING)
    late.deadline, running.deadline, retiring.kill_at = 10.0, 30.0, 15.0
    assert plan.next_moment([late, running, retiring]) == 0.0  # the first memory check is due
    kill, expired, weigh = plan.due([late, running, retiring], 20.0)
    assert kill == [retiring]
    assert expired == [late]
    assert weigh == [running]  # busy and not expired: its memory is read
    assert plan.next_moment([running]) == pytest.approx(20.25)  # the next memory check
    assert scheduler().next_moment([FakeWorker(IDLE)]) is None


# -- pipelining ---------------------------------------------------------------------------------


def _queue(worker: FakeWorker, task: Task, cost: float) -> None:
    worker.queued[task] = (100, cost)
    worker.queued_bytes += 100
    worker.queued_seconds += cost


def test_cheap_tasks_are_queued_round_robin_behind_busy_workers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_prefetch, "SECONDS", 1.0)
    tasks = [call(measured=0.001) for _ in range(4)]
    plan = scheduler(*tasks)
    a, b = FakeWorker(BUSY, call(measured=0.001)), FakeWorker(BUSY, call(measured=0.001))
    watched = FakeWorker(BUSY, call(TaskOptions(timeout=5.0), measured=0.001))
    sent: list[tuple[FakeWorker, Task]] = []

    def send(worker: FakeWorker, task: Task, cost: float) -> None:
        sent.append((worker, task))
        _queue(worker, task, cost)

    plan.feed([a, b, watched], send, 0.0)
    assert [t for _, t in sent] == tasks
    assert [w for w, _ in sent] == [a, b, a, b]  # round robin, and nothing behind a watched task
    assert all(t.future.running() for t in tasks)


def test_feeding_stops_at_a_task_that_is_not_measured_or_too_long(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_prefetch, "SECONDS", 0.01)
    unmeasured = call(function=worker_functions.square)
    cheap = call(measured=0.001, function=worker_functions.add)
    slow = call(measured=1.0, function=worker_functions.identity)
    busy = FakeWorker(BUSY, call(measured=0.001, function=worker_functions.add))
    sent: list[Any] = []
    scheduler(unmeasured, cheap).feed([busy], lambda w, t, c: sent.append(t), 0.0)
    assert sent == []  # the unmeasured one goes to the next idle worker, and nothing overtakes it
    scheduler(slow).feed([busy], lambda w, t, c: sent.append(t), 0.0)
    assert sent == []  # it would hold up what waits behind it for too long
    with_memory_limit = scheduler(cheap, max_memory=10**9)
    with_memory_limit.feed([busy], lambda w, t, c: sent.append(t), 0.0)
    assert sent == []  # a worker over the limit after a task must have nothing waiting in it


def test_nothing_is_queued_behind_a_task_that_runs_longer_than_measured(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A function measured as cheap whose call now blocks (waits for a lock, a gate, a socket): a
    # task queued behind it would wait there while another worker frees up or boots.
    monkeypatch.setattr(_prefetch, "SECONDS", 0.01)
    busy = FakeWorker(BUSY, call(measured=0.001))
    sent: list[Any] = []
    scheduler(call(measured=0.001)).feed([busy], lambda w, t, c: sent.append(t), 0.5)
    assert sent == []  # under way for 0.5 s, against 1 ms measured
    scheduler(call(measured=0.001)).feed([busy], lambda w, t, c: sent.append(t), 0.001)
    assert len(sent) == 1  # just started: as measured, there is room
