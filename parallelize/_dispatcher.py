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

Workers start on demand, one per queued task up to the pool size, and take work only once they
say READY, so the first task runs as soon as the first worker has booted. Only this thread starts,
feeds, reaps and stops workers; callers touch nothing but the Inbox.
"""

from __future__ import annotations

import logging
import multiprocessing.process
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from multiprocessing.connection import Connection
from multiprocessing.context import BaseContext

from . import _protocol as wire
from ._channel import KILL_GRACE, WorkerHandle, start_worker
from ._errors import (
    ParallelizeError,
    PoolClosed,
    SerializationError,
    TaskTimeout,
    WorkerCrashed,
    describe_exit,
)
from ._futures import cancel_running, rebuild_exception, settle
from ._inbox import Inbox
from ._poller import Poller
from ._serialize import encode_chunk, loads
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
        max_tasks_per_worker: int | None = None,
        max_memory_per_worker: int | None = None,
    ) -> None:
        self.inbox = Inbox()
        self._on_exit_callback = on_exit
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
        if not self._lock.acquire(blocking=False):
            return False
        try:
            if not self._idle or self._requeued:
                return False
            with self.inbox.lock:
                if self.inbox.tasks or self.inbox.closing:
                    return False
            worker = self._idle.popleft()
            if task.future.set_running_or_notify_cancel():
                self._send(worker, task)
            else:
                self._idle.appendleft(worker)
            if worker.task is not task or task.options.timeout is not None or self._max_memory is not None:
                self.inbox.poke()
            return True
        finally:
            self._lock.release()

    def pids(self) -> list[int]:
        return [pid for pid, w in list(self._workers.items()) if w.doomed is None]

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
        # The dispatcher holds _lock whenever it is awake; see send_now.
        self._lock.acquire()
        try:
            self._loop()
        except BaseException:
            log.exception("the dispatcher failed; failing every task it held")
            self._fail_everything()
            raise
        finally:
            self._stop_workers()
            self.inbox.close_pipe()
            self._lock.release()
            self._on_exit_callback()

    def _loop(self) -> None:
        while True:
            self._handle_stops()
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
        worker.task = None
        worker.doom("timeout")
        limit = task.options.timeout
        what = task.describe()
        self._lost(
            task,
            lambda attempts: TaskTimeout(
                f"{what} ran past its time limit of {limit:g} s in worker {worker.pid}{_tries(attempts)}; "
                f"the worker was stopped and replaced"
            ),
            retryable=True,
        )

    def _over_memory(self, worker: WorkerHandle, resident: int) -> None:
        task = worker.task
        assert task is not None
        assert self._max_memory is not None
        worker.task = None
        worker.doom("memory limit")
        limit = self._max_memory
        what = task.describe()
        self._lost(
            task,
            lambda attempts: WorkerCrashed(
                f"worker {worker.pid} went over the memory limit of {_size(limit)} (resident "
                f"{_size(resident)}) while running {what}{_tries(attempts)}; it was stopped and replaced",
                pid=worker.pid,
            ),
            retryable=True,
        )

    # -- cancellation and Ctrl-C --------------------------------------------------------------------

    def _handle_stops(self) -> None:
        stops, stop_all = self.inbox.take_stops()
        if stop_all:
            for task in self._requeued:
                cancel_running(task.future)
            self._requeued.clear()
            for worker in list(self._workers.values()):
                if worker.task is not None:
                    cancel_running(worker.task.future)
                    worker.task = None
                    worker.doom("cancelled")
        for task in stops:
            if task in self._requeued:
                self._requeued.remove(task)
            for worker in list(self._workers.values()):
                if worker.task is task:
                    worker.task = None
                    worker.doom("cancelled")

    # -- handing out work ---------------------------------------------------------------------------

    def _next_task(self) -> Task | None:
        """The next task that was not cancelled while it waited; marks its future running."""
        while True:
            if self._requeued:
                return self._requeued.popleft()
            with self.inbox.lock:
                if not self.inbox.tasks:
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

    def _send(self, worker: WorkerHandle, task: Task) -> None:
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
            worker.send(task, kind, payload)
        except OSError:
            # The worker died before it got the task, so the task is safe to give to another one.
            # Its sentinel will fire and _on_exit will clean up.
            worker.ready = False
            self._requeued.appendleft(task)

    # -- hearing back -------------------------------------------------------------------------------

    def _on_readable(self, worker: WorkerHandle) -> None:
        assert worker.results is not None
        try:
            message = worker.results.recv_bytes()
        except (EOFError, OSError):
            # The worker is exiting; its sentinel says when, and _on_exit does the rest.
            self._poller.remove(worker.results.fileno())
            worker.results = None
            return
        kind, task_id, attempt, payload = wire.unpack(message)
        if kind == wire.READY:
            worker.ready = True
            if worker.doomed is None and not worker.retiring:
                self._idle.append(worker)
            return
        if kind == wire.INIT_FAILED:
            self._init_failure = bytes(payload)
            return
        task = worker.task
        if task is None or task.id != task_id:
            return  # the task was cancelled or timed out while its answer was on the way
        if kind == wire.ITEM:
            self._on_item(worker, task, payload)
            return
        worker.task = None
        self._after_task(worker)
        self._resolve(task, kind, attempt, payload, worker)

    def _after_task(self, worker: WorkerHandle) -> None:
        """Recycle a worker that has done its share or grown too big; otherwise it is idle again."""
        worker.deadline = None
        if (self._max_tasks is not None and worker.tasks_run >= self._max_tasks) or (
            self._max_memory is not None and (worker.resident_bytes() or 0) > self._max_memory
        ):
            worker.retire()
        elif worker.doomed is None:
            self._idle.append(worker)

    def _resolve(
        self, task: Task, kind: int, attempt: int, payload: memoryview, worker: WorkerHandle
    ) -> None:
        # Error paths only: describing a call (a repr of its arguments) is not free.
        try:
            if kind == wire.ERROR:
                where = f"{task.describe()} in worker {worker.pid}"
                settle(task.future, error=_after_attempts(rebuild_exception(loads(payload), where), attempt))
                return
            value = loads(payload)
        except Exception as exc:  # noqa: BLE001 - a result that cannot be rebuilt fails its own task
            error = SerializationError(
                f"the result of {task.describe()} in worker {worker.pid} could not be unpickled here: "
                f"{type(exc).__name__}: {exc}"
            )
            error.__cause__ = exc
            settle(task.future, error=error)
            return
        if task.items is None:
            settle(task.future, value)
            return
        values, envelopes, seconds = value
        for index, envelope in envelopes.items():
            call = task.describe_item(task.done + index)
            task.errors[task.done + index] = rebuild_exception(envelope, f"{call} in worker {worker.pid}")
        if task.done:
            task.values.extend(values)
        else:
            task.values = values  # the usual case, a chunk in one run: no copy
        task.done += len(values)
        settle(task.future, ChunkResult(task.values, task.errors, seconds))
        _unlink(task)

    def _on_item(self, worker: WorkerHandle, task: Task, payload: memoryview) -> None:
        assert task.items is not None
        try:
            ok, value = loads(payload)
            if not ok:
                task.errors[task.done] = rebuild_exception(value, f"{task.describe()} in worker {worker.pid}")
                value = None
        except Exception as exc:  # noqa: BLE001 - fails this item only
            task.errors[task.done] = SerializationError(
                f"the result of {task.describe()} in worker {worker.pid} could not be unpickled here: "
                f"{type(exc).__name__}: {exc}"
            )
            value = None
        task.values.append(value)
        task.done += 1
        task.attempts = 1  # the worker went straight on to the next item's first attempt
        if task.options.timeout is not None:
            worker.deadline = time.monotonic() + task.options.timeout
        if task.done == len(task.items):
            worker.task = None
            seconds = time.monotonic() - worker.sent_at
            self._after_task(worker)
            settle(task.future, ChunkResult(task.values, task.errors, seconds))
            _unlink(task)

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
        while worker.results is not None and _has_message(worker.results):
            self._on_readable(worker)
        worker.process.join()
        exitcode = worker.process.exitcode
        self._forget(worker)
        how = describe_exit(exitcode)
        if worker.task is not None:
            task, worker.task = worker.task, None
            what = task.describe()
            self._lost(
                task,
                lambda attempts: WorkerCrashed(
                    f"worker {worker.pid} {how} while running {what}{_tries(attempts)}; "
                    f"the pool replaces it and the other tasks are unaffected",
                    pid=worker.pid,
                    exitcode=exitcode,
                ),
                retryable=True,
            )
        elif not worker.ready and worker.doomed is None and not worker.retiring:
            self._fail_one_for_boot(worker, how, exitcode)

    def _fail_one_for_boot(self, worker: WorkerHandle, how: str, exitcode: int | None) -> None:
        """A worker that dies before READY costs one queued task, so a worker that can never boot
        (a failing initializer, a main module that raises on import) fails tasks one by one
        instead of being restarted forever."""
        envelope, self._init_failure = self._init_failure, None
        task = self._next_task()
        if task is None:
            return
        if envelope is not None:
            cause: BaseException | None = rebuild_exception(
                loads(envelope), f"the initializer in worker {worker.pid}"
            )
            reason = f"failed its initializer ({type(cause).__name__}: {cause}) and {how}"
        else:
            cause, reason = None, f"{how} before it was ready"
        error = WorkerCrashed(
            f"worker {worker.pid} {reason}, so {task.describe()} did not run",
            pid=worker.pid,
            exitcode=exitcode,
        )
        error.__cause__ = cause
        settle(task.future, error=error)

    def _forget(self, worker: WorkerHandle) -> None:
        self._workers.pop(worker.pid, None)
        if worker.results is not None:
            self._poller.remove(worker.results.fileno())
        self._poller.remove(worker.process.sentinel)
        if worker in self._idle:
            self._idle.remove(worker)
        worker.close()

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

    def _fail_everything(self) -> None:
        error = PoolClosed("the pool's dispatcher failed (see the log); this task was abandoned")
        with self.inbox.lock:
            self.inbox.closing = True
            tasks = list(self.inbox.tasks)
            self.inbox.tasks.clear()
        tasks += self._requeued
        tasks += [w.task for w in self._workers.values() if w.task is not None]
        for task in tasks:
            settle(task.future, error=error)


def _unlink(task: Task) -> None:
    """Break the link from a finished chunk's future back to its task.

    Pool._enqueue gives the future its task (so that cancel() can stop it), and the task holds
    its future: a reference cycle, which only the garbage collector frees. For a map chunk that
    kept its items, its pickled payload and its values alive until the next collection (tens of
    chunks, tens of MB for ints), and made that collection walk every one of them: 30 ms pauses
    in the caller's thread, about 7% of a map of tiny items. A finished task cannot be
    cancelled, so the future no longer needs it.
    """
    task.future._task = None


def _has_message(conn: Connection) -> bool:
    try:
        return conn.poll(0)
    except (EOFError, OSError):
        return False


def _tries(attempts: int) -> str:
    return f" (gave up after {attempts} attempts)" if attempts > 1 else ""


def _after_attempts(exc: BaseException, attempts: int) -> BaseException:
    if attempts > 1 and sys.version_info >= (3, 11):
        exc.add_note(f"gave up after {attempts} attempts")
    return exc


def _size(n: int) -> str:
    for unit, scale in (("GB", 10**9), ("MB", 10**6), ("kB", 10**3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"
