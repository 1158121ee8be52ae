"""One worker as the parent sees it: its process, its two pipes, and what it is doing.

Only the dispatcher thread touches a WorkerHandle. ``task`` is the task the worker is running;
``queued`` are small tasks already written to its pipe behind it (prefetched), which have not
started: the worker names the one it starts next in each result (see _protocol). A worker is in
exactly one ``WorkerState``, changed only by ``WorkerHandle.to``, which checks the move::

    BOOTING --READY--> IDLE --send--> BUSY --result, nothing queued--> IDLE
       |                 |  <---------' |
       |                 |              +--timeout / cancel / memory--> STOPPING (SIGTERM, then
       +--stale, or -----+--------------+--done its share / restart()--> RETIRING  SIGKILL after
          shutdown          (STOP sent; SIGKILL if not gone STOP_GRACE later)      KILL_GRACE)
                         a write to it failed (it is exiting) -----------> LOST
    any of them --its sentinel fires--> DEAD

Only BOOTING, IDLE and BUSY workers count toward the pool's size; the others are being replaced,
and every one of them has a time (``kill_at``) after which it is killed, so none outlives its grace.
"""

from __future__ import annotations

import contextlib
import enum
import io
import logging
import os
import select
import struct
import sys
import time
from collections.abc import Iterator
from multiprocessing.connection import Connection
from multiprocessing.context import BaseContext
from multiprocessing.process import BaseProcess
from typing import TYPE_CHECKING

from . import _logs, _role
from . import _protocol as wire
from ._initializer import Initializer
from ._serialize import FunctionKey, dumps

if TYPE_CHECKING:
    from ._task import Task

log = logging.getLogger("parallelize")

# How many by-value functions a worker keeps at once (see WorkerHandle.defined).
DEFINITIONS = 64

# How long a terminated worker (SIGTERM) gets before it is killed (SIGKILL).
KILL_GRACE = 1.0
# How long a worker told to STOP (retired, or at shutdown) may take to exit before it is killed:
# one whose task left a non-daemon thread never exits by itself.
STOP_GRACE = 5.0

_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


class WorkerState(enum.Enum):
    BOOTING = "booting"  # started, has not said READY
    IDLE = "idle"  # ready, nothing to do (it is in the dispatcher's idle line)
    BUSY = "busy"  # running ``task``, maybe with ``queued`` tasks behind it
    RETIRING = "retiring"  # told to STOP between tasks; exits by itself, or is killed
    STOPPING = "stopping"  # terminated (its task was stopped); killed if still there
    LOST = "lost"  # a write to it failed: it is exiting, only its sentinel is awaited
    DEAD = "dead"  # reaped and forgotten


BOOTING, IDLE, BUSY = WorkerState.BOOTING, WorkerState.IDLE, WorkerState.BUSY
RETIRING, STOPPING, LOST, DEAD = (
    WorkerState.RETIRING,
    WorkerState.STOPPING,
    WorkerState.LOST,
    WorkerState.DEAD,
)
# Workers that count toward the pool's size; the rest are being replaced.
ACTIVE = frozenset({BOOTING, IDLE, BUSY})
_MOVES: dict[WorkerState, frozenset[WorkerState]] = {
    BOOTING: frozenset({IDLE, RETIRING, STOPPING, DEAD}),
    IDLE: frozenset({BUSY, RETIRING, STOPPING, LOST, DEAD}),
    BUSY: frozenset({BUSY, IDLE, RETIRING, STOPPING, LOST, DEAD}),
    RETIRING: frozenset({STOPPING, DEAD}),
    LOST: frozenset({STOPPING, DEAD}),
    STOPPING: frozenset({DEAD}),
    DEAD: frozenset(),
}


