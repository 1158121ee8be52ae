"""What runs in a worker process: boot, then run one task at a time until told to stop.

Spawn and forkserver import this module in every new worker, so it imports only the standard
library and the package's light modules. A worker never decides anything about the pool: it runs
what it is sent, reports every outcome (a broken argument, result or exception included) as a
message on its own pipe, and dies with its parent.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import select
import signal
import sys
import threading
from collections import deque
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import TYPE_CHECKING, Any

from . import _forward as forward
from . import _interrupts as interrupts
from . import _protocol as wire
from ._calls import Functions, Reply, define, envelope, run_call, run_chunk, run_each
from ._serialize import dumps

if TYPE_CHECKING:
    from ._initializer import Initializer

if sys.platform.startswith("linux"):
    # For the parent-death signal. Imported here, not at boot: the forkserver preloads this module,
    # so its workers share ctypes rather than each import it (3 ms and private memory per worker).
    import ctypes

# Exit code of a worker whose parent vanished: nobody is left to read it, but `ps` and tests can.
PARENT_GONE = 70


def run(
    tasks: Connection, results: Connection, initializer: Initializer | None, levels: bytes | None = None
) -> None:
    """The worker's main loop (its ``multiprocessing.Process`` target is ``_role.run_worker``,
    which marks this process a worker first).

    From here on, what the worker prints and logs goes to the parent (``_forward``), the
    initializer's output included; ``levels`` are the parent's logging levels at its start.
    """
    # Ctrl-C in a terminal reaches the whole process group; the parent decides what it means.
    interrupts.ignore_in_worker()
    _die_with_parent()
    _let_the_forkserver_go()
    send = forward.install(results.send_bytes, levels).send
    if initializer is not None:
        from ._initializer import run_initializer  # only with an initializer (unpickling it did)

        try:
            run_initializer(initializer)
        except BaseException as exc:  # noqa: BLE001 - reported to the parent, which decides
            send(wire.pack(wire.INIT_FAILED, 0, dumps(envelope(exc))))
            return
    forward.keep_user_logging()
    send(wire.pack(wire.READY))
    _serve(tasks, send)


# A decoded message: (kind, task id, attempt, next id, payload).
_Message = tuple[int, int, int, int, memoryview]
_RUNS = (wire.RUN, wire.RUN_MANY, wire.RUN_EACH)


def _serve(tasks: Connection, send: Callable[[bytes], None]) -> None:
    """Run tasks until STOP or end of file.

    After a task, the worker reads ahead whatever waits in its pipe and names the task it will
    start next in the result it sends (see _protocol): that is how the dispatcher knows which
    of the tasks it prefetched is running, without a message per task start.
    """
    pipe = _Pipe(tasks, send)
    while True:
        # Idle: the next task to arrive runs unconditionally (the dispatcher knows it is running).
        if not pipe.pending:
            pipe.receive()
        message = pipe.pending.popleft()
        kind = message[0]
        if kind == wire.STOP:
            return
        if kind not in _RUNS:
            _between(message, pipe.functions)
            continue
        following: _Message | None = message
        forwarder = forward.forwarder
        assert forwarder is not None
        while following is not None:
            forwarder.task_id = following[1]  # until its reply is sent, with what it printed
            reply = _run(following, pipe.functions, send)
            if reply is None:
                break  # a RUN_EACH chunk: its last ITEM told the dispatcher this worker is idle
            following = pipe.next_run()
            reply_kind, task_id, data, attempt = reply
            send(wire.pack(reply_kind, task_id, data, attempt, 0 if following is None else following[1]))
        forwarder.task_id = 0


class _Pipe:
    """The worker's end of its task pipe, with the messages it has read ahead."""

    def __init__(self, tasks: Connection, send: Callable[[bytes], None]) -> None:
        self.tasks = tasks
        self.send = send
        self.functions: Functions = {}
        self.pending: deque[_Message] = deque()
        self._ahead = select.poll()
        self._ahead.register(tasks.fileno(), select.POLLIN)

    def receive(self) -> None:
        """Read one message (a batch counts as the messages in it); end of file reads as STOP."""
        try:
            message = wire.unpack(self.tasks.recv_bytes())
        except (EOFError, OSError):
            message = (wire.STOP, 0, 0, 0, memoryview(b""))
        if message[0] == wire.BATCH:
            self.pending.extend(map(wire.unpack, wire.unpack_batch(message[4])))
        else:
            self.pending.append(message)

    def next_run(self) -> _Message | None:
        """The next task to start from what is waiting, dropping what a SKIP names."""
        pending = self.pending
        while self._ahead.poll(0):
            self.receive()
            if pending[-1][0] == wire.STOP:
                break
        if any(message[0] == wire.SKIP for message in pending):
            skips = {message[1] for message in pending if message[0] == wire.SKIP}
            kept = []
            for message in pending:
                if message[0] in _RUNS and message[1] in skips:
                    self.send(wire.pack(wire.SKIPPED, message[1]))
                elif message[0] != wire.SKIP:
                    kept.append(message)
            pending.clear()
            pending.extend(kept)
        while pending:
            kind = pending[0][0]
            if kind in _RUNS:
                return pending.popleft()
            if kind == wire.STOP:
                return None  # handled when idle
            _between(pending.popleft(), self.functions)
        return None


