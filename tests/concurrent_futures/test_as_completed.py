"""``concurrent.futures.as_completed`` over an executor's futures: every future once, finished
ones first, and the timeout."""

from __future__ import annotations

import concurrent.futures

import pytest

from tests.concurrent_futures import tasks
from tests.concurrent_futures.util import WAIT, Gate

Executor = concurrent.futures.Executor


def test_every_future_once_even_if_given_twice(executor: Executor) -> None:
    futures = [executor.submit(tasks.square, i) for i in range(10)]
    seen = list(concurrent.futures.as_completed(futures + futures[:3], timeout=WAIT))
    assert len(seen) == 10
    assert set(seen) == set(futures)
    assert sorted(f.result() for f in seen) == [i * i for i in range(10)]


def test_finished_futures_come_first(gated: tuple[Executor, Gate]) -> None:
    executor, gate = gated
    finished = executor.submit(tasks.square, 4)
    finished.result(timeout=WAIT)
    held = executor.submit(tasks.gated, 1)
    completed = concurrent.futures.as_completed([held, finished], timeout=WAIT)
    assert next(completed) is finished
    gate.open()
    assert next(completed) is held
    assert held.result() == 1


def test_the_timeout_raises_after_what_finished(gated: tuple[Executor, Gate]) -> None:
    executor, gate = gated
    quick = executor.submit(tasks.square, 5)
    quick.result(timeout=WAIT)
    held = executor.submit(tasks.gated, 1)
    completed = concurrent.futures.as_completed([quick, held], timeout=1)
    assert next(completed) is quick
    with pytest.raises(concurrent.futures.TimeoutError):
        next(completed)
    gate.open()
    held.result(timeout=WAIT)


def test_failed_and_cancelled_futures_complete_too(gated: tuple[Executor, Gate]) -> None:
    executor, gate = gated
    running = [executor.submit(tasks.gated, 0)]
    gate.wait_started(1)
    waiting = [executor.submit(tasks.gated, i) for i in range(1, 12)]
    assert waiting[-1].cancel()
    failing = executor.submit(tasks.raise_value_error, "fails")
    gate.open()
    everything = [*running, *waiting, failing]
    assert set(concurrent.futures.as_completed(everything, timeout=WAIT)) == set(everything)
    assert isinstance(failing.exception(), ValueError)
