"""The dispatcher's decisions, without I/O: which task goes next, what waits behind a busy worker,
what becomes of a task whose worker is gone, how many workers to start, when a worker retires,
and which timers are due.

::

    Inbox.tasks (callers) --+                       +--> a task for an idle worker
                            +--> next_task() -------+--> tasks queued behind busy ones (feed)
    requeued (given back) --+                       +--> workers_to_start()

    events from the loop: lost(task, error) -> retry, re-send the rest of a chunk item by item,
    or settle the future with the error; give_back(worker) -> its unstarted queued tasks go to
    the front of the line; due(workers, now) -> the workers to kill and the tasks past deadline.

Tiny tasks are pipelined: while a worker runs one, a few more of the same kind may already wait
in its pipe, as many as take about ``_prefetch.SECONDS`` by the measured time per call, so the
worker does not idle for a round trip between them. Slow tasks, tasks with a time limit or a
memory limit to watch, and per-item chunks are never queued: a task must not wait behind a slow
one while another worker is free.

The loop (``_dispatcher``) does the reading, writing, starting and reaping, and asks this module
what to do; nothing here touches a pipe or a process, so it is tested with plain objects for
workers (tests/test_scheduler.py). It settles futures (that runs no I/O of ours) when a task
fails for good. Only the dispatcher thread calls it, except where the Inbox lock says otherwise.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterable
from typing import Protocol, TypeVar

from . import _prefetch as prefetch
from . import _protocol as wire
from ._channel import ACTIVE, BOOTING, BUSY, WorkerState
from ._futures import cancel_running, settle
from ._task import ChunkTask, Task

# How often busy workers' memory is checked while a memory limit is set.
MEMORY_CHECK_INTERVAL = 0.25


class TaskSource(Protocol):
    """Where new tasks wait (the Inbox): a line guarded by a lock."""

    lock: threading.Lock
    tasks: deque[Task]
    restarting: bool


class WorkerView(Protocol):
    """What the scheduler reads of a worker (a ``WorkerHandle``; plain objects in tests)."""

    state: WorkerState
    task: Task | None
    queued: dict[Task, tuple[int, float]]
    queued_bytes: int
    queued_seconds: float
    sent_at: float
    tasks_run: int
    stale: bool
    deadline: float | None
    kill_at: float | None

    def clear_queue(self) -> None: ...


W = TypeVar("W", bound=WorkerView)


class Scheduler:
    def __init__(self, source: TaskSource, size: int, max_tasks: int | None, max_memory: int | None) -> None:
        self.source = source
        self.size = size
        self.max_tasks = max_tasks
        self.max_memory = max_memory
        # Tasks that ran (or were handed out) and wait for another worker: they go first.
        self.requeued: deque[Task] = deque()
        self.next_memory_check = 0.0

    # -- the line -----------------------------------------------------------------------------------

    def next_task(self) -> Task | None:
        """The next task that was not cancelled while it waited; marks its future running."""
        while True:
            if self.requeued:
                return self.requeued.popleft()
            source = self.source
            with source.lock:
                # A restart() not acted on yet: what was submitted after it must wait for the
                # next round, which retires the workers first.
                if not source.tasks or source.restarting:
                    return None
                task = source.tasks.popleft()
            if task.future.set_running_or_notify_cancel():
                return task

    def peek_task(self) -> Task | None:
        """The task ``next_task`` would hand out, left where it is (and its future pending)."""
        if self.requeued:
            return self.requeued[0]
        source = self.source
        with source.lock:
            tasks = source.tasks
            if source.restarting:
                return None  # as in next_task
            while tasks and tasks[0].future.cancelled():
                tasks.popleft().future.set_running_or_notify_cancel()  # tells its waiters
            return tasks[0] if tasks else None

    def backlog(self) -> int:
        with self.source.lock:
            waiting = len(self.source.tasks)
        return waiting + len(self.requeued)

    def requeue(self, task: Task) -> None:
        """``task`` never reached its worker: it goes first."""
        self.requeued.appendleft(task)

    def give_back(self, worker: WorkerView) -> None:
        """A stopped or dead worker's queued tasks never started: back to the front of the line,
        without using up an attempt."""
        for task in reversed(list(worker.queued)):
            if not task.future.done():
                task.attempts -= 1
                self.requeued.appendleft(task)
        worker.clear_queue()

    def fail_next(self, error: Callable[[Task], BaseException]) -> None:
        """Fail the next task with ``error(task)``: what a worker that cannot start, or dies
        before READY, costs (one task, never the pool)."""
        task = self.next_task()
        if task is not None:
            settle(task.future, error=error(task))

    def abandon(self, workers: Iterable[WorkerView], error: Callable[[Task], BaseException]) -> None:
        """The dispatcher failed: every task it holds fails with ``error(task)``."""
        source = self.source
        with source.lock:
            tasks = list(source.tasks)
            source.tasks.clear()
        tasks += self.requeued
        for worker in workers:
            tasks += [worker.task] if worker.task is not None else []
            tasks += worker.queued
        for task in tasks:
            settle(task.future, error=error(task))

    def stops(
        self, stops: list[Task], stop_below: int, workers: Iterable[W]
    ) -> tuple[list[W], list[tuple[W, Task]]]:
        """Cancellations, and Ctrl-C: every task made before it (``id < stop_below``; 0 for no
        Ctrl-C) is cancelled, newer ones are left alone. Returns the workers whose running task
        must be stopped (terminated) and the queued tasks to SKIP; given-back tasks are dropped
        here. A stopped worker's queued tasks go back to the line (``give_back``), where the
        cancelled ones are skipped."""
        every = list(workers)
        stop: list[W] = []
        skip: list[tuple[W, Task]] = []
        stops = list(stops)
        if stop_below:
            for task in [t for t in self.requeued if t.id < stop_below]:
                cancel_running(task.future)
                self.requeued.remove(task)
            for worker in every:
                older = [t for t in worker.queued if t.id < stop_below]
                stops += older
                for task in older:
                    cancel_running(task.future)
                if worker.task is not None and worker.task.id < stop_below:
                    cancel_running(worker.task.future)
                    stop.append(worker)
        for task in stops:
            if task in self.requeued:
                self.requeued.remove(task)
            for worker in every:
                if worker.task is task and worker not in stop:
                    stop.append(worker)
                elif task in worker.queued and worker not in stop:
                    skip.append((worker, task))  # it stays queued until the worker answers
        return stop, skip

    # -- workers ------------------------------------------------------------------------------------

    def workers_to_start(self, workers: Iterable[WorkerView]) -> int:
        """One per waiting task not already covered by a booting worker, up to the pool's size.
        Beside its own size the pool holds at most one more process per slot: workers being
        replaced (retiring, stopped, lost) until they exit or their grace runs out."""
        every = list(workers)
        live = [w for w in every if w.state in ACTIVE]
        booting = sum(1 for w in live if w.state is BOOTING)
        room = min(self.size - len(live), 2 * self.size - len(every))
        return max(0, min(self.backlog() - booting, room))

    def retires(self, worker: WorkerView, resident: Callable[[], int | None]) -> bool:
        """After its work: has the worker done its share, grown too big, or outlived a restart()?"""
        return (
            worker.stale
            or (self.max_tasks is not None and worker.tasks_run >= self.max_tasks)
            or (self.max_memory is not None and (resident() or 0) > self.max_memory)
        )

    # -- losing a task's worker ---------------------------------------------------------------------

    def lost(self, task: Task, error: Callable[[int], BaseException], *, retryable: bool) -> None:
        """The worker running ``task`` is gone: retry, re-send the rest of a chunk, or fail."""
        if task.future.done():
            return  # cancelled meanwhile
        chunk = task if isinstance(task, ChunkTask) else None
        if chunk is not None and not chunk.stream and chunk.left() > 1:
            # Which item was running is unknown: run the chunk again item by item to find out.
            chunk.stream = True
            task.attempts -= 1
            self.requeued.appendleft(task)
            return
        if retryable and task.attempts <= task.options.retries:
            self.requeued.appendleft(task)
            return
        failure = error(task.attempts)
        if chunk is None:
            settle(task.future, error=failure)
            return
        chunk.settle_item(None, failure)
        chunk.attempts = 0
        if chunk.left():
            self.requeued.appendleft(chunk)
        else:
            settle(chunk.future, chunk.result(0.0))

    # -- timers -------------------------------------------------------------------------------------

    def next_moment(self, workers: Iterable[WorkerView]) -> float | None:
        """The nearest deadline, kill time or memory check (monotonic seconds), if any."""
        moments = []
        busy = False
        for worker in workers:
            if worker.task is not None:
                busy = True
                if worker.deadline is not None:
                    moments.append(worker.deadline)
            if worker.kill_at is not None:
                moments.append(worker.kill_at)
        if self.max_memory is not None and busy:
            moments.append(self.next_memory_check)
        return min(moments) if moments else None

    def due(self, workers: Iterable[W], now: float) -> tuple[list[W], list[W], list[W]]:
        """(workers whose grace is over, workers whose task ran past its deadline, busy workers
        whose memory is to be checked now)."""
        kill: list[W] = []
        expired: list[W] = []
        weigh: list[W] = []
        check = self.max_memory is not None and now >= self.next_memory_check
        if check:
            self.next_memory_check = now + MEMORY_CHECK_INTERVAL
        for worker in workers:
            if worker.kill_at is not None and now >= worker.kill_at:
                kill.append(worker)
            if worker.task is not None:
                if worker.deadline is not None and now >= worker.deadline:
                    expired.append(worker)
                elif check:
                    weigh.append(worker)
        return kill, expired, weigh

    # -- pipelining ---------------------------------------------------------------------------------

    def feed(self, workers: Iterable[W], send: Callable[[W, Task, float], None], now: float) -> None:
        """Queue waiting tasks behind busy workers, round robin, while each stays short; ``send``
        writes one (deferred) and records it in the worker's ``queued``. ``now`` is the time of
        ``time.monotonic()``, against which a running task's ``sent_at`` tells its time so far."""
        if self.max_memory is not None:
            return  # a worker over the limit after a task must not have others waiting in it
        busy = [w for w in workers if self.may_queue(w)]
        while busy:
            task = self.peek_task()
            if task is None:
                return
            if not prefetch.queueable(task):
                return  # not measured yet, or one that must be watched alone: the next idle worker's
            cost = prefetch.cost(task)
            size = wire.HEADER_SIZE + (0 if task.payload is None else len(task.payload))
            worker = min(busy, key=lambda w: len(w.queued))
            assert worker.task is not None
            elapsed = now - worker.sent_at
            if not prefetch.room_for(
                worker.task, elapsed, worker.queued_bytes, worker.queued_seconds, cost, size
            ):
                busy.remove(worker)
                continue
            taken = self.next_task()
            if taken is not task:  # cancelled between the look and the take
                if taken is not None:
                    self.requeued.appendleft(taken)
                continue
            send(worker, task, cost)
            if not self.may_queue(worker):
                busy.remove(worker)

    def may_queue(self, worker: WorkerView) -> bool:
        """Whether tasks may wait in this worker's pipe: it runs a plain task, and will run more."""
        task = worker.task
        return (
            task is not None
            and worker.state is BUSY
            and not worker.stale
            and not (isinstance(task, ChunkTask) and task.stream)
            and task.options.timeout is None
            and len(worker.queued) < prefetch.TASKS
            and (self.max_tasks is None or worker.tasks_run < self.max_tasks)
        )
