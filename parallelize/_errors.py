"""The error tree, and how to describe a process that died.

    ParallelizeError                 every error raised on the library's own behalf
    +-- WorkerCrashed                the worker holding the task died (exit code or signal in the message)
    +-- TaskTimeout                  also TimeoutError (and concurrent.futures.TimeoutError on 3.10)
    +-- PoolClosed                   also RuntimeError: *you* shut the pool down, then submitted
    +-- PoolBroken                   also RuntimeError: *it* broke (its dispatcher failed); the
                                     failure is the __cause__, every pending task fails with it
    +-- SerializationError           also pickle.PicklingError and TypeError: an argument, a result or an
                                     exception could not cross the process boundary

A user's own exception is never wrapped: it comes back as its own type, with the worker's traceback
as ``__cause__`` (a ``RemoteTraceback``). Every class here survives a pickle round trip, because
workers build some of them and send them to the parent.

This module is imported by every worker, so it stays free of heavy imports.
"""

from __future__ import annotations

import pickle
import signal
import sys

__all__ = [
    "ParallelizeError",
    "PoolBroken",
    "PoolClosed",
    "RemoteTraceback",
    "SerializationError",
    "TaskTimeout",
    "WorkerCrashed",
    "describe_exit",
]


class ParallelizeError(Exception):
    """Base class of every error parallelize raises itself."""


class WorkerCrashed(ParallelizeError):
    """The worker process that held a task died before sending its result.

    The other tasks are unaffected and the pool replaces the worker. ``pid`` and ``exitcode`` are
    those of the dead worker (``exitcode`` is negative for a signal, as in ``multiprocessing``).
    """

    def __init__(self, message: str, *, pid: int | None = None, exitcode: int | None = None) -> None:
        super().__init__(message)
        self.pid = pid
        self.exitcode = exitcode

    def __reduce__(self) -> tuple[object, ...]:
        # Keyword-only arguments are not replayed by BaseException's default reduce.
        return (_rebuild_crashed, (str(self), self.pid, self.exitcode))


def _rebuild_crashed(message: str, pid: int | None, exitcode: int | None) -> WorkerCrashed:
    return WorkerCrashed(message, pid=pid, exitcode=exitcode)


# On 3.10 concurrent.futures.TimeoutError is its own class; from 3.11 it is the builtin. A timeout
# must be catchable as either, whichever the caller learnt. (Imported only where needed: workers
# import this module, and concurrent.futures pulls in logging.)
if sys.version_info >= (3, 11):
    _TimeoutBase = TimeoutError
else:
    import concurrent.futures

    class _TimeoutBase(TimeoutError, concurrent.futures.TimeoutError):
        """Both timeouts of Python 3.10 (typed as a class, so type checkers see the bases)."""


class TaskTimeout(ParallelizeError, _TimeoutBase):
    """A task ran past its time limit; its worker was stopped and replaced."""

    def __init__(self, message: str) -> None:
        # One argument only: OSError turns two into (errno, strerror).
        super().__init__(message)


class PoolClosed(ParallelizeError, RuntimeError):
    """Work was submitted to a pool after ``shutdown()``."""


class PoolBroken(ParallelizeError, RuntimeError):
    """The pool broke: its dispatcher thread failed, so it can run nothing more.

    Distinct from PoolClosed (*you* shut it down): the failure that broke it is the ``__cause__``,
    every task it held fails with this error, and submitting to it raises it. Create a new Pool;
    the default pool is replaced by the next call on its own.
    """


class SerializationError(ParallelizeError, pickle.PicklingError, TypeError):
    """An argument, result or exception could not be pickled or unpickled.

    Raised in the caller's thread for arguments (the pool is never touched), and set on the task's
    future for results and exceptions. When it stands in for a user exception that could not cross
    the boundary, ``original_type`` names that exception's class.
    """

    def __init__(self, message: str, *, original_type: str | None = None) -> None:
        super().__init__(message)
        self.original_type = original_type

    def __reduce__(self) -> tuple[object, ...]:
        return (_rebuild_serialization, (str(self), self.original_type))


def _rebuild_serialization(message: str, original_type: str | None) -> SerializationError:
    return SerializationError(message, original_type=original_type)


class RemoteTraceback(Exception):
    """The formatted traceback of an exception raised in a worker, attached as its ``__cause__``."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text

    def __str__(self) -> str:
        return self.text


def describe_exit(exitcode: int | None) -> str:
    """Say how a process ended, for error messages: 'was killed by SIGKILL', 'exited with code 3'."""
    if exitcode is None:
        return "vanished without an exit status"
    if exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = f"signal {-exitcode}"
        return f"was killed by {name}"
    return f"exited with code {exitcode}"


for _public in (
    ParallelizeError,
    WorkerCrashed,
    TaskTimeout,
    PoolClosed,
    PoolBroken,
    SerializationError,
    RemoteTraceback,
):
    _public.__module__ = "parallelize"
