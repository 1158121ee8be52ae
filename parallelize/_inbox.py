"""The Inbox: everything other threads say to a pool's dispatcher.

Callers never touch workers. They leave requests here and poke a wake-up pipe that the dispatcher
waits on beside its workers' pipes, so one ``wait()`` hears both and nothing polls:

* ``put``: a new task, already pickled;
* ``stop``: a running task whose future was cancelled (its worker must go);
* ``interrupt``: Ctrl-C in a caller waiting on this pool (cancel and stop everything submitted
  before it, and nothing submitted after it: the caller may catch the KeyboardInterrupt and go
  on using the pool at once, before the dispatcher has acted on it);
* ``close``: shutdown, optionally cancelling what waits, and optionally stopping what runs;
* ``restart``: replace every worker (idle ones now, busy ones after their task), losing nothing.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections import deque
from typing import TYPE_CHECKING

from ._errors import PoolClosed
from ._task import id_bound

if TYPE_CHECKING:
    from ._task import Task


class Inbox:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.tasks: deque[Task] = deque()  # guarded by lock
        self.stops: list[Task] = []  # guarded by lock: running tasks to stop
        # guarded by lock: stop every running task whose id is below this (Ctrl-C, cancel_pending)
        self.stop_below = 0
        self.closing = False  # guarded by lock
        # guarded by lock: cancel the tasks waiting in workers' pipes too (shutdown(cancel_futures))
        self.cancel_unstarted = False
        self.restarting = False  # guarded by lock: restart() was called, the dispatcher has not acted
        self._poked = False  # guarded by lock: a wake-up byte is already in the pipe
        self._pipe_open = True  # guarded by lock: False once the dispatcher has gone
        # Set without the lock by a dropped pool's weakref callback (see _process); turned into
        # `closing` by drain(), in the dispatcher thread, which the callback's byte wakes.
        self.dropped = False
        self.wake_reader, self._wake_writer = os.pipe()
        os.set_blocking(self._wake_writer, False)

    def put(self, task: Task) -> None:
        with self.lock:
            if self.closing:
                raise PoolClosed(f"the pool is shut down, so {task.describe()} was not submitted")
            self.tasks.append(task)
            self._poke_locked()

    def poke(self) -> None:
        """Wake the dispatcher (it must look at something that did not come through here)."""
        with self.lock:
            self._poke_locked()

    def stop(self, task: Task) -> None:
        with self.lock:
            self.stops.append(task)
            self._poke_locked()

    def interrupt(self) -> None:
        """Cancel every queued task and stop every running one; the pool stays open.

        Only the tasks made before this call are affected: the dispatcher acts later, when the
        caller may already have submitted new work.
        """
        self._cancel_queued(stop_running=True, closing=False)

    def close(self, cancel_pending: bool, *, cancel_queued: bool = False) -> None:
        """``cancel_pending``: cancel what waits and stop what runs (ours); ``cancel_queued``:
        cancel only what waits, and let what runs finish (``Executor``'s ``cancel_futures``)."""
        if cancel_pending or cancel_queued:
            if cancel_queued:
                with self.lock:
                    self.cancel_unstarted = True
            self._cancel_queued(stop_running=cancel_pending, closing=True)
        else:
            with self.lock:
                self.closing = True
                self._poke_locked()

    def _cancel_queued(self, *, stop_running: bool, closing: bool) -> None:
        with self.lock:
            self.closing = self.closing or closing
            cancelled = list(self.tasks)
            self.tasks.clear()
            if stop_running:
                self.stop_below = id_bound()
            self._poke_locked()
        for task in cancelled:
            task.future.cancel()

    def restart(self) -> None:
        with self.lock:
            if self.closing:
                raise PoolClosed("the pool is shut down, so it was not restarted; create a new Pool")
            self.restarting = True
            self._poke_locked()

    def take_restart(self) -> bool:
        with self.lock:
            restarting, self.restarting = self.restarting, False
        return restarting

    def take_cancel_unstarted(self) -> bool:
        with self.lock:
            cancel, self.cancel_unstarted = self.cancel_unstarted, False
        return cancel

    def take_stops(self) -> tuple[list[Task], int]:
        """The running tasks to stop, and the id below which every running task is to stop."""
        with self.lock:
            stops, self.stops = self.stops, []
            stop_below, self.stop_below = self.stop_below, 0
        return stops, stop_below

    def _poke_locked(self) -> None:
        if not self._poked and self._pipe_open:
            # Write first: a KeyboardInterrupt between the two steps (the caller's thread runs
            # signal handlers) then leaves a spare byte, not a flag that says the dispatcher was
            # woken when it was not, which would silence every later poke.
            with contextlib.suppress(BlockingIOError):  # the pipe is full of wake-ups already
                os.write(self._wake_writer, b"\0")
            self._poked = True

    def dup_waker(self) -> int:
        """A descriptor of the caller's own on the wake-up pipe (it closes it)."""
        fd = os.dup(self._wake_writer)
        os.set_blocking(fd, False)
        return fd

    def drain(self) -> None:
        with self.lock:
            self._poked = False
            with contextlib.suppress(BlockingIOError):
                os.read(self.wake_reader, 4096)
            # After the read: the dropper sets the flag before it writes, so a byte read here
            # means the flag is visible now, and one written later wakes the next poll.
            if self.dropped:
                self.closing = True  # as close(False): what was submitted still runs

    def close_pipe(self) -> None:
        with self.lock:
            if not self._pipe_open:
                return
            self._pipe_open = False
            self.closing = True
        os.close(self.wake_reader)
        os.close(self._wake_writer)
