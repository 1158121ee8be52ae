"""The dispatcher: one thread per pool that owns the workers and moves tasks to them.

::

    caller threads                         dispatcher thread                      workers
    --------------                         -----------------                      -------
    Pool.submit: pickle args,     Inbox    wait() on: wake pipe,        pipes     run one task,
    make Future, put Task ------> deque -> every worker's result pipe, <------->  reply on own
    and poke the wake pipe                 every worker's sentinel                pipe

The dispatcher blocks in ``multiprocessing.connection.wait`` and never polls; its only timeout is
the nearest deadline (a task's time limit, a terminated worker's grace, a memory check). Because
each worker has pipes of its own, the dispatcher knows which task each worker holds, so every
fault costs exactly one task:

* a worker dies: its task fails with WorkerCrashed (or is retried), a replacement starts on demand;
* a task runs past its timeout or is cancelled while running: its worker is terminated (SIGTERM,
  then SIGKILL after a grace) and replaced, and only that task fails;
* a map chunk loses its worker: the items already reported keep their results, the item that was
  running fails, and the rest of the chunk is sent again.

Tiny tasks are pipelined: while a worker runs one, a few more of the same kind may already wait
in its pipe (``_prefetch``), as many as take about ``_prefetch.SECONDS`` by the measured time per
call, so the worker does not idle for a round trip between them. The worker names in each result
the task it starts next, so the dispatcher always knows which one is running; the waiting ones
have not started, so a crash or a stop gives them back to the queue unharmed, and a cancelled one
is dropped by a SKIP message (see _protocol). Slow tasks, tasks with a time limit or a memory
limit to watch, and per-item chunks are never prefetched: a task must not wait behind a slow one
while another worker is free.

Workers start on demand, one per queued task up to the pool size, and take work only once they
say READY, so the first task runs as soon as the first worker has booted. Only this thread starts,
feeds, reaps and stops workers; callers touch nothing but the Inbox.
"""

from __future__ import annotations

import logging
import multiprocessing.process
import threading
import time
from collections import deque
from collections.abc import Callable
from multiprocessing.context import BaseContext

from . import _interrupts as interrupts
from . import _outcomes as outcomes
from . import _prefetch as prefetch
from . import _protocol as wire
from . import _shm
from ._channel import KILL_GRACE, WorkerHandle, start_worker
from ._encode import encode_chunk
from ._errors import ParallelizeError, PoolBroken, describe_exit
from ._futures import cancel_running, settle
from ._inbox import Inbox
from ._poller import Poller
from ._task import ChunkResult, Task

log = logging.getLogger("parallelize")

# What a readable descriptor means to the dispatcher.
_WAKE, _RESULTS, _EXIT = "wake", "results", "exit"

# How long a worker told to stop at shutdown may take before it is killed.
STOP_GRACE = 5.0
# How often busy workers' memory is checked while a memory limit is set.
MEMORY_CHECK_INTERVAL = 0.25


