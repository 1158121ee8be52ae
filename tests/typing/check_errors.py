"""The error classes as a type checker sees them (checked by mypy --strict, never executed).

Each error must keep its stdlib parents statically too, so ``except TimeoutError`` and friends are
typed, and must not degrade to Any (a class with an Any base accepts every attribute and assignment).
"""

from __future__ import annotations

import concurrent.futures
import pickle

from typing_extensions import assert_type

from parallelize import (
    ParallelizeError,
    PoolClosed,
    RemoteTraceback,
    SerializationError,
    TaskTimeout,
    WorkerCrashed,
    parallel,
)


@parallel
def slow(seconds: float) -> str:
    return str(seconds)


def the_tree() -> None:
    base: ParallelizeError = WorkerCrashed("worker 1 was killed by SIGKILL")
    timeout_as_builtin: TimeoutError = TaskTimeout("ran past 5 s")
    timeout_as_futures: concurrent.futures.TimeoutError = TaskTimeout("ran past 5 s")
    timeout_as_library: ParallelizeError = TaskTimeout("ran past 5 s")
    closed_as_runtime: RuntimeError = PoolClosed("the pool is shut down")
    closed_as_library: ParallelizeError = PoolClosed("the pool is shut down")
    pickling: pickle.PicklingError = SerializationError("cannot pickle a lock")
    type_error: TypeError = SerializationError("cannot pickle a lock")
    library: ParallelizeError = SerializationError("cannot pickle a lock")
    remote: Exception = RemoteTraceback("Traceback ...")
    print(base, timeout_as_builtin, timeout_as_futures, timeout_as_library)
    print(closed_as_runtime, closed_as_library, pickling, type_error, library, remote)


def the_attributes() -> None:
    crashed = WorkerCrashed("worker 7 exited with code 3", pid=7, exitcode=3)
    assert_type(crashed.pid, int | None)
    assert_type(crashed.exitcode, int | None)
    assert_type(WorkerCrashed("gone").pid, int | None)
    serialization = SerializationError("stand-in", original_type="mod.Error")
    assert_type(serialization.original_type, str | None)
    assert_type(RemoteTraceback("Traceback ...").text, str)
    assert_type(str(TaskTimeout("ran past 5 s")), str)


def catching() -> None:
    future = slow(10.0)
    try:
        assert_type(future.result(timeout=1), str)
    except TaskTimeout as timeout:
        assert_type(timeout, TaskTimeout)
    except WorkerCrashed as crashed:
        assert_type(crashed.exitcode, int | None)
    except SerializationError as error:
        assert_type(error.original_type, str | None)
    except ParallelizeError as error:
        assert_type(error, ParallelizeError)
    except TimeoutError as error:
        assert_type(error, TimeoutError)
    cause = future.exception(timeout=1)
    if cause is not None and isinstance(cause.__cause__, RemoteTraceback):
        assert_type(cause.__cause__.text, str)


def rejected() -> None:
    WorkerCrashed("gone", 7)  # type: ignore[call-arg]
    WorkerCrashed("gone", pid="7")  # type: ignore[arg-type]
    SerializationError("bad", "mod.Error")  # type: ignore[call-arg]
    TaskTimeout()  # type: ignore[call-arg]
    RemoteTraceback(3)  # type: ignore[arg-type]
    # Not an Any-typed class: unrelated types and unknown attributes stay errors.
    number: int = TaskTimeout("ran past 5 s")  # type: ignore[assignment]
    runtime: RuntimeError = TaskTimeout("ran past 5 s")  # type: ignore[assignment]
    timeout: TimeoutError = PoolClosed("closed")  # type: ignore[assignment]
    TaskTimeout("ran past 5 s").seconds  # type: ignore[attr-defined]  # noqa: B018
    WorkerCrashed("gone").signal  # type: ignore[attr-defined]  # noqa: B018
    print(number, runtime, timeout)
