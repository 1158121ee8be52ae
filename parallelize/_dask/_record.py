"""One of our tasks on a dask cluster: the bytes it travels as, its runs, and how they settle it.

A call runs as one dask task (again, under a new key, for a retry). A map chunk whose items have a
time limit may take several runs: when an item runs past its limit, the worker's timeout event
carries the outcomes of the items before it (the restart that stops the item loses them there),
and the rest of the chunk runs again from the item after it. The record keeps what is settled.
"""

from __future__ import annotations

import itertools
import os
import pickle
import uuid
from typing import Any

from .. import _logs
from .._encode import _argument_error, _check_arguments
from .._errors import SerializationError, TaskTimeout
from .._futures import rebuild_exception, settle
from .._outcomes import _after_attempts
from .._task import CallTask, ChunkResult, ChunkTask, Task
from . import _wire

__all__ = ["Record", "payload", "token"]

# distributed's Future is only partly typed; handled as Any here.
DaskFuture = Any
_counter = itertools.count(1)


class Record:
    """A task, its dask future now, and what a re-submission needs."""

    __slots__ = ("attempts", "dask", "errors", "key", "offset", "seconds", "task", "token", "values")

    def __init__(self, task: Task, token: str) -> None:
        self.task = task
        self.token = token
        self.attempts = 0
        self.key = ""
        self.dask: DaskFuture | None = None
        # Chunks: ``offset`` items are settled (by earlier runs), their outcomes kept here, and
        # the time the worker spent on them (what the map's chunk sizer learns from).
        self.offset = 0
        self.values: list[Any] = []
        self.errors: dict[int, BaseException] = {}
        self.seconds = 0.0

    def next_key(self) -> str:
        """A key per submission, never reused: a key still known to the client would hand back
        the old future (and its error) instead of running the task again."""
        return f"parallelize-{self.task.function.label}-{self.token}-{next(_counter)}"

    def finish(self, reply: tuple[bytes, list[Any]]) -> None:
        """Settle the task from a worker's reply, after replaying what it printed and logged."""
        task = self.task
        data, forwarded = reply
        if forwarded:
            _logs.replay_all(forwarded, task)
        try:
            ok, value, attempts = pickle.loads(data)
        except BaseException as exc:  # noqa: BLE001 - a result that cannot be rebuilt fails its own task
            error = SerializationError(
                f"the result of {task.describe()} could not be unpickled here: {type(exc).__name__}: {exc}"
            )
            error.__cause__ = exc
            settle(task.future, error=error)
            return
        where = f"{task.describe()} on a dask worker"
        if not ok:
            settle(task.future, error=_after_attempts(rebuild_exception(value, where), attempts))
        elif not isinstance(task, ChunkTask):
            settle(task.future, value)
        else:
            self._take_items(value)
            self._settle_chunk()

    def time_out_item(self, done: bytes, worker: str, limit: float) -> bool:
        """The item after the ``done`` ones ran past ``limit``: it fails, they are kept. True when
        that was the chunk's last item (the task is then settled)."""
        task = self.task
        assert isinstance(task, ChunkTask)
        self._take_items(pickle.loads(done)[1])
        self.errors[self.offset] = TaskTimeout(
            f"{task.describe_item(self.offset)} ran past its time limit of {limit:g} s on dask "
            f"worker {worker}; the worker was restarted"
        )
        self.values.append(None)
        self.offset += 1
        self.seconds += limit
        if self.offset == len(task.items):
            self._settle_chunk()
            return True
        self.attempts -= 1  # the rest of the chunk starts afresh: its first item has not run
        return False

    def _take_items(self, value: tuple[list[Any], dict[int, Any], float]) -> None:
        """Add a run of the chunk's items (from ``offset`` on) to what is settled of it."""
        task = self.task
        assert isinstance(task, ChunkTask)
        values, envelopes, seconds = value
        for index, envelope in envelopes.items():
            where = f"{task.describe_item(self.offset + index)} on a dask worker"
            self.errors[self.offset + index] = rebuild_exception(envelope, where)
        self.values += values
        self.offset += len(values)
        self.seconds += seconds

    def _settle_chunk(self) -> None:
        settle(self.task.future, ChunkResult(self.values, self.errors, self.seconds))


def token() -> str:
    """Names one run of a task in the worker's events and ``holding``; unique across callers."""
    return f"{os.getpid()}-{next(_counter)}-{uuid.uuid4().hex[:12]}"


def payload(task: Task, offset: int) -> bytes:
    """The call, or the chunk's items from ``offset`` on; a map's ``timeout`` is per item."""
    handle = task.function
    reference = handle._facts.reference  # by name, or None: no by-value pickle made for nothing
    part = _wire.function_part(reference, handle.function) if reference else handle.function
    options = task.options
    if isinstance(task, CallTask):
        message: tuple[Any, ...] = (_wire.CALL, part, task.args, task.kwargs)
    else:
        assert isinstance(task, ChunkTask)
        message = (_wire.CHUNK, part, task.items[offset:], task.bare)
    message += (options.retries, options.retry_on, options.timeout, handle.label, _logs.levels()[1])
    try:
        return _wire.dumps(message)
    except Exception as exc:
        raise _encoding_error(task, part, exc) from exc


def _encoding_error(task: Task, part: object, exc: Exception) -> SerializationError:
    handle = task.function
    if not isinstance(part, tuple):
        try:
            _wire.dumps(part)
        except Exception as error:  # noqa: BLE001 - the function itself is the culprit
            return SerializationError(
                f"{handle.label} cannot be sent to a dask worker: it is neither importable by "
                f"name nor picklable by value ({type(error).__name__}: {error})"
            )
    if isinstance(task, CallTask):
        return _argument_error(handle, task.args, task.kwargs, exc)
    assert isinstance(task, ChunkTask)
    try:
        for item in task.items:
            _check_arguments(handle, (item,) if task.bare else item, {}, exc)
    except SerializationError as named:
        return named
    return SerializationError(
        f"the arguments of a map over {handle.label} could not be pickled: {type(exc).__name__}: {exc}"
    )