class Dispatcher:
    def __init__(
        self,
        context: BaseContext,
        size: int,
        initializer: bytes | None,
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
        self._context = context
        self._size = size
        self._initializer = initializer
        self._max_tasks = max_tasks_per_worker
        self._max_memory = max_memory_per_worker
        # Everything below is touched by the dispatcher thread only.
        self._workers: dict[int, WorkerHandle] = {}  # by pid
        self._idle: deque[WorkerHandle] = deque()
        self._requeued: deque[Task] = deque()  # running tasks waiting for another worker
        self._started = 0
        self._init_failure: bytes | None = None
        self._next_memory_check = 0.0
        # Guards the workers' state, _idle and _requeued. The dispatcher thread holds it whenever
        # it is awake, so only send_now (a caller's thread) ever waits for it, and only briefly.
        self._lock = threading.Lock()
        self._poller: Poller[tuple[str, WorkerHandle | None]] = Poller()
        self._poller.add(self.inbox.wake_reader, (_WAKE, None))
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
            if not self._idle or self._requeued:
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
                self._abandon(worker, task)
                raise
            return True

    def _abandon(self, worker: WorkerHandle, task: Task) -> None:
        """``send_now`` was cut short at an unknown point: Ctrl-C in the caller's thread (whose
        signal handler runs there, between any two steps). The worker may hold part of a
        message, so it is stopped and replaced; the task, whose caller never got its future,
        is cancelled."""
        if worker in self._idle:
            self._idle.remove(worker)
        worker.start(task)
        cancel_running(task.future)
        task.future.cancel()
        self.inbox.stop(task)

    def pids(self) -> list[int]:
        return [pid for pid, w in list(self._workers.items()) if w.doomed is None and not w.broken]

    def abandon_after_fork(self) -> None:
        """In a forked child: let go of the parent's pipes; its workers are not ours to stop."""
        self.inbox.close_pipe()
        for worker in list(self._workers.values()):
            worker.tasks.close()
            if worker.results is not None:
                worker.results.close()
            # multiprocessing would try to join them at exit: "can only join a child process".
            multiprocessing.process._children.discard(worker.process)  # type: ignore[attr-defined]

    # -- the thread ---------------------------------------------------------------------------------

    def _run(self) -> None:
        interrupts.keep_off_this_thread()  # Ctrl-C is the main thread's (see _interrupts)
        # The dispatcher holds _lock whenever it is awake; see send_now.
        self._lock.acquire()
        try:
            self._loop()
        except BaseException as exc:
            # Logged once here and not re-raised: PoolBroken carries it to every caller.
            log.exception("the dispatcher failed; failing every task it held")
            if self._on_broken is not None:
                self._on_broken(exc)
            self._fail_everything(exc)
        finally:
            self._stop_workers()
            self.inbox.close_pipe()
            self._lock.release()
            self._on_exit_callback()

    def _loop(self) -> None:
        while True:
            self._handle_stops()
            if self.inbox.take_restart():
                self._restart()
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
                elif what == _RESULTS:
                    self._on_readable(worker)
                else:
                    self._on_exit(worker)
            self._on_timers()

    def _finished(self) -> bool:
        with self.inbox.lock:
            if not self.inbox.closing or self.inbox.tasks:
                return False
        # A worker with queued tasks is running one, so checking `task` covers them.
        return not self._requeued and all(w.task is None for w in self._workers.values())

    # -- timers -------------------------------------------------------------------------------------

    def _timeout(self) -> float | None:
        moments = []
        for worker in self._workers.values():
            if worker.task is not None and worker.deadline is not None:
                moments.append(worker.deadline)
            if worker.kill_at is not None:
                moments.append(worker.kill_at)
        if self._max_memory is not None and any(w.task is not None for w in self._workers.values()):
            moments.append(self._next_memory_check)
        if not moments:
            return None
        return max(0.0, min(moments) - time.monotonic())

    def _on_timers(self) -> None:
        now = time.monotonic()
        for worker in list(self._workers.values()):
            if worker.kill_at is not None and now >= worker.kill_at:
                worker.escalate()
            if worker.task is not None and worker.deadline is not None and now >= worker.deadline:
                self._expire(worker)
        if self._max_memory is not None and now >= self._next_memory_check:
            self._next_memory_check = now + MEMORY_CHECK_INTERVAL
            for worker in list(self._workers.values()):
                if worker.task is not None:
                    resident = worker.resident_bytes()
                    if resident is not None and resident > self._max_memory:
                        self._over_memory(worker, resident)

    def _expire(self, worker: WorkerHandle) -> None:
        task = worker.task
        assert task is not None
        self._stop(worker, "timeout")
        self._lost(task, outcomes.timed_out(task, worker.pid), retryable=True)

    def _over_memory(self, worker: WorkerHandle, resident: int) -> None:
        task = worker.task
        assert task is not None
        assert self._max_memory is not None
        self._stop(worker, "memory limit")
        self._lost(task, outcomes.over_memory(task, worker.pid, self._max_memory, resident), retryable=True)

    # -- cancellation and Ctrl-C --------------------------------------------------------------------

    def _handle_stops(self) -> None:
        stops, stop_below = self.inbox.take_stops()
        if stop_below:
            # Ctrl-C: what was submitted before it. Newer tasks are left alone, and go back to
            # the line when the worker they were queued in is stopped.
            for task in [t for t in self._requeued if t.id < stop_below]:
                cancel_running(task.future)
                self._requeued.remove(task)
            for worker in list(self._workers.values()):
                older = [t for t in worker.queued if t.id < stop_below]
                stops += older
                for task in older:
                    cancel_running(task.future)
                if worker.task is not None and worker.task.id < stop_below:
                    cancel_running(worker.task.future)
                    self._stop(worker, "cancelled")
        for task in stops:
            if task in self._requeued:
                self._requeued.remove(task)
            for worker in list(self._workers.values()):
                if worker.task is task:
                    self._stop(worker, "cancelled")
                elif task in worker.queued:
                    worker.skip(task)  # it stays queued until the worker answers

    def _restart(self) -> None:
        """Retire every worker as max_tasks_per_worker would: idle ones now, busy ones when their
        work (and what is queued behind it) is done. Replacements start on demand, so nothing
        submitted after restart() runs in a worker that was there before it."""
        for worker in self._workers.values():
            worker.stale = True
        while self._idle:
            self._idle.popleft().retire()

    # -- handing out work ---------------------------------------------------------------------------

    def _next_task(self) -> Task | None:
        """The next task that was not cancelled while it waited; marks its future running."""
        while True:
            if self._requeued:
                return self._requeued.popleft()
            with self.inbox.lock:
                # A restart() not acted on yet: what was submitted after it must wait for the
                # next round, which retires the workers first.
                if not self.inbox.tasks or self.inbox.restarting:
                    return None
                task = self.inbox.tasks.popleft()
            if task.future.set_running_or_notify_cancel():
                return task

    def _dispatch(self) -> None:
        while self._idle:
            task = self._next_task()
            if task is None:
                break
            self._send(self._idle.popleft(), task)
        self._prefetch()
        with self.inbox.lock:
            backlog = len(self.inbox.tasks)
        backlog += len(self._requeued)
        live = [w for w in self._workers.values() if w.doomed is None and not w.retiring]
        booting = sum(1 for w in live if not w.ready)
        for _ in range(min(backlog - booting, self._size - len(live))):
            try:
                self._start_worker()
            except Exception as exc:  # noqa: BLE001 - e.g. out of file descriptors or memory
                self._cannot_start(exc)
                break

    def _start_worker(self) -> None:
        self._started += 1
        worker = start_worker(self._context, self._started, self._initializer)
        interrupts.keep_off_this_thread()  # starting the resource tracker may have undone it
        self._workers[worker.pid] = worker
        assert worker.results is not None
        self._poller.add(worker.results.fileno(), (_RESULTS, worker))
        self._poller.add(worker.process.sentinel, (_EXIT, worker))

    def _cannot_start(self, exc: Exception) -> None:
        # A worker that cannot be started costs one queued task, never the pool.
        log.warning("could not start a worker: %s", exc)
        task = self._next_task()
        if task is not None:
            error = ParallelizeError(
                f"no worker could be started for {task.describe()} ({type(exc).__name__}: {exc}); "
                f"the pool will try again for the next task"
            )
            error.__cause__ = exc
            settle(task.future, error=error)

    def _prefetch(self) -> None:
        """Queue waiting tasks in busy workers' pipes, round robin, while each stays short."""
        if self._max_memory is not None:
            return  # a worker over the limit after a task must not have others waiting in it
        busy = [w for w in self._workers.values() if prefetch.may_queue(w, self._max_tasks)]
        fed: set[WorkerHandle] = set()
        try:
            self._feed(busy, fed)
        finally:
            for worker in fed:
                try:
                    worker.flush()
                except OSError:
                    # Gone. Its sentinel fires, and _on_exit reads what it said last (which of
                    # its queued tasks it had started) before it gives the rest back.
                    worker.retiring = worker.broken = True

    def _feed(self, busy: list[WorkerHandle], fed: set[WorkerHandle]) -> None:
        while busy:
            task = self._peek_task()
            if task is None:
                return
            if not prefetch.queueable(task):
                return  # not measured yet, or one that must be watched alone: the next idle worker's
            cost = prefetch.cost(task)
            size = wire.HEADER_SIZE + (0 if task.payload is None else len(task.payload))
            worker = min(busy, key=lambda w: len(w.queued))
            if not prefetch.room_for(worker, cost, size):
                busy.remove(worker)
                continue
            taken = self._next_task()
            if taken is not task:  # cancelled between the look and the take
                if taken is not None:
                    self._requeued.appendleft(taken)
                continue
            self._send(worker, task, queue=cost)
            fed.add(worker)
            if not prefetch.may_queue(worker, self._max_tasks):
                busy.remove(worker)

    def _peek_task(self) -> Task | None:
        """The task ``_next_task`` would hand out, left where it is (and its future pending)."""
        if self._requeued:
            return self._requeued[0]
        with self.inbox.lock:
            tasks = self.inbox.tasks
            if self.inbox.restarting:
                return None  # as in _next_task
            while tasks and tasks[0].future.cancelled():
                tasks.popleft().future.set_running_or_notify_cancel()  # tells its waiters
            return tasks[0] if tasks else None

    def _send(self, worker: WorkerHandle, task: Task, *, queue: float | None = None) -> None:
        """Write ``task`` to ``worker``: to run now, or with ``queue`` (its expected seconds) to
        wait behind the task it runs."""
        if task.items is None:
            kind, payload = wire.RUN, task.payload
        else:
            kind = wire.RUN_EACH if task.stream or task.options.timeout is not None else wire.RUN_MANY
            payload = (
                task.payload
                if task.done == 0
                else encode_chunk(
                    task.function,
                    task.items[task.done :],
                    task.options.retries,
                    task.options.retry_on,
                    bare=task.bare,
                )
            )
        assert payload is not None
        try:
            written = worker.send(task, kind, payload, defer=queue is not None)
        except OSError:
            # The worker died before it got the task, so the task is safe to give to another one.
            # Its sentinel will fire and _on_exit will clean up; nothing more is sent to it.
            worker.retiring = worker.broken = True
            self._requeued.appendleft(task)
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
        self._take_back(worker)

    def _take_back(self, worker: WorkerHandle) -> None:
        """A stopped or dead worker's queued tasks never started: back to the front of the line."""
        for task in reversed(list(worker.queued)):
            if not task.future.done():
                task.attempts -= 1
                self._requeued.appendleft(task)
        worker.clear_queue()

    # -- hearing back -------------------------------------------------------------------------------

    def _on_readable(self, worker: WorkerHandle) -> None:
        assert worker.results is not None
        try:
            messages = worker.reader.read()
        except (EOFError, OSError):
            # The worker is exiting; its sentinel says when, and _on_exit does the rest.
            self._poller.remove(worker.results.fileno())
            worker.results = None
            return
        for message in messages:
            self._on_message(worker, message)

    def _on_message(self, worker: WorkerHandle, message: bytes) -> None:
        kind, task_id, attempt, next_id, payload = wire.unpack(message)
        if kind == wire.READY:
            worker.ready = True
            if worker.stale and worker.doomed is None and not worker.retiring:
                worker.retire()  # booted before a restart(): it may have loaded the old code
            elif worker.doomed is None and not worker.retiring:
                self._idle.append(worker)
            return
        if kind == wire.INIT_FAILED:
            self._init_failure = bytes(payload)
            return
        if worker.doomed is not None:
            return  # stopped: whatever it still says is stale, and its tasks were dealt with
        if kind == wire.SKIPPED:
            self._on_skipped(worker, task_id)
            return
        task = worker.task
        if task is None or task.id != task_id:
            return  # the task was cancelled or timed out while its answer was on the way
        if kind == wire.ITEM:
            self._on_item(worker, task, payload)
            return
        worker.task = None
        calls = 1 if task.items is None else len(task.items)
        prefetch.measure(task.function, time.monotonic() - worker.sent_at, calls)
        self._advance(worker, next_id)
        outcomes.resolve(task, kind, attempt, payload, worker.pid)

    def _on_skipped(self, worker: WorkerHandle, task_id: int) -> None:
        for task in worker.queued:
            if task.id == task_id:
                worker.unqueue(task)
                return

    def _advance(self, worker: WorkerHandle, next_id: int) -> None:
        """The worker finished its task: start the clock of the queued one it named, or idle it.

        With ``next_id`` 0 the worker found nothing waiting, so whatever was queued after it
        looked arrives later and the first of it runs unconditionally.
        """
        if not worker.queued:
            self._after_task(worker)
            return
        task = next(iter(worker.queued))
        if next_id and task.id != next_id:
            log.error("worker %d started task %d, not %d; stopping it", worker.pid, next_id, task.id)
            self._stop(worker, "protocol error")
            return
        worker.unqueue(task)
        worker.start(task)
        if task.future.cancelled():
            # Cancelled while queued, but the worker had already chosen it: stop it as a running one.
            self._stop(worker, "cancelled")

    def _after_task(self, worker: WorkerHandle) -> None:
        """The worker has nothing left to do. Recycle it if it has done its share, grown too big
        or outlived a restart(); otherwise it is idle again."""
        worker.deadline = None
        if (
            worker.stale
            or (self._max_tasks is not None and worker.tasks_run >= self._max_tasks)
            or (self._max_memory is not None and (worker.resident_bytes() or 0) > self._max_memory)
        ):
            worker.retire()
        elif worker.doomed is None and not worker.retiring:
            self._idle.append(worker)

    def _on_item(self, worker: WorkerHandle, task: Task, payload: memoryview) -> None:
        assert task.items is not None
        outcomes.record_item(task, payload, worker.pid)
        if task.options.timeout is not None:
            worker.deadline = time.monotonic() + task.options.timeout
        if task.done == len(task.items):
            worker.task = None
            seconds = time.monotonic() - worker.sent_at
            self._after_task(worker)  # nothing is ever queued behind a per-item chunk
            settle(task.future, ChunkResult(task.values, task.errors, seconds))

    # -- losing a worker ----------------------------------------------------------------------------

    def _lost(self, task: Task, error: Callable[[int], BaseException], *, retryable: bool) -> None:
        """The worker running ``task`` is gone: retry, re-send the rest of a chunk, or fail."""
        if task.future.done():
            return  # cancelled meanwhile
        if task.items is not None and not task.stream and len(task.items) - task.done > 1:
            # Which item was running is unknown: run the chunk again item by item to find out.
            task.stream = True
            task.attempts -= 1
            self._requeued.appendleft(task)
            return
        if retryable and task.attempts <= task.options.retries:
            self._requeued.appendleft(task)
            return
        failure = error(task.attempts)
        if task.items is None:
            settle(task.future, error=failure)
            return
        task.errors[task.done] = failure
        task.values.append(None)
        task.done += 1
        task.attempts = 0
        if task.done < len(task.items):
            self._requeued.appendleft(task)
        else:
            settle(task.future, ChunkResult(task.values, task.errors, 0.0))

    def _on_exit(self, worker: WorkerHandle) -> None:
        # A worker may send its last message and exit at once: read what it left before mourning it.
        while worker.results is not None and worker.reader.pending():
            self._on_readable(worker)
        worker.process.join()
        exitcode = worker.process.exitcode
        self._forget(worker)
        self._take_back(worker)
        how = describe_exit(exitcode)
        if worker.task is not None:
            task, worker.task = worker.task, None
            self._lost(task, outcomes.crashed(task, worker.pid, how, exitcode), retryable=True)
        elif not worker.ready and worker.doomed is None and not worker.retiring:
            self._fail_one_for_boot(worker, how, exitcode)

    def _fail_one_for_boot(self, worker: WorkerHandle, how: str, exitcode: int | None) -> None:
        """A worker that dies before READY costs one queued task, so a worker that can never boot
        (a failing initializer, a main module that raises on import) fails tasks one by one
        instead of being restarted forever."""
        envelope, self._init_failure = self._init_failure, None
        task = self._next_task()
        if task is not None:
            settle(task.future, error=outcomes.never_ready(task, worker.pid, how, exitcode, envelope))

    def _forget(self, worker: WorkerHandle) -> None:
        self._workers.pop(worker.pid, None)
        if worker.results is not None:
            self._poller.remove(worker.results.fileno())
        self._poller.remove(worker.process.sentinel)
        if worker in self._idle:
            self._idle.remove(worker)
        worker.close()
        # Result segments the dead worker made and nobody loaded (it died before sending, or its
        # answer arrived after its task was cancelled): its messages have all been read by now.
        _shm.sweep(worker.pid)

    # -- the end ------------------------------------------------------------------------------------

    def _stop_workers(self) -> None:
        workers = list(self._workers.values())
        for worker in workers:
            if worker.doomed is None and not worker.retiring:
                worker.retire()
        for worker in workers:
            worker.process.join(KILL_GRACE if worker.doomed else STOP_GRACE)
            if worker.process.exitcode is None:
                if worker.doomed is None:
                    log.warning("worker %d did not stop in %.0f s; killing it", worker.pid, STOP_GRACE)
                worker.process.kill()
                worker.process.join()
            self._forget(worker)

    def _fail_everything(self, cause: BaseException) -> None:
        with self.inbox.lock:
            self.inbox.closing = True
            tasks = list(self.inbox.tasks)
            self.inbox.tasks.clear()
        tasks += self._requeued
        tasks += [w.task for w in self._workers.values() if w.task is not None]
        tasks += [task for w in self._workers.values() for task in w.queued]
        for task in tasks:
            error = PoolBroken(
                f"the pool broke while it held {task.describe()}: its dispatcher failed "
                f"({type(cause).__name__}: {cause}); the task was abandoned, and the pool runs "
                f"nothing more"
            )
            error.__cause__ = cause
            settle(task.future, error=error)
