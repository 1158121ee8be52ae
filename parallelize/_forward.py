"""In a worker: what tasks print and log goes to the parent, through the worker's result pipe.

::

    print() / sys.stdout / sys.stderr --> _Stream: a line buffer shared by both streams
    logging.getLogger(n).info(...) -----> _Handler (on the worker's root logger): the record,
                                          message formatted, exc_info as text
                                          |
    send(message) ------------------------+--> OUTPUT / LOG frames, then the message itself

Every frame the worker sends goes through ``Forwarder.send``, which first writes what is pending,
so output and records reach the parent in the order they were made and always before the result
of the task that made them: the parent writes them before it settles the future (see _logs).
Output is line buffered, as on a terminal: a write that ends a line (or fills 8 KiB) goes at once,
a partial line waits for its end, a ``flush()`` or the end of the task. A record goes at once. Any
thread may write; one lock keeps frames whole on the pipe.

The worker's loggers get the parent's levels (``apply_levels``, from the LEVELS messages the
parent sends when its levels change), so a record the parent would drop is never even made here.

Only Python-level writes are caught: C code and subprocesses writing to file descriptors 1 and 2
write to the worker's inherited descriptors, as before. ``sys.stdout.buffer`` and ``fileno()``
are those descriptors too, so code that needs a real file keeps working.

Imported by every worker: standard library only.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import logging
import multiprocessing
import pickle
import sys
import threading
from collections.abc import Callable
from typing import Any, TextIO

from . import _protocol as wire

# A partial line longer than this is sent without waiting for its end.
LINE_LIMIT = 8192

# (stream, text) pieces waiting to be sent, in the order they were written.
Pending = list[tuple[int, str]]


class Forwarder:
    """The worker's one way out: frames, with the output and records that came before them."""

    def __init__(self, send_bytes: Callable[[bytes], None]) -> None:
        self._send_bytes = send_bytes
        self._lock = threading.Lock()  # guards _pending, _size and the pipe's writes
        self._pending: Pending = []
        self._size = 0
        self.task_id = 0  # the task running now (0: none), named in OUTPUT and LOG frames

    def send(self, message: bytes) -> None:
        with self._lock:
            if self._pending:
                self._write_pending()
            self._send_bytes(message)

    def write(self, stream: int, text: str) -> None:
        with self._lock:
            self._pending.append((stream, text))
            self._size += len(text)
            if "\n" in text or self._size >= LINE_LIMIT:
                self._write_pending(keep=True)

    def flush(self) -> None:
        with self._lock:
            if self._pending:
                self._write_pending(keep=True)

    def record(self, data: bytes) -> None:
        with self._lock:
            if self._pending:
                self._write_pending(keep=True)
            # OSError: the parent is gone, and so is the logger this was for
            with contextlib.suppress(OSError):
                self._send_bytes(wire.pack(wire.LOG, self.task_id, data))

    def _write_pending(self, *, keep: bool = False) -> None:
        """Send what is pending. With ``keep`` (a write by the task, or at exit), text the pipe
        no longer takes goes to the inherited descriptors rather than raise in the task."""
        pending, self._pending, self._size = self._pending, [], 0
        merged = _merged(pending)
        try:
            self._send_bytes(wire.pack(wire.OUTPUT, self.task_id, pickle.dumps(merged, 5)))
        except OSError:
            if not keep:
                raise
            for stream, text in merged:
                original = sys.__stdout__ if stream == wire.STDOUT else sys.__stderr__
                if original is not None:
                    original.write(text)


def _merged(pending: Pending) -> Pending:
    """Consecutive pieces of one stream as one: a print() is two writes."""
    if len(pending) == 1:
        return pending
    return [(stream, "".join(text for _, text in run)) for stream, run in itertools.groupby(pending, _stream)]


def _stream(piece: tuple[int, str]) -> int:
    return piece[0]


class _Stream(io.TextIOBase):
    """``sys.stdout`` or ``sys.stderr`` of a worker: text goes to the parent's stream of that name."""

    def __init__(self, forwarder: Forwarder, number: int, original: TextIO | None) -> None:
        super().__init__()
        self._forwarder = forwarder
        self._number = number
        self._original = original

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return "utf-8"

    @property
    def errors(self) -> str:  # type: ignore[override]
        return "strict"

    @property
    def buffer(self) -> Any:
        """The inherited descriptor's binary stream: bytes written there are not forwarded."""
        return getattr(self._original, "buffer", None)

    def fileno(self) -> int:
        if self._original is None:
            raise io.UnsupportedOperation("fileno")
        return self._original.fileno()

    def isatty(self) -> bool:
        return False

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        if not isinstance(text, str):
            raise TypeError(f"write() argument must be str, not {type(text).__name__}")
        if text:
            self._forwarder.write(self._number, text)
        return len(text)

    def flush(self) -> None:
        self._forwarder.flush()


