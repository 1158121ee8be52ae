"""Future: timeouts, remote exceptions and tracebacks, callbacks, concurrent.futures helpers,
cancellation, and asyncio."""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from parallelize import Future, Pool, RemoteTraceback

from . import core_tasks, workers
from .conftest import wait_until

RESULT_TIMEOUT = 30

pytestmark = pytest.mark.timeout(30)


class Gate:
    """A task that blocks in a worker until the test opens the gate (always opened at teardown)."""

    def __init__(self, directory: Path, name: str = "gate") -> None:
        self.release = directory / f"{name}-release"
        self.started = directory / f"{name}-started"

    def submit(self, pool: Pool) -> Future[int]:
        return pool.submit(core_tasks.block_until, str(self.release), str(self.started))

    def wait_started(self) -> None:
        wait_until(self.started.exists, RESULT_TIMEOUT, f"{self.started.name} to appear")

    def open(self) -> None:
        self.release.touch()


@pytest.fixture
def gate(tmp_path: Path) -> Iterator[Gate]:
    g = Gate(tmp_path)
    try:
        yield g
    finally:
        g.open()


# -- result and timeouts ---------------------------------------------------------------------------


def test_result_with_timeout_on_a_pending_future_raises_timeout_error(pool1: Pool, gate: Gate) -> None:
    future = gate.submit(pool1)
    gate.wait_started()
    with pytest.raises(concurrent.futures.TimeoutError):
        future.result(timeout=0.05)
    with pytest.raises(concurrent.futures.TimeoutError):
        future.exception(timeout=0.05)
    assert not future.done()  # a caller's timeout does not touch the task
    gate.open()
    assert future.result(timeout=RESULT_TIMEOUT) > 0


# -- exceptions from workers -----------------------------------------------------------------------


def test_user_exception_keeps_its_type_and_attributes(pool1: Pool) -> None:
    future = pool1.submit(workers.raise_custom, "no such user", 42)
    with pytest.raises(workers.CustomError, match="no such user") as info:
        future.result(timeout=RESULT_TIMEOUT)
    assert type(info.value) is workers.CustomError
    assert info.value.code == 42
    assert info.value.args == ("no such user", 42)
    assert future.exception(timeout=RESULT_TIMEOUT) is info.value


def test_builtin_exception_comes_back_as_itself(pool1: Pool) -> None:
    with pytest.raises(ValueError, match="bad value") as info:
        pool1.submit(workers.raise_value_error).result(timeout=RESULT_TIMEOUT)
    assert type(info.value) is ValueError
    assert str(info.value) == "bad value"


def test_cause_is_the_remote_traceback(pool1: Pool) -> None:
    error = pool1.submit(workers.raise_custom, "boom", 1).exception(timeout=RESULT_TIMEOUT)
    assert isinstance(error, workers.CustomError)
    cause = error.__cause__
    assert isinstance(cause, RemoteTraceback)
    assert cause.text.startswith("Traceback (most recent call last):")
    assert "in raise_custom" in cause.text
    assert "workers.py" in cause.text
    assert "CustomError" in cause.text
    assert str(cause) == cause.text


def test_note_names_the_worker_on_3_11_and_later(pool1: Pool) -> None:
    pid = pool1.submit(workers.getpid).result(timeout=RESULT_TIMEOUT)
    error = pool1.submit(workers.raise_custom, "boom", 1).exception(timeout=RESULT_TIMEOUT)
    assert error is not None
    notes = getattr(error, "__notes__", None)
    if sys.version_info >= (3, 11):
        assert notes is not None
        assert any("tests.workers.raise_custom" in n and f"worker {pid}" in n for n in notes), notes
    else:
        assert notes is None  # add_note does not exist before 3.11


# -- callbacks and concurrent.futures --------------------------------------------------------------


def test_add_done_callback_fires_with_the_future(pool1: Pool) -> None:
    called = threading.Event()
    seen: list[object] = []

    def callback(f: concurrent.futures.Future[int]) -> None:
        seen.append(f)
        called.set()

    future = pool1.submit(workers.square, 9)
    future.add_done_callback(callback)
    assert called.wait(RESULT_TIMEOUT)
    assert seen == [future]
    assert future.result(timeout=RESULT_TIMEOUT) == 81

    # added after completion: runs at once, in this thread
    late: list[object] = []
    future.add_done_callback(late.append)
    assert late == [future]


def test_a_new_future_has_the_stdlib_futures_fields() -> None:
    # Future.__init__ sets concurrent.futures.Future's fields itself (not through super(), which
    # makes a threading.Condition per task only to have it replaced): a Python that adds a field
    # fails here, not in some later wait.
    stdlib = vars(concurrent.futures.Future())
    ours = vars(Future())
    assert set(ours) == set(stdlib)
    assert {k: v for k, v in ours.items() if k != "_condition"} == {
        k: v for k, v in stdlib.items() if k != "_condition"
    }
    # a state the stdlib's own methods understand: it is pending, then runs and finishes
    future: Future[int] = Future()
    assert not future.done()
    assert not future.running()
    assert future.set_running_or_notify_cancel()
    future.set_result(3)
    assert future.result(timeout=0) == 3


