"""Faults: a dying worker, a task past its deadline, a cancelled task or bad data costs one task.

The matrix at the top has one row per fault and runs on every start method: each row checks the
exact error type, the parts of its message a user needs (the call, the worker's pid, how it died
or which limit it broke), what became of the worker, and that the pool then serves a normal call.
The tests below it cover what surrounds a fault: other tasks completing, the pool's size, map
chunks, cancellation, retries, recycling, nesting and shutdown.

Tasks write their worker's pid to a marker file before misbehaving (see fault_tasks), and tests
wait for that file, never for a fixed time.
"""

from __future__ import annotations

import concurrent.futures
import gc
import os
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

import parallelize
from parallelize import (
    Pool,
    PoolState,
    RemoteTraceback,
    SerializationError,
    TaskTimeout,
    WorkerCrashed,
    _scheduler,
)
from tests import fault_tasks as ft
from tests import workers
from tests.conftest import pid_alive, wait_until

WAIT = 30  # seconds: the bound on every blocking call in this file


# -- the fault matrix ----------------------------------------------------------------------------------


def _submit(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Callable[[Pool, str], Any]:
    """A row's call: submit ``fn(marker, *args)`` to the row's pool and wait for the result."""

    def call(pool: Pool, marker: str) -> Any:
        return pool.submit(fn, marker, *args, **kwargs).result(timeout=WAIT)

    return call


def _cancel_running(pool: Pool, marker: str) -> Any:
    future = pool.submit(ft.hang, marker)
    wait_until(lambda: os.path.exists(marker), WAIT, "the task to start")
    assert future.cancel() is True
    assert future.cancelled()
    return future.result(timeout=WAIT)


def _bad_argument(pool: Pool, marker: str) -> Any:
    return pool.submit(ft.never_called, workers.FailsToUnpickle()).result(timeout=WAIT)


def _is_timeout(error: BaseException) -> None:
    # Catchable as either timeout a caller may know (distinct classes on 3.10).
    assert isinstance(error, TimeoutError)
    assert isinstance(error, concurrent.futures.TimeoutError)


def _exited(code: int) -> Callable[[BaseException], None]:
    def check(error: BaseException) -> None:
        assert isinstance(error, WorkerCrashed)
        assert error.exitcode == code

    return check


def _stands_in_for(type_name: str) -> Callable[[BaseException], None]:
    def check(error: BaseException) -> None:
        assert isinstance(error, SerializationError)
        assert error.original_type == type_name
        assert isinstance(error.__cause__, RemoteTraceback)
        assert type_name.rsplit(".", 1)[1] in error.__cause__.text  # the worker's traceback

    return check


def _remote_cause(error: BaseException) -> None:
    assert isinstance(error.__cause__, RemoteTraceback)


def _argument_note(error: BaseException) -> None:
    _remote_cause(error)
    if sys.version_info >= (3, 11):  # the note names the call; the message cannot (it never ran)
        assert any("tests.fault_tasks.never_called(" in note for note in error.__notes__)


@dataclass(frozen=True)
class Fault:
    id: str
    call: Callable[[Pool, str], Any]  # makes the call and returns its result (it must raise)
    error: type[BaseException]
    message: tuple[str, ...]  # parts of str(error); "{pid}" is the pid of the worker that was hit
    target: str = "pool"  # where the call runs: "pool", "default" (the default pool), "isolated"
    replaced: bool = True  # the worker is gone afterwards (False: it stays and keeps serving)
    check: Callable[[BaseException], None] | None = None  # further checks on the error
    pool_options: dict[str, Any] = field(default_factory=dict)


FAULTS = [
    Fault(
        "exit-3",
        _submit(ft.crash_exit, 3),
        WorkerCrashed,
        ("worker {pid} exited with code 3", "tests.fault_tasks.crash_exit("),
        check=_exited(3),
    ),
    Fault(
        "sigkill",
        _submit(ft.crash_signal, signal.SIGKILL),
        WorkerCrashed,
        ("worker {pid} was killed by SIGKILL", "tests.fault_tasks.crash_signal("),
        check=_exited(-signal.SIGKILL),
    ),
    Fault(
        "segfault",
        _submit(ft.crash_segfault),
        WorkerCrashed,
        ("worker {pid} was killed by SIGSEGV", "tests.fault_tasks.crash_segfault("),
        check=_exited(-signal.SIGSEGV),
    ),
    Fault(
        "sigterm",
        _submit(ft.crash_signal, signal.SIGTERM),
        WorkerCrashed,
        ("worker {pid} was killed by SIGTERM", "tests.fault_tasks.crash_signal("),
        check=_exited(-signal.SIGTERM),
    ),
    Fault(
        "submit-timeout",
        _submit(ft.hang, timeout=0.5),
        TaskTimeout,
        ("tests.fault_tasks.hang(", "ran past its time limit of 0.5 s", "worker {pid}"),
        check=_is_timeout,
    ),
    Fault(
        "parallel-timeout",
        lambda pool, marker: ft.parallel_hang(marker).result(timeout=WAIT),
        TaskTimeout,
        ("tests.fault_tasks.parallel_hang(", "ran past its time limit of 0.5 s", "worker {pid}"),
        target="default",
        check=_is_timeout,
    ),
    Fault(
        "in-process-timeout",
        lambda pool, marker: ft.inproc_hang(marker),
        TaskTimeout,
        ("tests.fault_tasks.inproc_hang(", "ran past its time limit of 0.5 s", "worker {pid}"),
        target="default",
        check=_is_timeout,
    ),
    Fault(
        "isolated-timeout",
        lambda pool, marker: ft.isolated_hang(marker),
        TaskTimeout,
        ("tests.fault_tasks.isolated_hang(", "ran past its time limit of 0.5 s", "worker {pid}"),
        target="isolated",
        check=_is_timeout,
    ),
    Fault("cancel-running", _cancel_running, concurrent.futures.CancelledError, ()),
    Fault(
        "unpicklable-result",
        _submit(ft.unpicklable_result),
        SerializationError,
        ("the result of tests.fault_tasks.unpicklable_result", "could not be pickled in worker {pid}"),
        replaced=False,
        check=_remote_cause,
    ),
    Fault(
        "unpicklable-exception",
        _submit(ft.raise_unpicklable),
        SerializationError,
        (
            "tests.fault_tasks.raise_unpicklable(",
            "in worker {pid}",
            "raised tests.workers.UnpicklableError: cannot travel",
        ),
        replaced=False,
        check=_stands_in_for("tests.workers.UnpicklableError"),
    ),
    Fault(
        "unrebuildable-exception",
        _submit(ft.raise_unrebuildable),
        SerializationError,
        (
            "tests.fault_tasks.raise_unrebuildable(",
            "in worker {pid}",
            "raised tests.workers.UnrebuildableError: left/right",
        ),
        replaced=False,
        check=_stands_in_for("tests.workers.UnrebuildableError"),
    ),
    Fault(
        "argument-fails-to-unpickle",
        _bad_argument,
        SerializationError,
        ("could not be unpickled in worker {pid}", "this object refuses to be unpickled"),
        replaced=False,
        check=_argument_note,
    ),
    Fault(
        "memory-over-limit-while-running",
        _submit(ft.hog_memory, 300),
        WorkerCrashed,
        ("worker {pid} went over the memory limit", "tests.fault_tasks.hog_memory("),
        pool_options={"max_memory_per_worker": "150MB"},
    ),
]


def _pids_of(target: str, pool: Pool) -> list[int]:
    if target == "pool":
        return pool.worker_pids()
    if target == "default":
        return workers.default_pool_pids()
    return []  # an isolated call's process is gone when the call returns


def _serves(target: str, pool: Pool) -> int:
    """One normal call on the target the fault hit."""
    if target == "pool":
        return pool.submit(workers.square, 7).result(timeout=WAIT)
    if target == "default":
        return workers.decorated_square(7).result(timeout=WAIT)
    return ft.isolated_square(7)


@pytest.mark.timeout(30)
@pytest.mark.parametrize("fault", FAULTS, ids=lambda fault: fault.id)
def test_fault_fails_its_task_only(fault: Fault, start_method: str, tmp_path: Path) -> None:
    parallelize.configure(start_method=start_method, workers=2)  # for the "default" and "isolated" rows
    marker = str(tmp_path / "pid")
    with Pool(2, start_method=start_method, **fault.pool_options) as pool:
        with pytest.raises(fault.error) as info:
            fault.call(pool, marker)
        error = info.value
        assert type(error) is fault.error

        if os.path.exists(marker):
            pid = ft.read_pid(marker)
        else:  # the task never ran (its argument did not unpickle): the message names the worker
            pid = int(str(error).split("in worker ", 1)[1].split(":", 1)[0])
        message = str(error)
        for part in fault.message:
            assert part.format(pid=pid) in message
        if fault.check is not None:
            fault.check(error)

        if fault.replaced:
            wait_until(lambda: not pid_alive(pid), 10, f"worker {pid} to be gone")
            assert pid not in _pids_of(fault.target, pool)
        else:
            assert pid in _pids_of(fault.target, pool)
        assert _serves(fault.target, pool) == 49


# -- around a fault ------------------------------------------------------------------------------------


@pytest.mark.timeout(30)
def test_crash_amid_load_fails_only_the_crasher(start_method: str, tmp_path: Path) -> None:
    marker = str(tmp_path / "pid")
    with Pool(2, start_method=start_method) as pool:
        futures = [
            pool.submit(ft.crash_exit, marker, 3) if i == 10 else pool.submit(ft.slow_square, i, 0.01)
            for i in range(20)
        ]
        for i, future in enumerate(futures):
            if i == 10:
                with pytest.raises(WorkerCrashed, match="exited with code 3") as info:
                    future.result(timeout=WAIT)
                assert info.value.pid == ft.read_pid(marker)
            else:
                assert future.result(timeout=WAIT) == i * i


@pytest.mark.timeout(30)
def test_pool_keeps_its_size_through_crashes(start_method: str, tmp_path: Path) -> None:
    with Pool(2, start_method=start_method) as pool:
        futures = [
            pool.submit(ft.crash_exit, str(tmp_path / f"crash-{i}"), 3)
            if i % 4 == 1
            else pool.submit(workers.square, i)
            for i in range(24)
        ]
        sizes = set()
        pending: set[concurrent.futures.Future[Any]] = set(futures)
        deadline = time.monotonic() + WAIT
        while pending and time.monotonic() < deadline:
            sizes.add(len(pool.worker_pids()))
            _, pending = concurrent.futures.wait(pending, timeout=0.005)
        assert not pending
        assert max(sizes) <= 2
        crashed = [f for f in futures if f.exception(timeout=WAIT) is not None]
        assert len(crashed) == 6
        assert all(isinstance(f.exception(), WorkerCrashed) for f in crashed)

        # Under load the pool grows back to its full size, and no further.
        release = str(tmp_path / "release")
        burst = [pool.submit(ft.blocked_until, release, str(tmp_path / f"b-{i}"), i) for i in range(6)]
        wait_until(lambda: len(pool.worker_pids()) == 2, WAIT, "the pool to regain 2 workers")
        Path(release).touch()
        assert [f.result(timeout=WAIT) for f in burst] == list(range(6))
        assert len(pool.worker_pids()) == 2


@pytest.mark.timeout(30)
def test_time_queued_does_not_count_toward_the_timeout() -> None:
    with Pool(1) as pool:
        first = pool.submit(workers.sleep_then, 0.6, "first")
        second = pool.submit(workers.sleep_then, 0.1, "second", timeout=0.5)  # queued for 0.6 s
        assert second.result(timeout=WAIT) == "second"
        assert first.result(timeout=WAIT) == "first"


@pytest.mark.timeout(30)
def test_map_timeout_fails_only_the_item_that_hangs() -> None:
    # Every item has the 0.5 s limit, so workers import the tasks before their first item.
    with Pool(2, initializer=ft.warm) as pool:
        it = pool.map(ft.hang_at, range(16), [5] * 16, chunksize=8, item_timeout=0.5)
        for i in range(16):
            if i == 5:
                with pytest.raises(TaskTimeout, match=r"tests\.fault_tasks\.hang_at\(5, 5\) ran past"):
                    next(it)
            else:
                assert next(it) == i * i
        with pytest.raises(StopIteration):
            next(it)
        assert pool.submit(workers.square, 7).result(timeout=WAIT) == 49


@pytest.mark.timeout(30)
def test_map_crash_fails_only_the_item_that_crashed() -> None:
    with Pool(2) as pool:
        it = pool.map(ft.crash_at, range(16), [5] * 16, chunksize=8)
        for i in range(16):
            if i == 5:
                with pytest.raises(
                    WorkerCrashed,
                    match=r"exited with code 3 while running tests\.fault_tasks\.crash_at\(5, 5\)",
                ):
                    next(it)
            else:
                assert next(it) == i * i
        with pytest.raises(StopIteration):
            next(it)
        assert pool.submit(workers.square, 7).result(timeout=WAIT) == 49


@pytest.mark.timeout(30)
def test_cancel_queued_task_never_runs(tmp_path: Path) -> None:
    running_marker = str(tmp_path / "running")
    never = tmp_path / "never"
    with Pool(1) as pool:
        running = pool.submit(ft.hang, running_marker)
        wait_until(lambda: os.path.exists(running_marker), WAIT, "the first task to start")
        queued = pool.submit(ft.touch_and_square, 3, str(never))
        assert queued.cancel() is True
        assert queued.cancelled()
        with pytest.raises(concurrent.futures.CancelledError):
            queued.result(timeout=WAIT)
        assert running.cancel() is True
        # The queue is first in, first out: once a later task has run, the cancelled one had its turn.
        assert pool.submit(workers.square, 4).result(timeout=WAIT) == 16
        assert not never.exists()


@pytest.mark.timeout(30)
@pytest.mark.parametrize("leave", ["close", "gc"])
def test_leaving_a_map_early_stops_its_running_chunks(leave: str, tmp_path: Path) -> None:
    with Pool(2) as pool:
        it = pool.map(ft.first_fast, range(6), [str(tmp_path)] * 6, chunksize=1)
        for value in it:
            assert value == 0
            break
        markers = [str(tmp_path / "1"), str(tmp_path / "2")]  # both workers now hang on an item
        wait_until(lambda: all(os.path.exists(m) for m in markers), WAIT, "items 1 and 2 to start")
        pids = {ft.read_pid(m) for m in markers}
        assert len(pids) == 2
        if leave == "close":
            # map() is typed as returning an Iterator, which has no close(); the object has one.
            it.close()
        else:
            del it
            gc.collect()
        wait_until(lambda: not any(pid_alive(pid) for pid in pids), 10, "the map's workers to be stopped")
        assert not pids & set(pool.worker_pids())
        assert pool.submit(workers.square, 5).result(timeout=WAIT) == 25
        assert not (tmp_path / "3").exists()  # queued items were cancelled, not run


# -- retries -------------------------------------------------------------------------------------------


@pytest.mark.timeout(30)
def test_retry_after_a_crash_succeeds(tmp_path: Path) -> None:
    marker = str(tmp_path / "first")
    pid = ft.crash_once(marker).result(timeout=WAIT)
    assert pid != ft.read_pid(marker)  # the second attempt ran in the replacement worker


@pytest.mark.timeout(30)
def test_retries_give_up_after_all_attempts(tmp_path: Path) -> None:
    counter = str(tmp_path / "attempts")
    with pytest.raises(WorkerCrashed) as info:
        ft.always_crash(counter).result(timeout=WAIT)
    message = str(info.value)
    assert "tests.fault_tasks.always_crash(" in message
    assert "exited with code 3" in message
    assert "gave up after 3 attempts" in message
    assert Path(counter).read_text().count("\n") == 3


@pytest.mark.timeout(30)
def test_retry_on_an_exception_succeeds_on_the_third_attempt(tmp_path: Path) -> None:
    counter = str(tmp_path / "attempts")
    assert ft.flaky_retried(counter, 2).result(timeout=WAIT) == 3
    assert Path(counter).read_text().count("\n") == 3


@pytest.mark.timeout(30)
def test_retry_on_gives_up_with_the_last_exception(tmp_path: Path) -> None:
    counter = str(tmp_path / "attempts")
    with pytest.raises(ft.FlakyError, match="attempt 3 failed") as info:
        ft.flaky_retried(counter, 5).result(timeout=WAIT)
    if sys.version_info >= (3, 11):
        assert any("gave up after 3 attempts" in note for note in info.value.__notes__)
    assert Path(counter).read_text().count("\n") == 3


@pytest.mark.timeout(30)
def test_retry_after_a_timeout_succeeds(tmp_path: Path) -> None:
    marker = str(tmp_path / "first")
    # The retry runs in a new worker within 0.5 s: let it import the tasks before it is timed.
    with Pool(1, initializer=ft.warm) as pool:
        # A @parallel function submitted to a pool brings its own timeout and retries.
        assert pool.submit(ft.slow_once, marker).result(timeout=WAIT) == "fast"
        first = ft.read_pid(marker)  # the first attempt started, then hung
        wait_until(lambda: not pid_alive(first), 10, "the timed-out worker to be stopped")
        assert first not in pool.worker_pids()


# -- recycling -----------------------------------------------------------------------------------------


@pytest.mark.timeout(30)
def test_max_tasks_per_worker_recycles_every_n_tasks() -> None:
    with Pool(1, max_tasks_per_worker=2) as pool:
        pids = [pool.submit(workers.getpid).result(timeout=WAIT) for _ in range(6)]
    assert pids[0] == pids[1]
    assert pids[2] == pids[3]
    assert pids[4] == pids[5]
    assert len({pids[0], pids[2], pids[4]}) == 3


@pytest.mark.timeout(30)
def test_worker_over_memory_after_a_task_is_recycled(monkeypatch: pytest.MonkeyPatch) -> None:
    # Memory is also checked every MEMORY_CHECK_INTERVAL while a task runs, and allocating 200 MB
    # takes about that long here: a check landing mid-allocation would stop the task instead.
    # This test is about the check after the task, so the periodic one is pushed out of its way.
    monkeypatch.setattr(_scheduler, "MEMORY_CHECK_INTERVAL", 600.0)
    with Pool(1, max_memory_per_worker="150MB") as pool:
        small = pool.submit(workers.getpid).result(timeout=WAIT)
        assert pool.submit(workers.getpid).result(timeout=WAIT) == small  # under the limit: kept
        big = pool.submit(ft.leave_garbage, 200).result(timeout=WAIT)
        assert big == small
        after = pool.submit(workers.getpid).result(timeout=WAIT)
        assert after != big
        wait_until(lambda: not pid_alive(big), 10, "the bloated worker to exit")


# -- nesting -------------------------------------------------------------------------------------------


@pytest.mark.timeout(30)
def test_nested_call_runs_inline_in_the_worker() -> None:
    outer_pid, inner_pid, inner_active = ft.nested_outer().result(timeout=WAIT)
    assert inner_active is True
    assert inner_pid == outer_pid
    assert outer_pid != os.getpid()


# -- shutdown ------------------------------------------------------------------------------------------


@pytest.mark.timeout(30)
def test_shutdown_cancel_pending_stops_a_running_task(tmp_path: Path) -> None:
    marker = str(tmp_path / "pid")
    pool = Pool(1)
    running = pool.submit(ft.hang, marker, 60)
    queued = pool.submit(workers.square, 3)
    wait_until(lambda: os.path.exists(marker), WAIT, "the task to start")
    started = time.monotonic()
    pool.shutdown(cancel_pending=True)
    assert time.monotonic() - started < 10  # promptly, although the task would sleep for 60 s
    assert running.cancelled()
    assert queued.cancelled()
    assert pool.state is PoolState.CLOSED
    assert not pid_alive(ft.read_pid(marker))


@pytest.mark.timeout(30)
def test_shutdown_without_wait_returns_while_work_runs(tmp_path: Path) -> None:
    marker, release = str(tmp_path / "pid"), tmp_path / "release"
    pool = Pool(1)
    running = pool.submit(ft.blocked_until, str(release), marker, "done")
    wait_until(lambda: os.path.exists(marker), WAIT, "the task to start")
    pool.shutdown(wait=False)
    assert not running.done()  # it returned without waiting for the task
    assert pool.state is PoolState.CLOSING
    release.touch()
    assert running.result(timeout=WAIT) == "done"  # submitted work still completes
    pool.shutdown()  # again, now waiting: harmless, and it returns once the pool has closed
    assert pool.state.value == "closed"