class WorkerHandle:
    __slots__ = (
        "_outbox",
        "deadline",
        "defined",
        "index",
        "kill_at",
        "levels",
        "pid",
        "process",
        "queued",
        "queued_bytes",
        "queued_seconds",
        "reader",
        "results",
        "sent_at",
        "stale",
        "state",
        "stop_reason",
        "task",
        "tasks",
        "tasks_run",
    )

    def __init__(
        self, index: int, process: BaseProcess, tasks: Connection, results: Connection, levels: int = 0
    ) -> None:
        self.index = index
        self.process = process
        self.pid: int = process.pid or 0  # kept: the process object is closed once reaped
        self.tasks = tasks  # parent -> worker
        self.results: Connection | None = results  # worker -> parent; None once it reads EOF
        self.reader = FrameReader(results.fileno())
        self.task: Task | None = None  # running
        # Written to its pipe behind `task`, not started, in order: (bytes it fills there, seconds
        # it should take), and the sums of both.
        self.queued: dict[Task, tuple[int, float]] = {}
        self.queued_bytes = 0
        self.queued_seconds = 0.0
        self.state = BOOTING
        # Keys of the by-value functions this worker has, least recently used first: at most
        # DEFINITIONS, so a notebook that redefines a function in a loop (or a function whose
        # globals keep changing) does not grow the worker without bound. The parent decides what
        # the worker forgets and tells it in the DEFINE that replaces it.
        self.defined: dict[FunctionKey, None] = {}
        self.levels = levels  # the version of the parent's logging levels it has (see _logs)
        self._outbox: list[bytes] = []  # messages send() deferred to the next flush()
        self.deadline: float | None = None  # when the running task (or item) times out
        self.sent_at = 0.0  # when the running task was sent
        self.tasks_run = 0
        self.stale = False  # started before a restart(): retires instead of taking more work
        self.stop_reason = ""  # why it left ACTIVE (for the log)
        self.kill_at: float | None = None  # when a worker that left ACTIVE is killed if still alive

    def to(self, state: WorkerState, reason: str = "") -> None:
        """Move to ``state``; a move the diagram does not allow is a bug in the dispatcher."""
        if state not in _MOVES[self.state]:
            raise AssertionError(f"worker {self.pid}: no move from {self.state.name} to {state.name}")
        self.state = state
        if state not in ACTIVE and state is not DEAD:
            self.stop_reason = reason or state.value
            self.deadline = None
            grace = KILL_GRACE if state is STOPPING else STOP_GRACE
            self.kill_at = time.monotonic() + grace

    def send(self, task: Task, kind: int, payload: bytes, *, defer: bool = False) -> int:
        """Write ``task`` (and its function first, if this worker has not got it yet) to the pipe;
        returns the bytes it takes there. The caller says whether it runs now (``start``) or is
        queued. With ``defer`` it is only added to what the next ``flush`` writes at once.

        On OSError (the worker is gone) nothing about the task has changed: it never started.
        """
        handle = task.function
        outbox = self._outbox
        written = 0
        version, levels = _logs.levels()
        if version != self.levels:
            self.levels = version
            outbox.append(wire.pack(wire.LEVELS, 0, levels))
            written += len(levels)
        if handle.definition is not None:
            define = self._define(handle.key, handle.definition)
            if define is not None:
                outbox.append(define)
                written += len(define)
        attempt = task.attempts + 1
        message = wire.pack(kind, task.id, payload, attempt)
        outbox.append(message)
        task.attempts = attempt
        self.tasks_run += 1
        if not defer:
            try:
                self.flush()
            except OSError:
                task.attempts -= 1
                self.tasks_run -= 1
                raise
        return written + len(message)

    def _define(self, key: FunctionKey, definition: bytes) -> bytes | None:
        """The DEFINE this worker needs before a task of ``key`` (None: it has it), forgetting
        the least recently used definitions beyond DEFINITIONS."""
        defined = self.defined
        if key in defined:
            del defined[key]
            defined[key] = None  # now the most recently used
            return None
        forget = []
        while len(defined) >= DEFINITIONS:
            oldest = next(iter(defined))
            del defined[oldest]
            forget.append(oldest)
        defined[key] = None
        return wire.pack(wire.DEFINE, 0, dumps((key, definition, forget)))

    def flush(self) -> None:
        """Write what ``send`` deferred, in one system call when it fits the pipe."""
        outbox, self._outbox = self._outbox, []
        if len(outbox) == 1:
            self.tasks.send_bytes(outbox[0])
        elif outbox:
            self.tasks.send_bytes(wire.pack_batch(outbox))

    def queue(self, task: Task, size: int, seconds: float) -> None:
        self.queued[task] = (size, seconds)
        self.queued_bytes += size
        self.queued_seconds += seconds

    def unqueue(self, task: Task) -> None:
        size, seconds = self.queued.pop(task)
        self.queued_bytes -= size
        self.queued_seconds -= seconds

    def clear_queue(self) -> None:
        self.queued.clear()
        self.queued_bytes = 0
        self.queued_seconds = 0.0

    def start(self, task: Task) -> None:
        """``task`` runs now: its clock starts. (A LOST worker may still name a queued task as
        started; it stays LOST.)"""
        if self.state is not BUSY and self.state is not LOST:
            self.to(BUSY)
        self.task = task
        self.sent_at = time.monotonic()
        timeout = task.options.timeout
        self.deadline = None if timeout is None else self.sent_at + timeout

    def skip(self, task: Task) -> None:
        """Ask the worker to drop a queued task that was cancelled (it answers SKIPPED, or
        names it as started if it was too late)."""
        with contextlib.suppress(OSError):  # already gone: its sentinel will say so
            self.tasks.send_bytes(wire.pack(wire.SKIP, task.id))

    def retire(self) -> None:
        """Ask the worker to exit once its current work is done; a replacement starts on demand.
        It is killed if it has not exited STOP_GRACE later."""
        self.to(RETIRING)
        with contextlib.suppress(OSError):  # already gone: its sentinel will say so
            self.tasks.send_bytes(wire.pack(wire.STOP))

    def doom(self, reason: str) -> None:
        """Terminate now (SIGTERM), and SIGKILL after KILL_GRACE if it is still there."""
        if self.state is STOPPING:
            return
        self.to(STOPPING, reason)
        if self.process.exitcode is None:
            self.process.terminate()

    def lose(self) -> None:
        """A write to it failed: it is exiting, and its sentinel will say when."""
        if self.state in ACTIVE:
            self.to(LOST)

    def escalate(self) -> None:
        """Its grace is over: SIGKILL."""
        self.kill_at = None
        if self.process.exitcode is None:
            if self.state is not STOPPING:
                log.warning(
                    "worker %d (%s) did not exit in %.0f s; killing it",
                    self.pid,
                    self.stop_reason,
                    STOP_GRACE,
                )
            self.process.kill()

    def resident_bytes(self) -> int | None:
        """Resident memory of the worker, from /proc (Linux); None where it cannot be read."""
        try:
            with open(f"/proc/{self.pid}/statm", "rb") as f:
                return int(f.read().split()[1]) * _PAGE_SIZE
        except (OSError, ValueError, IndexError):
            return None

    def close(self) -> None:
        self.to(DEAD)
        self.tasks.close()
        if self.results is not None:
            self.results.close()
        self.process.close()


