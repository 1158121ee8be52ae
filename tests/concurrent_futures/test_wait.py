"""``concurrent.futures.wait`` over an executor's futures: each return condition, and its timeout.

A future held back by the gate is certainly not done, so these tests need no timing assumption.
"""

from __future__ import annotations

import concurrent.futures
from concurrent.futures import ALL_COMPLETED, FIRST_COMPLETED, FIRST_EXCEPTION

from tests.concurrent_futures import tasks
from tests.concurrent_futures.util import WAIT, Gate

Executor = concurrent.futures.Executor


def test_first_completed(gated: tuple[Executor, Gate]) -> None:
    executor, gate = gated
    held = executor.submit(tasks.gated, 1)
    gate.wait_started(1)
    quick = executor.submit(tasks.square, 3)
    done, not_done = concurrent.futures.wait([held, quick], timeout=WAIT, return_when=FIRST_COMPLETED)
    assert (done, not_done) == ({quick}, {held})
    gate.open()
    assert held.result(timeout=WAIT) == 1


def test_first_completed_returns_at_once_with_a_finished_future(gated: tuple[Executor, Gate]) -> None:
    executor, gate = gated
    finished = executor.submit(tasks.square, 2)
    finished.result(timeout=WAIT)
    held = executor.submit(tasks.gated, 1)
    done, not_done = concurrent.futures.wait([finished, held], timeout=WAIT, return_when=FIRST_COMPLETED)
    assert (done, not_done) == ({finished}, {held})
    gate.open()
    held.result(timeout=WAIT)


def test_first_exception(gated: tuple[Executor, Gate]) -> None:
    executor, gate = gated
    held = executor.submit(tasks.gated, 1)
    gate.wait_started(1)
    quick = executor.submit(tasks.square, 3)
    quick.result(timeout=WAIT)
    failing = executor.submit(tasks.raise_value_error, "first")
    done, not_done = concurrent.futures.wait(
        [held, quick, failing], timeout=WAIT, return_when=FIRST_EXCEPTION
    )
    assert (done, not_done) == ({quick, failing}, {held})
    gate.open()
    held.result(timeout=WAIT)


def test_first_exception_without_one_waits_for_all(executor: Executor) -> None:
    futures = [executor.submit(tasks.square, i) for i in range(5)]
    done, not_done = concurrent.futures.wait(futures, timeout=WAIT, return_when=FIRST_EXCEPTION)
    assert (done, not_done) == (set(futures), set())


def test_all_completed(executor: Executor) -> None:
    futures = [executor.submit(tasks.square, i) for i in range(5)]
    futures.append(executor.submit(tasks.raise_value_error, "one fails"))
    done, not_done = concurrent.futures.wait(futures, timeout=WAIT, return_when=ALL_COMPLETED)
    assert (done, not_done) == (set(futures), set())
    assert [f.result() for f in futures[:5]] == [i * i for i in range(5)]


def test_the_timeout_returns_what_is_not_done(gated: tuple[Executor, Gate]) -> None:
    executor, gate = gated
    quick = executor.submit(tasks.square, 3)
    held = executor.submit(tasks.gated, 1)
    quick.result(timeout=WAIT)
    done, not_done = concurrent.futures.wait([quick, held], timeout=0.5)
    assert (done, not_done) == ({quick}, {held})
    gate.open()
    held.result(timeout=WAIT)


def test_a_cancelled_future_counts_as_done(gated: tuple[Executor, Gate]) -> None:
    executor, gate = gated
    running = [executor.submit(tasks.gated, 0)]
    gate.wait_started(1)
    waiting = [executor.submit(tasks.gated, i) for i in range(1, 12)]
    assert waiting[-1].cancel()
    gate.open()
    # (A cancelled future is done for wait() once its executor has passed it by.)
    done, not_done = concurrent.futures.wait(running + waiting, timeout=WAIT)
    assert (done, not_done) == (set(running + waiting), set())
    assert [f.result() for f in running + waiting[:-1]] == list(range(11))
