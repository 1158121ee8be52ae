"""The dispatcher: one thread per pool that owns the workers and moves tasks to them.

::

    caller threads                         dispatcher thread                      workers
    --------------                         -----------------                      -------
    Pool.submit: pickle args,     Inbox    poll() on: wake pipe,        pipes     run one task,
    make Future, put Task ------> deque -> every worker's result pipe, <------->  reply on own
    and poke the wake pipe                 every worker's sentinel                pipe
                                                 |   ^
                                          events v   | decisions
                                              Scheduler (_scheduler: no I/O)

This module is the I/O side: it sleeps in one ``poll()`` (``_poller``), reads frames, writes
tasks, and reports what happened to the Scheduler, which decides which task goes where, what is
retried and what is due; what workers say and how they end is read by ``_replies``, the
processes themselves are a ``Crew`` (``_crew``), and each worker's lifecycle is one
``WorkerState`` (``_channel``). Its only timeout is the nearest deadline (a
task's time limit, a stopping worker's grace, a memory check). Because each worker has pipes of
its own, the dispatcher knows which task each worker holds, so every fault costs exactly one task:

* a worker dies: its task fails with WorkerCrashed (or is retried), a replacement starts on demand;
* a task runs past its timeout or is cancelled while running: its worker is terminated (SIGTERM,
  then SIGKILL after a grace) and replaced, and only that task fails;
* a map chunk loses its worker: the items already reported keep their results, the item that was
  running fails, and the rest of the chunk is sent again.

Tiny tasks are pipelined (``Scheduler.feed``): the worker names in each result the task it
starts next, so the dispatcher always knows which one is running; the queued ones have not
started, so a crash or a stop gives them back unharmed, and a cancelled one is dropped by a SKIP
message (see _protocol).

Workers start on demand, one per queued task up to the pool size, and take work only once they
say READY, so the first task runs as soon as the first worker has booted. Only this thread starts,
feeds, reaps and stops workers; callers touch nothing but the Inbox.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from multiprocessing.context import BaseContext

from . import _interrupts as interrupts
from . import _outcomes as outcomes
from ._channel import ACTIVE, RETIRING, WorkerHandle
from ._crew import RESULTS, WAKE, Crew, Tag
from ._futures import cancel_running
from ._inbox import Inbox
from ._initializer import Initializer
from ._poller import Poller
from ._replies import Replies
from ._scheduler import Scheduler
from ._task import Task

log = logging.getLogger("parallelize")


class Dispatcher:
    def __init__(
        self,
        context: BaseContext,
        size: int,
        initializer: Initializer | None,
        *,
        name: str,
        on_exit: Callable[[], None],
        on_broken: Callable[[BaseException], None] | None = None,
        max_tasks_per_worker: int | None = None,
        max_memory_per_worker: int | None = None,
    ) -> None:
        self.inbox = Inbox()
        self._on_exit_callback = on_exit
        self._on_broken = on_broken  # told of an internal failure, before the tasks fail with it
        self._size = size
        self._max_tasks = max_tasks_per_worker
        self._max_memory = max_memory_per_worker
        # Everything below is touched by the dispatcher thread only.
        self._poller: Poller[Tag] = Poller()
        self._poller.add(self.inbox.wake_reader, (WAKE, None))
        self._crew = Crew(context, initializer, self._poller)
        self._workers = self._crew.workers  # by pid
        self._idle = self._crew.idle
        self._plan = Scheduler(self.inbox, size, max_tasks_per_worker, max_memory_per_worker)
        self._replies = Replies(self._crew, self._plan, self._stop)
        # Guards the workers' state, _idle and the scheduler's line. The dispatcher thread holds it whenever
        # it is awake, so only send_now (a caller's thread) ever waits for it, and only briefly.
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    # -- called from other threads ------------------------------------------------------------------

    def start(self) -> None:
        self._thread.start()

    def join(self, timeout: float | None = None) -> None:
        if self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def send_now(self, task: Task) -> bool:
        """Give ``task`` straight to an idle worker, from the caller's thread, if that is fair.

        The round trip of a call is dominated by thread hand-offs; this saves the one from the
        caller to the dispatcher. It is allowed only while the dispatcher sleeps (``_lock`` is
        free: the dispatcher holds it whenever it is awake) and nothing older waits in the queue,
        so it never overtakes a task. The dispatcher then wakes for the result as usual; it is
        poked only when the task brings a deadline it must start counting.
        """
        if self._lock.locked():
            return False  # the dispatcher is awake (or this thread is the dispatcher): the inbox
        # ``with``, not acquire(blocking=False) and try: a KeyboardInterrupt can land between
        # those two, and a lock left held would stop the dispatcher for good. If the dispatcher
        # woke since the look above, this waits for it to sleep again, one round at most.
        with self._lock:
            if not self._idle or self._plan.requeued:
                return False
            with self.inbox.lock:
                if self.inbox.tasks or self.inbox.closing or self.inbox.restarting:
                    return False
            worker = self._idle[0]
            try:
                self._idle.popleft()
                if task.future.set_running_or_notify_cancel():
                    self._send(worker, task)
                else:
                    self._idle.appendleft(worker)
                watch = task.options.timeout is not None or self._max_memory is not None
                if worker.task is not task or watch:
                    self.inbox.poke()
            except BaseException:
                # Cut short at an unknown point by a Ctrl-C in this thread (its handler runs
                # between any two steps): the worker may hold part of a message, so it goes;
                # the task, whose caller never got its future, is cancelled.
                self._crew.void(worker, task)
                cancel_running(task.future)
                task.future.cancel()
                self.inbox.stop(task)
                raise
            return True

    def pids(self) -> list[int]:
        return self._crew.pids()

    def counts(self) -> tuple[int, int, int, int]:
        """(workers alive, tasks queued, tasks running, workers replaced), for ``stats()``.

        Read from another thread without ``_lock``: each piece is one atomic read under the GIL
        (a length, a copy of the workers), so a poll never waits for the dispatcher, and a task
        moving on meanwhile may be counted twice or not at all. Queued tasks are those in the
        inbox, those given back, and those waiting in a busy worker's pipe (not started)."""
        workers = list(self._workers.values())
        alive = sum(1 for w in workers if w.state in ACTIVE or w.state is RETIRING)
        running = sum(1 for w in workers if w.task is not None)
        queued = len(self.inbox.tasks) + len(self._plan.requeued) + sum(len(w.queued) for w in workers)
        return alive, queued, running, self._crew.replaced

    def abandon_after_fork(self) -> None:
        """In a forked child: let go of the parent's pipes; its workers are not ours to stop."""
        self.inbox.close_pipe()
        self._crew.abandon_after_fork()

    # -- the thread ---------------------------------------------------------------------------------

    def _run(self) -> None:
        interrupts.keep_off_this_thread()  # Ctrl-C is the main thread's (see _interrupts)
        # The dispatcher holds _lock whenever it is awake; see send_now.
        self._lock.acquire()
        try:
            self._loop()
        except BaseException as exc:
            # The one place an internal error of the dispatcher thread is caught. Logged once
            # here and not re-raised: PoolBroken carries it to every caller.
            log.exception("the dispatcher failed; failing every task it held")
            if self._on_broken is not None:
                self._on_broken(exc)
            self._fail_everything(exc)
        finally:
            self._crew.stop_all()
            self.inbox.close_pipe()
            self._lock.release()
            self._on_exit_callback()

    def _loop(self) -> None:
        while True:
            self._handle_stops()
            if self.inbox.take_restart():
                self._crew.retire_all()
            self._dispatch()
            if self._finished():
                return
            timeout = self._timeout()
            self._lock.release()
            try:
                ready = self._poller.wait(timeout)
            finally:
                self._lock.acquire()
            for what, worker in ready:
                if worker is None:
                    self.inbox.drain()
                elif self._workers.get(worker.pid) is not worker:
                    continue  # reaped earlier in this same batch
                elif what == RESULTS:
                    self._replies.on_readable(worker)
                else:
                    self._replies.on_exit(worker)
            self._on_timers()

    def _finished(self) -> bool:
        with self.inbox.lock:
            if not self.inbox.closing or self.inbox.tasks:
                return False
        # A worker with queued tasks is running one, so checking `task` covers them.
        return not self._plan.requeued and all(w.task is None for w in self._workers.values())

    # -- timers -------------------------------------------------------------------------------------

    def _timeout(self) -> float | None:
        moment = self._plan.next_moment(self._workers.values())
        return None if moment is None else max(0.0, moment - time.monotonic())

    def _on_timers(self) -> None:
        kill, expired, weigh = self._plan.due(list(self._workers.values()), time.monotonic())
        for worker in kill:
            worker.escalate()
        for worker in expired:
            assert worker.task is not None
            self._stop_running(worker, "timeout", outcomes.timed_out(worker.task, worker.pid))
        limit = self._max_memory or 0
        for worker in weigh:
            resident = worker.resident_bytes()
            if worker.task is not None and resident is not None and resident > limit:
                error = outcomes.over_memory(worker.task, worker.pid, limit, resident)
                self._stop_running(worker, "memory limit", error)

    def _stop_running(self, worker: WorkerHandle, reason: str, error: outcomes.ErrorFactory) -> None:
        task = worker.task
        assert task is not None
        self._stop(worker, reason)
        self._plan.lost(task, error, retryable=True)

    # -- cancellation and Ctrl-C --------------------------------------------------------------------

    def _handle_stops(self) -> None:
        if self.inbox.take_cancel_unstarted():
            # shutdown(cancel_futures=True): what waits in a worker's pipe has not started either.
            # Cancelling it asks for a stop (below), which for a queued task is a SKIP.
            for worker in list(self._workers.values()):
                for task in list(worker.queued):
                    task.future.cancel()
        stops, stop_below = self.inbox.take_stops()
        stop, skip = self._plan.stops(stops, stop_below, self._workers.values())
        for worker in stop:
            self._stop(worker, "cancelled")
        for worker, task in skip:
            worker.skip(task)

    # -- handing out work ---------------------------------------------------------------------------

    def _dispatch(self) -> None:
        while self._idle:
            task = self._plan.next_task()
            if task is None:
                break
            self._send(self._idle.popleft(), task)
        self._prefetch()
        for _ in range(self._plan.workers_to_start(self._workers.values())):
            try:
                self._crew.start()
            except Exception as exc:  # noqa: BLE001 - e.g. out of file descriptors or memory
                self._cannot_start(exc)
                break
            finally:
                interrupts.keep_off_this_thread()  # starting the resource tracker may have undone it

    def _cannot_start(self, exc: Exception) -> None:
        log.warning("could not start a worker: %s", exc)
        self._plan.fail_next(outcomes.no_worker(exc))

    def _prefetch(self) -> None:
        """Queue waiting tasks in busy workers' pipes (the scheduler chooses), one write each."""
        fed: set[WorkerHandle] = set()

        def send(worker: WorkerHandle, task: Task, cost: float) -> None:
            self._send(worker, task, queue=cost)
            fed.add(worker)

        try:
            self._plan.feed(self._workers.values(), send, time.monotonic())
        finally:
            for worker in fed:
                try:
                    worker.flush()
                except OSError:
                    # Gone. Its sentinel fires, and Replies.on_exit reads what it said last (which of
                    # its queued tasks it had started) before it gives the rest back.
                    worker.lose()

    def _send(self, worker: WorkerHandle, task: Task, *, queue: float | None = None) -> None:
        """Write ``task`` to ``worker``: to run now, or with ``queue`` (its expected seconds) to
        wait behind the task it runs."""
        kind, payload = task.message()
        try:
            written = worker.send(task, kind, payload, defer=queue is not None)
        except OSError:
            # The worker died before it got the task, so the task is safe to give to another one.
            # Its sentinel will fire and Replies.on_exit will clean up; nothing more is sent to it.
            worker.lose()
            self._plan.requeue(task)
            return
        if queue is not None:
            worker.queue(task, written, queue)
        else:
            worker.start(task)

    def _stop(self, worker: WorkerHandle, reason: str) -> None:
        """Terminate ``worker`` (settling the task it ran is the caller's business) and give the
        tasks queued behind it back to the line."""
        worker.task = None
        worker.doom(reason)
        self._plan.give_back(worker)

    def _fail_everything(self, cause: BaseException) -> None:
        with self.inbox.lock:
            self.inbox.closing = True
        self._plan.abandon(self._workers.values(), outcomes.broken(cause))