def test_every_thread_waiting_on_a_future_wakes_and_a_timed_out_wait_leaves_no_trace() -> None:
    # The future's lock makes its list of waiters on the first wait: a wait that timed out must
    # take itself off it, and a later result must wake every waiter still there.
    future: Future[str] = Future()
    with pytest.raises(concurrent.futures.TimeoutError):
        future.result(timeout=0.01)
    got: list[str] = []
    waiting = threading.Barrier(4)

    def wait() -> None:
        waiting.wait(RESULT_TIMEOUT)
        got.append(future.result(timeout=RESULT_TIMEOUT))

    threads = [threading.Thread(target=wait) for _ in range(3)]
    for thread in threads:
        thread.start()
    waiting.wait(RESULT_TIMEOUT)
    wait_until(lambda: len(future._condition._waiters or ()) == 3, RESULT_TIMEOUT, "three waiters")
    future.set_result("done")
    for thread in threads:
        thread.join(RESULT_TIMEOUT)
    assert got == ["done"] * 3
    assert not future._condition._waiters


def test_wait_and_as_completed(pool1: Pool) -> None:
    futures = [pool1.submit(workers.square, i) for i in range(6)]
    done, not_done = concurrent.futures.wait(futures, timeout=RESULT_TIMEOUT)
    assert done == set(futures)
    assert not not_done
    completed = list(concurrent.futures.as_completed(futures, timeout=RESULT_TIMEOUT))
    assert sorted(f.result() for f in completed) == [i * i for i in range(6)]
    assert set(completed) == set(futures)


def test_wait_first_completed_returns_before_a_blocked_task(gate: Gate) -> None:
    with Pool(2) as pool:
        try:
            blocked = gate.submit(pool)
            quick = pool.submit(workers.square, 3)
            done, not_done = concurrent.futures.wait(
                [blocked, quick], timeout=RESULT_TIMEOUT, return_when=concurrent.futures.FIRST_COMPLETED
            )
            assert done == {quick}
            assert not_done == {blocked}
        finally:
            gate.open()  # before the pool's exit waits for the blocked task
        assert blocked.result(timeout=RESULT_TIMEOUT) > 0


# -- cancellation ----------------------------------------------------------------------------------


def test_cancel_of_a_queued_task_returns_true_and_it_never_runs(tmp_path: Path) -> None:
    gates = [Gate(tmp_path, "a"), Gate(tmp_path, "b")]
    marker = tmp_path / "queued-ran"
    with Pool(2) as pool:
        try:
            busy = [g.submit(pool) for g in gates]
            queued = pool.submit(core_tasks.touch, str(marker))
            for g in gates:
                g.wait_started()
            assert queued.cancel()
            assert queued.cancelled()
            with pytest.raises(concurrent.futures.CancelledError):
                queued.result(timeout=RESULT_TIMEOUT)
            # a running task is stopped too: its worker is terminated and replaced
            assert busy[0].cancel()
            assert busy[0].cancelled()
        finally:
            for g in gates:
                g.open()  # before the pool's exit waits for the blocked tasks
        assert busy[1].result(timeout=RESULT_TIMEOUT) > 0
        # the pool carries on after the cancellation
        assert pool.submit(workers.square, 4).result(timeout=RESULT_TIMEOUT) == 16
    assert not marker.exists()


# -- asyncio ---------------------------------------------------------------------------------------


def test_await_a_call_inside_asyncio_run() -> None:
    async def main() -> tuple[int, int]:
        value = await workers.decorated_square(12)
        pid = await core_tasks.decorated_getpid()
        return value, pid

    value, pid = asyncio.run(main())
    assert value == 144
    assert pid != os.getpid()


def test_await_raises_the_workers_exception() -> None:
    async def main() -> None:
        await workers.decorated_square("x")  # type: ignore[arg-type]

    with pytest.raises(TypeError, match="can't multiply sequence"):
        asyncio.run(main())


def test_asyncio_gather_of_200_futures() -> None:
    async def main() -> list[int]:
        return await asyncio.gather(*(workers.decorated_square(i) for i in range(200)))

    assert asyncio.run(main()) == [i * i for i in range(200)]


def test_cancelling_the_awaiting_task_cancels_a_queued_call(pool1: Pool, gate: Gate) -> None:
    gate.submit(pool1)
    gate.wait_started()
    queued = pool1.submit(workers.square, 5)

    async def main() -> None:
        await asyncio.wait_for(queued, timeout=0.05)

    with pytest.raises((asyncio.TimeoutError, TimeoutError)):
        asyncio.run(main())
    wait_until(queued.cancelled, RESULT_TIMEOUT, "the queued call to be cancelled")
