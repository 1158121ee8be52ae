"""A pool's worker processes as a set: started, watched by the dispatcher's poller, reaped, and
stopped all at once.

The dispatcher thread alone uses a Crew (``pids`` excepted, which only reads). Each worker is
registered with the poller twice: its result pipe (tag RESULTS) and its sentinel (tag EXIT), and
unregistered when it is forgotten, after which the worker is DEAD and its stray shared-memory
segments are swept.
"""

from __future__ import annotations

import multiprocessing.process
import time
from collections import deque
from multiprocessing.context import BaseContext

from . import _shm
from ._channel import ACTIVE, RETIRING, STOP_GRACE, WorkerHandle, start_worker
from ._initializer import Initializer
from ._poller import Poller
from ._task import Task

# What a readable descriptor means to the dispatcher.
WAKE, RESULTS, EXIT = "wake", "results", "exit"

Tag = tuple[str, WorkerHandle | None]


class Crew:
    def __init__(self, context: BaseContext, initializer: Initializer | None, poller: Poller[Tag]) -> None:
        self._context = context
        self._initializer = initializer
        self._poller = poller
        self._started = 0
        self.workers: dict[int, WorkerHandle] = {}  # by pid, until reaped
        self.idle: deque[WorkerHandle] = deque()  # the IDLE ones, longest idle first
        # Workers forgotten while the pool was open (crashed, stopped, recycled), for stats();
        # not the ones stop_all ends. Written here only, read by any thread.
        self.replaced = 0
        self._stopping = False

    def start(self) -> WorkerHandle:
        self._started += 1
        worker = start_worker(self._context, self._started, self._initializer)
        self.workers[worker.pid] = worker
        assert worker.results is not None
        self._poller.add(worker.results.fileno(), (RESULTS, worker))
        self._poller.add(worker.process.sentinel, (EXIT, worker))
        return worker

    def mute(self, worker: WorkerHandle) -> None:
        """Its result pipe is at end of file: stop watching it (its sentinel says when it exits)."""
        assert worker.results is not None
        self._poller.remove(worker.results.fileno())
        worker.results = None

    def forget(self, worker: WorkerHandle) -> None:
        """The worker has exited and its last words are read: let go of it."""
        self.workers.pop(worker.pid, None)
        if not self._stopping:
            self.replaced += 1
        if worker.results is not None:
            self._poller.remove(worker.results.fileno())
        self._poller.remove(worker.process.sentinel)
        if worker in self.idle:
            self.idle.remove(worker)
        worker.close()
        # Result segments the dead worker made and nobody loaded (it died before sending, or its
        # answer arrived after its task was cancelled): its messages have all been read by now.
        _shm.sweep(worker.pid)

    def stop_all(self) -> None:
        """Tell every worker to stop at once, then give them all one grace together; kill the rest."""
        self._stopping = True
        workers = list(self.workers.values())
        for worker in workers:
            if worker.state in ACTIVE:
                worker.retire()
        deadline = time.monotonic() + STOP_GRACE
        for worker in workers:
            worker.process.join(max(0.0, deadline - time.monotonic()))
        for worker in workers:
            if worker.process.exitcode is None:
                worker.escalate()
                worker.process.join()
            self.forget(worker)

    def void(self, worker: WorkerHandle, task: Task) -> None:
        """A hand-off of ``task`` to ``worker`` was cut short: the worker counts as running it
        (out of the idle line), so stopping that task stops the worker."""
        if worker in self.idle:
            self.idle.remove(worker)
        if worker.task is not task:
            worker.start(task)

    def retire_all(self) -> None:
        """restart(): retire every worker as max_tasks_per_worker would, idle ones now, busy ones
        when their work (and what is queued behind it) is done. Replacements start on demand, so
        nothing submitted after restart() runs in a worker that was there before it."""
        for worker in self.workers.values():
            worker.stale = True
        while self.idle:
            self.idle.popleft().retire()

    def pids(self) -> list[int]:
        """Workers that are up or on their way out by themselves (not stopped or lost)."""
        return [pid for pid, w in list(self.workers.items()) if w.state in ACTIVE or w.state is RETIRING]

    def abandon_after_fork(self) -> None:
        """In a forked child: let go of the parent's pipes; its workers are not ours to stop."""
        for worker in list(self.workers.values()):
            worker.tasks.close()
            if worker.results is not None:
                worker.results.close()
            # multiprocessing would try to join them at exit: "can only join a child process".
            multiprocessing.process._children.discard(worker.process)  # type: ignore[attr-defined]