def _between(message: _Message, functions: Functions) -> None:
    """A message that runs nothing: a function's definition, the parent's new logging levels, or
    a SKIP for a task that already ran (too late, and the dispatcher knows it)."""
    kind = message[0]
    if kind == wire.DEFINE:
        define(message[4], functions)
    elif kind == wire.LEVELS:
        forward.apply_levels(message[4])


def _run(
    message: _Message,
    functions: Functions,
    send: Callable[[bytes], None],
) -> Reply:
    kind, task_id, attempt, _, payload = message
    if kind == wire.RUN:
        return run_call(task_id, attempt, payload, functions)
    if kind == wire.RUN_MANY:
        return run_chunk(task_id, attempt, payload, functions)
    run_each(task_id, attempt, payload, functions, send)
    return None


def _let_the_forkserver_go() -> None:
    """Close this worker's copy of the parent's end of the forkserver's "alive" pipe.

    CPython hands every forkserver child that end (so the child could ask the same server for
    processes), but the server exits only at end-of-file on the pipe: while any worker holds it,
    a SIGKILLed parent's forkserver lives on, and so do its workers, whose parent death signal
    is tied to the forkserver (their parent). A worker stuck in C code that holds the GIL cannot
    run its watchdog thread either, so it lived for good. Once only the parent holds the end,
    its death ends the server, and the kernel kills every worker. Nothing here uses the inherited
    server: multiprocessing in a worker does not know its pid, so a pool started in a worker
    starts a forkserver of its own.
    """
    from multiprocessing import forkserver

    server: Any = forkserver._forkserver
    fd = getattr(server, "_forkserver_alive_fd", None)
    if fd is None or getattr(server, "_forkserver_pid", None) is not None:
        return  # not a forkserver child, or this process started that server itself
    server._forkserver_alive_fd = None
    with contextlib.suppress(OSError):
        os.close(fd)


def _die_with_parent() -> None:
    """Exit when the parent dies, even by SIGKILL: no orphan outlives the program that made it.

    On Linux the kernel sends SIGKILL when the parent goes (prctl PR_SET_PDEATHSIG). Everywhere, a
    watchdog thread blocks on the parent sentinel, a pipe whose other end only the parent holds:
    it reads end-of-file when the parent is gone, and covers a parent that died before prctl ran.
    """
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG
    parent = multiprocessing.parent_process()
    sentinel = getattr(parent, "sentinel", None)
    if sentinel is None:
        return

    def watch() -> None:
        select.select([sentinel], [], [])
        os._exit(PARENT_GONE)

    threading.Thread(target=watch, name="parallelize-watchdog", daemon=True).start()