class _Handler(logging.Handler):
    """Sends each record that reaches the worker's root logger to the parent's logger of its name."""

    def __init__(self, forwarder: Forwarder) -> None:
        super().__init__()
        self._forwarder = forwarder

    def emit(self, record: logging.LogRecord) -> None:
        try:
            data = record_bytes(record)
        except Exception:  # noqa: BLE001 - logging's own policy: report on stderr, go on
            self.handleError(record)
            return
        self._forwarder.record(data)


_formatter = logging.Formatter()


def record_bytes(record: logging.LogRecord) -> bytes:
    """The record as the parent rebuilds it: the message already formatted (its arguments may not
    pickle), an exception as its traceback text."""
    fields = dict(record.__dict__)
    fields["msg"] = record.getMessage()
    fields["args"] = None
    if record.exc_info:
        fields["exc_text"] = record.exc_text or _formatter.formatException(record.exc_info)
    fields["exc_info"] = None
    try:
        return pickle.dumps(fields, 5)
    except Exception:  # noqa: BLE001 - an `extra` value that cannot be pickled travels as its repr
        plain = (str, int, float, bool, type(None))
        return pickle.dumps({k: v if isinstance(v, plain) else repr(v) for k, v in fields.items()}, 5)


# -- installing it ----------------------------------------------------------------------------------

# The worker's forwarder, once install() ran (None in the parent).
forwarder: Forwarder | None = None
_handler: _Handler | None = None
# False once an initializer configured logging itself: the worker's levels are then its own.
_syncing = True
# Names of the loggers whose level the parent set: reset when the parent unsets one.
_leveled: set[str] = set()


def install(send_bytes: Callable[[bytes], None], levels: bytes | None) -> Forwarder:
    """Replace the worker's sys.stdout, sys.stderr and root handlers; returns the forwarder,
    whose ``send`` the worker uses for every frame."""
    global forwarder, _handler
    forwarder = Forwarder(send_bytes)
    sys.stdout = _Stream(forwarder, wire.STDOUT, sys.__stdout__)
    sys.stderr = _Stream(forwarder, wire.STDERR, sys.__stderr__)
    if levels is not None:
        apply_levels(levels)
    if getattr(multiprocessing.current_process(), "_start_method", None) == "fork":
        _drop_inherited_handlers()
    root = logging.getLogger()
    if not root.handlers:
        _handler = _Handler(forwarder)
        root.addHandler(_handler)
    return forwarder


def _drop_inherited_handlers() -> None:
    """A forked worker has copies of the parent's handlers; they are the parent's to run (a file
    written by every worker at once, every record twice), so records go to the parent instead,
    all of them through the root (the parent applies its own ``propagate`` when it handles them)."""
    loggers = [logging.getLogger(), *logging.Logger.manager.loggerDict.values()]
    for logger in loggers:
        if isinstance(logger, logging.Logger):
            for handler in list(logger.handlers):
                logger.removeHandler(handler)
            logger.propagate = True


def keep_user_logging() -> None:
    """After the initializer: if it configured logging in the worker itself (a handler of its own
    on the root logger), its configuration rules here and records are not forwarded."""
    global _syncing
    root = logging.getLogger()
    if _handler is None or any(h is not _handler for h in root.handlers):
        _syncing = False
        if _handler is not None:
            root.removeHandler(_handler)


def apply_levels(data: bytes | memoryview) -> None:
    """Give the worker's loggers the parent's levels (a LEVELS payload; see _logs.levels)."""
    if not _syncing:
        return
    root_level, disabled, named = pickle.loads(data)
    logging.getLogger().setLevel(root_level)
    logging.disable(disabled)
    for name in _leveled - named.keys():
        logging.getLogger(name).setLevel(logging.NOTSET)
    for name, level in named.items():
        logging.getLogger(name).setLevel(level)
    _leveled.clear()
    _leveled.update(named)
