"""What a worker's answers, and its failures, become in the caller's futures.

The dispatcher decides when a task is finished or lost; this module turns the bytes it heard (or
the way the worker died) into values and exceptions, with messages that name the task, the
worker and what happens next. Describing a call (a repr of its arguments) is not free, so it is
done on error paths only.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

from . import _protocol as wire
from ._errors import ParallelizeError, PoolBroken, SerializationError, TaskTimeout, WorkerCrashed
from ._futures import rebuild_exception, settle
from ._guard import UNGUARDED_MAIN, unguarded_main
from ._serialize import loads
from ._task import ChunkTask, Task

# Builds the error of a lost task from how many attempts it had.
ErrorFactory = Callable[[int], BaseException]


def resolve(task: Task, kind: int, attempt: int, payload: memoryview, pid: int) -> None:
    """Settle ``task`` with the RESULT or ERROR its worker sent."""
    try:
        if kind == wire.ERROR:
            where = f"{task.describe()} in worker {pid}"
            settle(task.future, error=_after_attempts(rebuild_exception(loads(payload), where), attempt))
            return
        value = loads(payload)
    # BaseException: a user's object may raise SystemExit while it is rebuilt; here, in the
    # dispatcher thread, that would end the thread and leave every future pending for good.
    except BaseException as exc:  # noqa: BLE001 - a result that cannot be rebuilt fails its own task
        settle(task.future, error=_not_unpicklable(task, pid, exc))
        return
    if not isinstance(task, ChunkTask):
        settle(task.future, value)
        return
    values, envelopes, seconds = value
    for index, envelope in envelopes.items():
        call = task.describe_item(task.done + index)
        task.errors[task.done + index] = rebuild_exception(envelope, f"{call} in worker {pid}")
    if task.done:
        task.values.extend(values)
    else:
        task.values = values  # the usual case, a chunk in one run: no copy
    task.done += len(values)
    settle(task.future, task.result(seconds))


def record_item(task: ChunkTask, payload: memoryview, pid: int) -> None:
    """Keep the outcome of the next item of a per-item (RUN_EACH) chunk."""
    error: BaseException | None = None
    try:
        ok, value = loads(payload)
        if not ok:
            error = rebuild_exception(value, f"{task.describe()} in worker {pid}")
            value = None
    except BaseException as exc:  # noqa: BLE001 - fails this item only, SystemExit included (see resolve)
        error, value = _not_unpicklable(task, pid, exc), None
    task.settle_item(value, error)
    task.attempts = 1  # the worker went straight on to the next item's first attempt


def _not_unpicklable(task: Task, pid: int, exc: BaseException) -> SerializationError:
    error = SerializationError(
        f"the result of {task.describe()} in worker {pid} could not be unpickled here: "
        f"{type(exc).__name__}: {exc}"
    )
    error.__cause__ = exc
    return error


def timed_out(task: Task, pid: int) -> ErrorFactory:
    limit = task.options.timeout or 0.0
    what = task.describe()
    return lambda attempts: TaskTimeout(
        f"{what} ran past its time limit of {limit:g} s in worker {pid}{_tries(attempts)}; "
        f"the worker was stopped and replaced"
    )


def over_memory(task: Task, pid: int, limit: int, resident: int) -> ErrorFactory:
    what = task.describe()
    return lambda attempts: WorkerCrashed(
        f"worker {pid} went over the memory limit of {_size(limit)} (resident "
        f"{_size(resident)}) while running {what}{_tries(attempts)}; it was stopped and replaced",
        pid=pid,
    )


def crashed(task: Task, pid: int, how: str, exitcode: int | None) -> ErrorFactory:
    what = task.describe()
    return lambda attempts: WorkerCrashed(
        f"worker {pid} {how} while running {what}{_tries(attempts)}; "
        f"the pool replaces it and the other tasks are unaffected",
        pid=pid,
        exitcode=exitcode,
    )


def never_ready(
    task: Task, pid: int, how: str, exitcode: int | None, envelope: bytes | None
) -> WorkerCrashed:
    """The error of the task a worker that died before READY costs (see _fail_one_for_boot)."""
    if envelope is not None:
        cause: BaseException | None = rebuild_exception(loads(envelope), f"the initializer in worker {pid}")
        reason = f"failed its initializer ({type(cause).__name__}: {cause}) and {how}"
    else:
        cause, reason = None, f"{how} before it was ready"
    message = f"worker {pid} {reason}, so {task.describe()} did not run"
    if exitcode == UNGUARDED_MAIN:
        message = unguarded_main(pid, task.describe())
    error = WorkerCrashed(message, pid=pid, exitcode=exitcode)
    error.__cause__ = cause
    return error


def no_worker(exc: BaseException) -> Callable[[Task], BaseException]:
    """The error of the task that no worker could be started for (out of memory, of fds...)."""

    def error(task: Task) -> BaseException:
        error = ParallelizeError(
            f"no worker could be started for {task.describe()} ({type(exc).__name__}: {exc}); "
            f"the pool will try again for the next task"
        )
        error.__cause__ = exc
        return error

    return error


def broken(cause: BaseException) -> Callable[[Task], BaseException]:
    """The error of every task a dispatcher held when it failed of an internal error."""

    def error(task: Task) -> BaseException:
        error = PoolBroken(
            f"the pool broke while it held {task.describe()}: its dispatcher failed "
            f"({type(cause).__name__}: {cause}); the task was abandoned, and the pool runs "
            f"nothing more"
        )
        error.__cause__ = cause
        return error

    return error


def _tries(attempts: int) -> str:
    return f" (gave up after {attempts} attempts)" if attempts > 1 else ""


def _after_attempts(exc: BaseException, attempts: int) -> BaseException:
    if attempts > 1 and sys.version_info >= (3, 11):
        exc.add_note(f"gave up after {attempts} attempts")
    return exc


def _size(n: int) -> str:
    for unit, scale in (("GB", 10**9), ("MB", 10**6), ("kB", 10**3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"
