"""What workers say, and how they end, turned into settled futures and scheduler events.

::

    result pipe --frames--> on_readable --> OUTPUT / LOG: what a task printed or logged,
                                              replayed here before its result (``_logs``)
                                            READY: the worker joins the idle line
                                            RESULT / ERROR: settle the task (``_outcomes``), start
                                              the queued task the worker named, or idle / retire it
                                            ITEM: one item of a per-item chunk
                                            SKIPPED: a cancelled queued task was dropped
    sentinel ------------> on_exit -------> read its last words, reap it (``Crew.forget``), give
                                            its queued tasks back and report its task lost

The dispatcher thread alone calls it. Stopping a worker (terminate, give its queue back) is the
dispatcher's ``_stop``, passed in.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from . import _logs as logs
from . import _outcomes as outcomes
from . import _prefetch as prefetch
from . import _protocol as wire
from ._channel import BOOTING, BUSY, IDLE, STOPPING, WorkerHandle
from ._crew import Crew
from ._errors import describe_exit
from ._futures import settle
from ._scheduler import Scheduler
from ._task import ChunkTask

log = logging.getLogger("parallelize")


class Replies:
    def __init__(self, crew: Crew, plan: Scheduler, stop: Callable[[WorkerHandle, str], None]) -> None:
        self._crew = crew
        self._plan = plan
        self._stop_worker = stop
        # What the last worker whose initializer failed sent, for the task its death costs.
        self.init_failure: bytes | None = None

    def on_readable(self, worker: WorkerHandle) -> None:
        assert worker.results is not None
        try:
            messages = worker.reader.read()
        except (EOFError, OSError):
            # The worker is exiting; its sentinel says when, and on_exit does the rest.
            self._crew.mute(worker)
            return
        for message in messages:
            self._on_message(worker, message)

    def _on_message(self, worker: WorkerHandle, message: bytes) -> None:
        kind, task_id, attempt, next_id, payload = wire.unpack(message)
        if kind >= wire.OUTPUT:
            # Whatever the worker's state: a stopped task's last words were still printed.
            logs.replay(kind, payload, self._task_name(worker, task_id, kind))
        elif kind == wire.READY:
            self._on_ready(worker)
        elif kind == wire.INIT_FAILED:
            self.init_failure = bytes(payload)
        elif worker.state is STOPPING:
            pass  # stopped: whatever it still says is stale, and its tasks were dealt with
        elif kind == wire.SKIPPED:
            self._on_skipped(worker, task_id)
        else:
            self._on_reply(worker, kind, task_id, attempt, next_id, payload)

    def _on_ready(self, worker: WorkerHandle) -> None:
        if worker.state is not BOOTING:
            pass  # told to stop while it booted
        elif worker.stale:
            worker.retire()  # booted before a restart(): it may have loaded the old code
        else:
            worker.to(IDLE)
            self._crew.idle.append(worker)

    def _on_reply(
        self, worker: WorkerHandle, kind: int, task_id: int, attempt: int, next_id: int, payload: memoryview
    ) -> None:
        """RESULT, ERROR or ITEM: the task settles (or one item of it does)."""
        task = worker.task
        if task is None or task.id != task_id:
            return  # the task was cancelled or timed out while its answer was on the way
        if kind == wire.ITEM:
            assert isinstance(task, ChunkTask)
            self._on_item(worker, task, payload)
            return
        worker.task = None
        prefetch.measure(task.function, time.monotonic() - worker.sent_at, task.calls())
        self._advance(worker, next_id)
        outcomes.resolve(task, kind, attempt, payload, worker.pid)

    @staticmethod
    def _task_name(worker: WorkerHandle, task_id: int, kind: int) -> str | None:
        task = worker.task
        if kind != wire.LOG or task is None or task.id != task_id:
            return None  # output has no name; a record outside any task has none either
        return logs.task_name(task)

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
            self._stop_worker(worker, "protocol error")
            return
        worker.unqueue(task)
        worker.start(task)
        if task.future.cancelled():
            # Cancelled while queued, but the worker had already chosen it: stop it as a running one.
            self._stop_worker(worker, "cancelled")

    def _after_task(self, worker: WorkerHandle) -> None:
        """The worker has nothing left to do. Recycle it if it has done its share, grown too big
        or outlived a restart(); otherwise it is idle again."""
        worker.deadline = None
        if worker.state is not BUSY:
            return  # LOST: only its exit is awaited
        if self._plan.retires(worker, worker.resident_bytes):
            worker.retire()
        else:
            worker.to(IDLE)
            self._crew.idle.append(worker)

    def _on_item(self, worker: WorkerHandle, task: ChunkTask, payload: memoryview) -> None:
        outcomes.record_item(task, payload, worker.pid)
        if task.options.timeout is not None:
            worker.deadline = time.monotonic() + task.options.timeout
        if not task.left():
            worker.task = None
            seconds = time.monotonic() - worker.sent_at
            self._after_task(worker)  # nothing is ever queued behind a per-item chunk
            settle(task.future, task.result(seconds))

    # -- losing a worker ----------------------------------------------------------------------------

    def on_exit(self, worker: WorkerHandle) -> None:
        # A worker may send its last message and exit at once: read what it left before mourning it.
        while worker.results is not None and worker.reader.pending():
            self.on_readable(worker)
        worker.process.join()
        exitcode = worker.process.exitcode
        booting = worker.state is BOOTING
        self._crew.forget(worker)
        self._plan.give_back(worker)
        how = describe_exit(exitcode)
        if worker.task is not None:
            task, worker.task = worker.task, None
            self._plan.lost(task, outcomes.crashed(task, worker.pid, how, exitcode), retryable=True)
        elif booting:
            self._fail_one_for_boot(worker, how, exitcode)

    def _fail_one_for_boot(self, worker: WorkerHandle, how: str, exitcode: int | None) -> None:
        """A worker that dies before READY costs one queued task, so a worker that can never boot
        (a failing initializer, a main module that raises on import) fails tasks one by one
        instead of being restarted forever."""
        envelope, self.init_failure = self.init_failure, None
        self._plan.fail_next(lambda task: outcomes.never_ready(task, worker.pid, how, exitcode, envelope))
