"""In a dask worker: what a parallelize task prints and logs, kept and sent back with its result.

A dask worker runs several tasks at once, each in a thread of its own, in a process it shares
with dask, so nothing goes out while a task runs: each task thread collects its own (a
thread-local list) and the list travels with the reply; the caller replays it (``_logs.replay_all``)
before it settles the future, so the output still comes before the result, in the order written.

    sys.stdout / sys.stderr --> _Router: the running task's list, or the original stream
    root logger ------------> _Handler: the running task's list, or (for dask's own records, when
                              nothing else would handle them) logging's last resort, as before

The caller's levels come with each task and are applied to the process's loggers, so a task's
records the caller would drop are not made; dask's own loggers have levels of their own. What
threads started by a task print, and what C code writes to file descriptors, is not captured.
"""

from __future__ import annotations

import io
import logging
import sys
import threading
from typing import Any, TextIO

from .. import _forward
from .. import _protocol as wire

# One event: (1 or 2 for stdout or stderr, text) or (0, a pickled record).
Event = tuple[int, Any]
RECORD = 0

_local = threading.local()  # .events: the running task's list, or None
_install_lock = threading.Lock()
_installed = False
_levels: bytes | None = None  # the caller's levels last applied (see _forward.apply_levels)


def begin() -> list[Event]:
    """The calling thread runs a task from now on: returns the list its output goes to."""
    _install()
    events: list[Event] = []
    _local.events = events
    return events


def end() -> None:
    _local.events = None


def follow_levels(levels: bytes) -> None:
    global _levels
    if levels != _levels:
        _levels = levels
        _forward.apply_levels(levels)


def _install() -> None:
    global _installed
    if _installed:
        return
    with _install_lock:
        if not _installed:
            sys.stdout = _Router(wire.STDOUT, sys.stdout)
            sys.stderr = _Router(wire.STDERR, sys.stderr)
            logging.getLogger().addHandler(_Handler())
            _installed = True


def _events() -> list[Event] | None:
    events: list[Event] | None = getattr(_local, "events", None)
    return events


class _Router(io.TextIOBase):
    def __init__(self, number: int, original: TextIO) -> None:
        super().__init__()
        self._number = number
        self._original = original

    def write(self, text: str) -> int:
        events = _events()
        if events is None:
            return self._original.write(text)
        if not isinstance(text, str):
            raise TypeError(f"write() argument must be str, not {type(text).__name__}")
        events.append((self._number, text))
        return len(text)

    def flush(self) -> None:
        if _events() is None:
            self._original.flush()

    def writable(self) -> bool:
        return True

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return str(getattr(self._original, "encoding", None) or "utf-8")

    def fileno(self) -> int:
        return self._original.fileno()

    def isatty(self) -> bool:
        return _events() is None and self._original.isatty()

    def __getattr__(self, name: str) -> Any:  # encoding, buffer, ...: the original's
        return getattr(self._original, name)


class _Handler(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        events = _events()
        if events is not None:
            try:
                events.append((RECORD, _forward.record_bytes(record)))
            except Exception:  # noqa: BLE001 - logging's own policy: report, go on
                self.handleError(record)
            return
        # Not a task's: as if this handler were not there (logging's last resort, when alone)
        root = logging.getLogger()
        last = logging.lastResort
        alone = all(isinstance(handler, _Handler) for handler in root.handlers)
        if alone and last is not None and record.levelno >= last.level:
            last.handle(record)
