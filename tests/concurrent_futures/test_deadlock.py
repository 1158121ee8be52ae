"""Broken workers: a worker that exits or is killed mid-task, an exception that cannot be rebuilt
in the parent. ProcessPoolExecutor breaks; Pool fails the one task and serves on (named
differences). Either way nothing may hang, and shutdown() returns."""

from __future__ import annotations

import concurrent.futures
from collections.abc import Callable
from concurrent.futures.process import BrokenProcessPool
from typing import Any

import pytest

from parallelize import SerializationError, WorkerCrashed
from tests.concurrent_futures import tasks
from tests.concurrent_futures.util import WAIT, Kind, differs

Executor = concurrent.futures.Executor


@pytest.mark.parametrize(
    ("crash", "args", "words"),
    [(tasks.exit_worker, (3,), "code 3"), (tasks.kill_worker, (), "SIGKILL")],
    ids=["exit", "sigkill"],
)
def test_a_worker_that_dies_mid_task(
    kind: Kind, make: Callable[..., Executor], crash: Callable[..., Any], args: tuple[Any, ...], words: str
) -> None:
    executor = make()
    assert executor.submit(tasks.square, 1).result(timeout=WAIT) == 1  # the workers are up
    future = executor.submit(crash, *args)
    if differs(kind, "crash-fails-one-task"):
        with pytest.raises(WorkerCrashed, match=words):
            future.result(timeout=WAIT)
        assert executor.submit(tasks.square, 3).result(timeout=WAIT) == 9
    else:
        with pytest.raises(BrokenProcessPool):
            future.result(timeout=WAIT)
        with pytest.raises(BrokenProcessPool):
            executor.submit(tasks.square, 3)


def test_a_crash_in_a_map(kind: Kind, make: Callable[..., Executor]) -> None:
    executor = make()
    results = executor.map(tasks.exit_worker, [3])
    if differs(kind, "crash-fails-one-task"):
        with pytest.raises(WorkerCrashed):
            next(results)
        assert list(executor.map(tasks.square, range(4))) == [0, 1, 4, 9]
    else:
        with pytest.raises(BrokenProcessPool):
            next(results)


def test_an_exception_that_cannot_be_rebuilt(kind: Kind, make: Callable[..., Executor]) -> None:
    executor = make()
    future = executor.submit(tasks.raise_unrebuildable)
    if differs(kind, "unrebuildable-exception"):
        with pytest.raises(SerializationError, match="FailsToUnpickle") as info:
            future.result(timeout=WAIT)
        assert info.value.original_type is not None
        assert executor.submit(tasks.square, 4).result(timeout=WAIT) == 16
    else:
        with pytest.raises(BrokenProcessPool):
            future.result(timeout=WAIT)
