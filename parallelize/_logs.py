"""In the parent: what workers printed and logged, replayed here; and the levels workers must know.

::

    worker: print / log --> OUTPUT, LOG frames --> dispatcher thread: replay() writes the text to
                                                   the parent's current sys.stdout / sys.stderr, or
                                                   hands the record to the parent's logger of its
                                                   name (its levels, filters and handlers)
                                                   ... then the task's RESULT settles its future

The frames come before the result of the task that made them, and the dispatcher thread reads a
worker's frames in order, so whatever a task printed is written before its future settles: a
notebook cell or a ``contextlib.redirect_stdout`` block that waits for the result gets its output.

Levels: a record below the parent's effective level for its logger should not cross the pipe, so
workers copy the parent's levels (``levels``): the root's, ``logging.disable``'s and every logger's
own. The snapshot is remade only when levels change, which the check below notices for free:
``Logger.setLevel``, ``logging.disable``, ``basicConfig`` and ``dictConfig`` all clear the loggers'
``isEnabledFor`` caches through ``Manager._clear_cache``, and so drop a mark we keep in the root's
cache. A worker gets the new snapshot with its next task. The limit: a level assigned without
``setLevel`` (``logger.level = 10``) is seen only after the next real change, and a task already
running keeps the levels it started with. The parent checks its levels again when a record
arrives, so a worker with stale levels can send too much, never make the parent show too much.
"""

from __future__ import annotations

import contextlib
import logging
import pickle
import sys
import threading
from typing import Any, TextIO

from . import _protocol as wire
from ._protocol import STDOUT
from ._task import ChunkTask, Task

_MARK = "parallelize-levels"  # a key isEnabledFor never uses (its keys are ints)
_lock = threading.Lock()  # guards _version and _snapshot together
_version = 0
_snapshot = b""


def levels() -> tuple[int, bytes]:
    """(version, LEVELS payload) of the parent's levels now; the version changes with them."""
    global _version, _snapshot
    cache: dict[Any, Any] = getattr(logging.root, "_cache", {})
    if _MARK in cache:
        return _version, _snapshot
    with _lock:
        # The mark goes in before the snapshot is taken: a change made meanwhile drops it again.
        cache[_MARK] = True
        manager = logging.root.manager
        named = {
            name: logger.level
            for name, logger in list(manager.loggerDict.items())
            if isinstance(logger, logging.Logger) and logger.level != logging.NOTSET
        }
        _snapshot = pickle.dumps((logging.root.level, manager.disable, named), 5)
        _version += 1
        return _version, _snapshot


def replay(kind: int, payload: memoryview, task_name: str | None) -> None:
    """Write an OUTPUT frame's text, or handle a LOG frame's record, here. Never raises: a broken
    stream or handler must not stop the dispatcher thread."""
    try:
        if kind == wire.OUTPUT:
            _write(pickle.loads(payload))
        else:
            _handle(pickle.loads(payload), task_name)
    except Exception as exc:  # noqa: BLE001 - reported where it cannot recurse
        _fallback(f"parallelize: could not replay a worker's {_what(kind)}: {type(exc).__name__}: {exc}\n")


def replay_all(events: list[tuple[int, Any]], task: Task) -> None:
    """Replay what a dask task printed and logged (see _dask._capture), in order."""
    name = task_name(task)
    for stream, data in events:
        try:
            if stream:
                _write([(stream, data)])
            else:
                _handle(pickle.loads(data), name)
        except Exception as exc:  # noqa: BLE001 - as in replay
            _fallback(f"parallelize: could not replay a dask task's output: {type(exc).__name__}: {exc}\n")


def task_name(task: Task) -> str:
    """How a forwarded record names its task (``record.taskName``): 'mod.f(3)' for a call, the
    function for a map chunk (the worker does not say which item logged)."""
    return task.function.label if isinstance(task, ChunkTask) else task.describe()


def _write(pieces: list[tuple[int, str]]) -> None:
    for stream, text in pieces:
        target: TextIO | None = sys.stdout if stream == STDOUT else sys.stderr
        if target is None:  # pythonw, or closed by the program: nowhere to write, as for print()
            continue
        try:
            target.write(text)
        except Exception:  # noqa: BLE001 - a closed StringIO, say: the text still shows somewhere
            _fallback(text)


def _handle(fields: dict[str, Any], task_name: str | None) -> None:
    record = logging.makeLogRecord(fields)
    if task_name is not None:
        record.taskName = task_name
    logger = logging.getLogger(record.name)
    if logger.isEnabledFor(record.levelno):
        logger.handle(record)


def _fallback(text: str) -> None:
    stream = sys.__stderr__
    if stream is not None:
        with contextlib.suppress(Exception):  # nowhere left to write
            stream.write(text)


def _what(kind: int) -> str:
    return "output" if kind == wire.OUTPUT else "log record"