class FrameReader:
    """Reads the frames ``Connection.send_bytes`` writes, as many per ``read()`` as have arrived.

    ``recv_bytes`` costs two system calls per message and the dispatcher one ``poll()`` more; a
    busy pipelined worker sends results faster than that. The framing is multiprocessing's: a
    big-endian signed 4-byte length, or -1 and an 8-byte length for frames over 2 GiB.
    """

    CHUNK = 1 << 16

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self._buffer = bytearray()

    def pending(self) -> bool:
        """True if a read would not block (data or end of file)."""
        return bool(select.select([self.fd], [], [], 0)[0])

    def read(self) -> list[bytes]:
        """The whole frames that have arrived; call when the pipe is readable. EOFError at end."""
        data = os.read(self.fd, self.CHUNK)
        if not data:
            raise EOFError
        buffer = self._buffer
        buffer += data
        frames: list[bytes] = []
        position = 0
        while len(buffer) - position >= 4:
            (size,) = _LENGTH.unpack_from(buffer, position)
            start = position + 4
            if size == -1:
                if len(buffer) - position < 12:
                    break
                (size,) = _LONG_LENGTH.unpack_from(buffer, start)
                start += 8
            end = start + size
            if end > len(buffer):
                if size > self.CHUNK:
                    # A big frame: the worker is writing it now, so read the rest in one go,
                    # straight into its own buffer.
                    frame = bytearray(size)
                    have = len(buffer) - start
                    frame[:have] = buffer[start:]
                    if not self._read_into(memoryview(frame)[have:]):
                        del buffer[:]
                        return frames  # end of file inside the frame: the next read says so
                    frames.append(frame)  # type: ignore[arg-type]  # bytes-like, read once
                    position = len(buffer)
                break
            frames.append(bytes(buffer[start:end]))
            position = end
        del buffer[:position]
        return frames

    def _read_into(self, view: memoryview) -> bool:
        with io.FileIO(self.fd, "rb", closefd=False) as f:
            while view:
                count = f.readinto(view)
                if not count:
                    return False
                view = view[count:]
        return True


_LENGTH = struct.Struct("!i")
_LONG_LENGTH = struct.Struct("!Q")


def start_worker(context: BaseContext, index: int, initializer: Initializer | None) -> WorkerHandle:
    task_reader, task_writer = context.Pipe(duplex=False)
    result_reader, result_writer = context.Pipe(duplex=False)
    version, levels = _logs.levels()
    process = context.Process(  # type: ignore[attr-defined]
        target=_role.run_worker,
        args=(task_reader, result_writer, initializer, levels),
        name=f"parallelize-worker-{index}",
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
    return WorkerHandle(index, process, task_writer, result_reader, version)


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
