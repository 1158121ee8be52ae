"""Errors: what cannot cross the process boundary, crashed workers, and the error classes."""

from __future__ import annotations

import concurrent.futures
import pickle
import signal
import threading
from collections.abc import Callable
from typing import Any

import pytest

import parallelize
from parallelize import (
    ParallelizeError,
    Pool,
    PoolClosed,
    PoolState,
    RemoteTraceback,
    SerializationError,
    TaskTimeout,
    WorkerCrashed,
)

from . import workers
from .conftest import pid_alive

RESULT_TIMEOUT = 30

pytestmark = pytest.mark.timeout(30)


# -- arguments -------------------------------------------------------------------------------------


def test_unpicklable_argument_raises_at_call_time_naming_it(pool1: Pool) -> None:
    with pytest.raises(SerializationError) as info:
        pool1.submit(workers.identity, threading.Lock())
    error = info.value
    message = str(error)
    assert "argument 'x'" in message
    assert "_thread.lock" in message
    assert "tests.workers.identity" in message
    assert isinstance(error, TypeError)
    assert isinstance(error, pickle.PicklingError)
    assert isinstance(error, ParallelizeError)
    # the pool was never touched: nothing started, and it serves the next call
    assert pool1.state is PoolState.NEW
    assert pool1.worker_pids() == []
    assert pool1.submit(workers.square, 3).result(timeout=RESULT_TIMEOUT) == 9


def test_unpicklable_keyword_argument_is_named(pool1: Pool) -> None:
    with pytest.raises(SerializationError, match="argument 'value'") as info:
        pool1.submit(workers.sleep_then, 0, value=threading.Lock())
    assert "_thread.lock" in str(info.value)
    assert pool1.state is PoolState.NEW


def test_unpicklable_argument_of_a_decorated_function_raises_at_the_call() -> None:
    lock = threading.Lock()
    with pytest.raises(SerializationError, match="argument 'x'"):
        workers.decorated_square(lock)  # type: ignore[arg-type]
    assert workers.default_pool_pids() == []
    assert workers.decorated_square(4).result(timeout=RESULT_TIMEOUT) == 16


def test_argument_that_fails_to_unpickle_in_the_worker(pool1: Pool) -> None:
    future = pool1.submit(workers.identity, workers.FailsToUnpickle())
    with pytest.raises(SerializationError, match="refuses to be unpickled"):
        future.result(timeout=RESULT_TIMEOUT)
    assert pool1.submit(workers.square, 5).result(timeout=RESULT_TIMEOUT) == 25


# -- results and exceptions ------------------------------------------------------------------------


def test_unpicklable_result_fails_its_future_only(pool1: Pool) -> None:
    future = pool1.submit(workers.return_lock)
    with pytest.raises(SerializationError) as info:
        future.result(timeout=RESULT_TIMEOUT)
    message = str(info.value)
    assert "return_lock" in message
    assert "_thread.lock" in message
    assert pool1.submit(workers.square, 6).result(timeout=RESULT_TIMEOUT) == 36


def test_unpicklable_exception_becomes_a_serialization_error(pool1: Pool) -> None:
    future = pool1.submit(workers.raise_unpicklable, "cannot travel")
    with pytest.raises(SerializationError) as info:
        future.result(timeout=RESULT_TIMEOUT)
    error = info.value
    assert error.original_type == "tests.workers.UnpicklableError"
    assert "UnpicklableError" in str(error)
    assert "cannot travel" in str(error)
    assert isinstance(error.__cause__, RemoteTraceback)
    assert "raise_unpicklable" in error.__cause__.text
    assert pool1.submit(workers.square, 2).result(timeout=RESULT_TIMEOUT) == 4


def test_exception_that_cannot_be_rebuilt_becomes_a_serialization_error(pool1: Pool) -> None:
    future = pool1.submit(workers.raise_unrebuildable)
    with pytest.raises(SerializationError) as info:
        future.result(timeout=RESULT_TIMEOUT)
    error = info.value
    assert error.original_type == "tests.workers.UnrebuildableError"
    assert "left/right" in str(error)
    assert isinstance(error.__cause__, RemoteTraceback)
    assert "raise_unrebuildable" in error.__cause__.text
    assert pool1.submit(workers.square, 2).result(timeout=RESULT_TIMEOUT) == 4


def test_system_exit_in_a_task_fails_the_task_not_the_worker(pool1: Pool) -> None:
    pid = pool1.submit(workers.getpid).result(timeout=RESULT_TIMEOUT)
    future = pool1.submit(workers.raise_system_exit, 3)
    with pytest.raises(SystemExit) as info:
        future.result(timeout=RESULT_TIMEOUT)
    assert info.value.code == 3
    assert pool1.submit(workers.getpid).result(timeout=RESULT_TIMEOUT) == pid
    assert pool1.worker_pids() == [pid]


