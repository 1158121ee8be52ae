"""The dispatcher: one thread per pool that owns the workers and moves tasks to them.

::

    caller threads                         dispatcher thread                      workers
    --------------                         -----------------                      -------
    Pool.submit: pickle args,     Inbox    wait() on: wake pipe,        pipes     run one task,
    make Future, put Task ------> deque -> every worker's result pipe, <------->  reply on own
    and poke the wake pipe                 every worker's sentinel                pipe

The dispatcher blocks in ``multiprocessing.connection.wait`` and never polls. Because each worker
has pipes of its own, the dispatcher knows which task each worker holds: a dead worker fails that
one task with WorkerCrashed and is replaced on demand; everything else carries on.

Workers start on demand, one per queued task up to the pool size, and take work only once they
say READY, so the first task runs as soon as the first worker has booted. Only this thread starts,
feeds, reaps and stops workers; callers touch nothing but the Inbox.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing.process
import os
import sys
import threading
from collections import deque
from collections.abc import Callable, Iterator
from multiprocessing.connection import Connection, wait
from multiprocessing.context import BaseContext
from multiprocessing.process import BaseProcess

from . import _protocol as wire
from . import _worker
from ._errors import ParallelizeError, PoolClosed, SerializationError, WorkerCrashed, describe_exit
from ._futures import rebuild_exception
from ._serialize import dumps, loads
from ._task import ChunkResult, Task

log = logging.getLogger("parallelize")

# How long a worker told to stop may take before it is terminated, then killed.
STOP_GRACE = 5.0


class Inbox:
    """Where callers leave tasks for the dispatcher, and how they wake it."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.tasks: deque[Task] = deque()  # guarded by lock
        self.closing = False  # guarded by lock
        self._poked = False  # guarded by lock: a wake-up byte is already in the pipe
        self._pipe_open = True  # guarded by lock: False once the dispatcher has gone
        self.wake_reader, self._wake_writer = os.pipe()
        os.set_blocking(self._wake_writer, False)

    def put(self, task: Task) -> None:
        with self.lock:
            if self.closing:
                raise PoolClosed(f"the pool is shut down, so {task.describe()} was not submitted")
            self.tasks.append(task)
            self._poke_locked()

    def close(self, cancel_pending: bool) -> None:
        with self.lock:
            self.closing = True
            cancelled = list(self.tasks) if cancel_pending else []
            if cancel_pending:
                self.tasks.clear()
            self._poke_locked()
        for task in cancelled:
            task.future.cancel()

    def poke(self) -> None:
        with self.lock:
            self._poke_locked()

    def _poke_locked(self) -> None:
        if not self._poked and self._pipe_open:
            self._poked = True
            with contextlib.suppress(BlockingIOError):  # the pipe is full of wake-ups already
                os.write(self._wake_writer, b"\0")

    def drain(self) -> None:
        with self.lock:
            self._poked = False
            with contextlib.suppress(BlockingIOError):
                os.read(self.wake_reader, 4096)

    def close_pipe(self) -> None:
        with self.lock:
            if not self._pipe_open:
                return
            self._pipe_open = False
            self.closing = True
        os.close(self.wake_reader)
        os.close(self._wake_writer)


class WorkerHandle:
    """The parent's side of one worker: its process, its two pipes, and the task it holds."""

    __slots__ = ("defined", "index", "pid", "process", "ready", "results", "task", "tasks")

    def __init__(self, index: int, process: BaseProcess, tasks: Connection, results: Connection) -> None:
        self.index = index
        self.process = process
        self.pid: int = process.pid or 0  # kept: the process object is closed once reaped
        self.tasks = tasks  # parent -> worker
        self.results: Connection | None = results  # worker -> parent; None once it reads EOF
        self.task: Task | None = None
        self.ready = False
        self.defined: set[object] = set()  # keys of by-value functions this worker has