# -- the error classes -----------------------------------------------------------------------------

ERRORS = [WorkerCrashed, TaskTimeout, PoolClosed, SerializationError]


@pytest.mark.parametrize("cls", [ParallelizeError, *ERRORS, RemoteTraceback])
def test_error_classes_are_exported(cls: type[BaseException]) -> None:
    assert cls.__name__ in parallelize.__all__
    assert getattr(parallelize, cls.__name__) is cls
    assert cls.__module__ == "parallelize"


@pytest.mark.parametrize("cls", ERRORS)
def test_error_classes_subclass_parallelize_error(cls: type[BaseException]) -> None:
    assert issubclass(cls, ParallelizeError)
    assert issubclass(ParallelizeError, Exception)


def test_stdlib_parents() -> None:
    assert issubclass(TaskTimeout, TimeoutError)
    assert issubclass(TaskTimeout, concurrent.futures.TimeoutError)
    assert issubclass(PoolClosed, RuntimeError)
    assert issubclass(SerializationError, TypeError)
    assert issubclass(SerializationError, pickle.PicklingError)
    with pytest.raises(concurrent.futures.TimeoutError):
        raise TaskTimeout("too slow")
    with pytest.raises(TimeoutError):
        raise TaskTimeout("too slow")


def round_trip(error: BaseException) -> Any:
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is type(error)
    assert str(copy) == str(error)
    return copy


def test_errors_survive_a_pickle_round_trip() -> None:
    crashed = round_trip(WorkerCrashed("worker 12 was killed by SIGKILL", pid=12, exitcode=-9))
    assert (crashed.pid, crashed.exitcode) == (12, -9)
    bare = round_trip(WorkerCrashed("no details"))
    assert (bare.pid, bare.exitcode) == (None, None)
    serial = round_trip(SerializationError("could not cross", original_type="mod.Broken"))
    assert serial.original_type == "mod.Broken"
    assert round_trip(SerializationError("no type")).original_type is None
    round_trip(TaskTimeout("ran past its limit"))
    round_trip(PoolClosed("the pool is shut down"))
    round_trip(ParallelizeError("generic"))
    assert round_trip(RemoteTraceback("Traceback ...\nValueError: x")).text == "Traceback ...\nValueError: x"


# -- crashed workers -------------------------------------------------------------------------------

CRASHES: list[tuple[Callable[..., object], tuple[object, ...], str, int]] = [
    (workers.kill_self, (), "was killed by SIGKILL", -signal.SIGKILL),
    (workers.exit_with, (3,), "exited with code 3", 3),
]


@pytest.mark.parametrize(("function", "args", "how", "exitcode"), CRASHES, ids=["sigkill", "exit-3"])
def test_a_crashed_worker_fails_only_its_task(
    start_method: str, function: Callable[..., object], args: tuple[object, ...], how: str, exitcode: int
) -> None:
    with Pool(1, start_method=start_method) as pool:
        pid = pool.submit(workers.getpid).result(timeout=RESULT_TIMEOUT)
        with pytest.raises(WorkerCrashed) as info:
            pool.submit(function, *args).result(timeout=RESULT_TIMEOUT)
        error = info.value
        message = str(error)
        assert f"worker {pid} {how}" in message
        assert f"tests.workers.{function.__name__}(" in message
        assert error.pid == pid
        assert error.exitcode == exitcode
        assert not pid_alive(pid)
        # the pool replaced the worker and serves a normal call
        assert pool.submit(workers.square, 7).result(timeout=RESULT_TIMEOUT) == 49
        new_pid = pool.submit(workers.getpid).result(timeout=RESULT_TIMEOUT)
        assert new_pid != pid
        assert pool.state is PoolState.RUNNING


def test_a_crash_leaves_other_tasks_alone() -> None:
    with Pool(2) as pool:
        good = [pool.submit(workers.square, i) for i in range(4)]
        bad = pool.submit(workers.exit_with, 3)
        more = [pool.submit(workers.square, i) for i in range(4, 8)]
        with pytest.raises(WorkerCrashed, match="exited with code 3"):
            bad.result(timeout=RESULT_TIMEOUT)
        assert [f.result(timeout=RESULT_TIMEOUT) for f in good + more] == [i * i for i in range(8)]


@pytest.mark.timeout(45)
def test_a_failing_initializer_fails_tasks_and_does_not_spin() -> None:
    with Pool(1, initializer=workers.initializer_fails) as pool:
        futures = [pool.submit(workers.square, i) for i in range(3)]
        for future in futures:
            with pytest.raises(WorkerCrashed, match="initializer") as info:
                future.result(timeout=RESULT_TIMEOUT)
            assert "initializer failed on purpose" in str(info.value)
            assert "tests.workers.square(" in str(info.value)
            assert isinstance(info.value.__cause__, RuntimeError)
    assert pool.state is PoolState.CLOSED
    assert pool.worker_pids() == []