class Dispatcher:
    def __init__(
        self,
        context: BaseContext,
        size: int,
        initializer: bytes | None,
        *,
        name: str,
        on_exit: Callable[[], None],
    ) -> None:
        self.inbox = Inbox()
        self._on_exit_callback = on_exit
        self._context = context
        self._size = size
        self._initializer = initializer
        self._workers: dict[int, WorkerHandle] = {}  # by pid; only the dispatcher thread touches these
        self._idle: deque[WorkerHandle] = deque()
        self._requeued: deque[Task] = deque()  # taken from the inbox, never reached a worker
        self._started = 0
        self._init_failure: bytes | None = None
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    # -- called from other threads ------------------------------------------------------------------

    def start(self) -> None:
        self._thread.start()

    def join(self, timeout: float | None = None) -> None:
        if self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def pids(self) -> list[int]:
        return list(self._workers)

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
        try:
            self._loop()
        except BaseException:
            log.exception("parallelize: the dispatcher failed; failing every task it held")
            self._fail_everything()
            raise
        finally:
            self._stop_workers()
            self.inbox.close_pipe()
            self._on_exit_callback()

    def _loop(self) -> None:
        while True:
            self._dispatch()
            if self._finished():
                return
            ready = wait(self._waitables())
            for obj in ready:
                if obj == self.inbox.wake_reader:
                    self.inbox.drain()
                elif isinstance(obj, Connection):
                    self._on_readable(self._by_results(obj))
                else:
                    self._on_exit(self._by_sentinel(obj))

    def _waitables(self) -> list[Connection | int]:
        objs: list[Connection | int] = [self.inbox.wake_reader]
        for worker in self._workers.values():
            if worker.results is not None:
                objs.append(worker.results)
            objs.append(worker.process.sentinel)
        return objs

    def _by_results(self, conn: Connection) -> WorkerHandle:
        return next(w for w in self._workers.values() if w.results is conn)

    def _by_sentinel(self, sentinel: object) -> WorkerHandle:
        return next(w for w in self._workers.values() if w.process.sentinel == sentinel)

    def _finished(self) -> bool:
        with self.inbox.lock:
            if not self.inbox.closing or self.inbox.tasks:
                return False
        return not self._requeued and all(w.task is None for w in self._workers.values())

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
        starting = sum(1 for w in self._workers.values() if not w.ready)
        for _ in range(min(backlog - starting, self._size - len(self._workers))):
            try:
                self._start_worker()
            except Exception as exc:  # noqa: BLE001 - e.g. out of file descriptors or memory
                # A worker that cannot be started costs one queued task, never the pool.
                log.warning("could not start a worker: %s", exc)
                task = self._next_task()
                if task is not None:
                    error = ParallelizeError(
                        f"no worker could be started for {task.describe()} ({type(exc).__name__}: {exc}); "
                        f"the pool will try again for the next task"
                    )
                    error.__cause__ = exc
                    task.future.set_exception(error)
                break

    def _send(self, worker: WorkerHandle, task: Task) -> None:
        assert task.payload is not None
        handle = task.function
        kind = wire.RUN if task.items is None else wire.RUN_MANY
        try:
            if handle.definition is not None and handle.key not in worker.defined:
                worker.tasks.send_bytes(wire.pack(wire.DEFINE, 0, dumps((handle.key, handle.definition))))
                worker.defined.add(handle.key)
            worker.tasks.send_bytes(wire.pack(kind, task.id, task.payload))
        except OSError:
            # The worker died before it got the task, so the task is safe to give to another one.
            # Its sentinel will fire and _on_exit will clean up.
            self._requeued.appendleft(task)
            worker.ready = False
            return
        worker.task = task

    def _start_worker(self) -> None:
        self._started += 1
        task_reader, task_writer = self._context.Pipe(duplex=False)
        result_reader, result_writer = self._context.Pipe(duplex=False)
        process = self._context.Process(  # type: ignore[attr-defined]
            target=_worker.run,
            args=(task_reader, result_writer, self._initializer),
            name=f"parallelize-worker-{self._started}",
        )
        try:
            with _main_file_hidden_if_unreal():
                process.start()
        except BaseException:
            task_writer.close()
            result_reader.close()
            raise
        finally:
            # The worker has its own copies now (or never will): ours would hide its exit.
            task_reader.close()
            result_writer.close()
        worker = WorkerHandle(self._started, process, task_writer, result_reader)
        self._workers[process.pid] = worker

    # -- hearing back -------------------------------------------------------------------------------

    def _on_readable(self, worker: WorkerHandle) -> None:
        assert worker.results is not None
        try:
            message = worker.results.recv_bytes()
        except (EOFError, OSError):
            # The worker is exiting; its sentinel says when, and _on_exit does the rest.
            worker.results = None
            return
        kind, task_id, payload = wire.unpack(message)
        if kind == wire.READY:
            worker.ready = True
            self._idle.append(worker)
        elif kind == wire.INIT_FAILED:
            self._init_failure = bytes(payload)
        else:
            task = worker.task
            worker.task = None
            if worker.ready:
                self._idle.append(worker)
            if task is not None and task.id == task_id:
                self._resolve(task, kind, payload, worker)

    def _resolve(self, task: Task, kind: int, payload: memoryview, worker: WorkerHandle) -> None:
        where = f"{task.describe()} in worker {worker.pid}"
        try:
            if kind == wire.ERROR:
                task.future.set_exception(rebuild_exception(loads(payload), where))
                return
            value = loads(payload)
        except Exception as exc:  # noqa: BLE001 - a result that cannot be rebuilt fails its own task
            error = SerializationError(
                f"the result of {where} could not be unpickled here: {type(exc).__name__}: {exc}"
            )
            error.__cause__ = exc
            task.future.set_exception(error)
            return
        if task.items is not None:
            values, envelope, seconds = value
            failure = None if envelope is None else rebuild_exception(envelope, where)
            value = ChunkResult(values, failure, seconds)
        task.future.set_result(value)

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
            task.future.set_exception(
                WorkerCrashed(
                    f"worker {worker.pid} {how} while running {task.describe()}; "
                    f"the pool replaces it and the other tasks are unaffected",
                    pid=worker.pid,
                    exitcode=exitcode,
                )
            )
        elif not worker.ready:
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
        task.future.set_exception(error)

    def _forget(self, worker: WorkerHandle) -> None:
        self._workers.pop(worker.pid, None)
        if worker in self._idle:
            self._idle.remove(worker)
        worker.tasks.close()
        if worker.results is not None:
            worker.results.close()
        worker.process.close()

    # -- the end ------------------------------------------------------------------------------------

    def _stop_workers(self) -> None:
        workers = list(self._workers.values())
        for worker in workers:
            with contextlib.suppress(OSError):  # already gone
                worker.tasks.send_bytes(wire.pack(wire.STOP))
        for worker in workers:
            worker.process.join(STOP_GRACE)
            if worker.process.exitcode is None:
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
            if not task.future.done():
                task.future.set_exception(error)


@contextlib.contextmanager
def _main_file_hidden_if_unreal() -> Iterator[None]:
    """Keep multiprocessing from re-running a main "script" that is not a file.

    spawn and forkserver make each worker run the parent's ``__main__.__file__`` again; for a
    script read from standard input that is "<stdin>", which fails with FileNotFoundError in every
    worker. Without the attribute they skip the step, and what the script defines travels by
    value instead. Only the dispatcher thread starts workers, so the attribute is restored before
    anything else of ours looks at it.
    """
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    if main is None or not isinstance(path, str) or os.path.exists(path) or getattr(main, "__spec__", None):
        yield
        return
    del main.__file__
    try:
        yield
    finally:
        main.__file__ = path


def _has_message(conn: Connection) -> bool:
    try:
        return conn.poll(0)
    except (EOFError, OSError):
        return False
