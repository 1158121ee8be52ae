"""The initializer: run once in each worker before its first task, with ``initargs`` that may be
multiprocessing objects shared by inheritance (the logging cookbook's QueueHandler recipe, a Lock,
a Semaphore), and what a failing initializer or unsendable initargs cost."""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import pickle
from collections.abc import Callable
from concurrent.futures.process import BrokenProcessPool

import pytest

from parallelize import SerializationError, WorkerCrashed
from tests.concurrent_futures import tasks
from tests.concurrent_futures.util import WAIT, Kind, differs

Executor = concurrent.futures.Executor


def test_every_task_sees_what_the_initializer_set(make: Callable[..., Executor]) -> None:
    executor = make(initializer=tasks.init_value, initargs=("set by the initializer",))
    values = [executor.submit(tasks.read_value) for _ in range(6)]
    assert {f.result(timeout=WAIT) for f in values} == {"set by the initializer"}


def test_the_queue_handler_logging_recipe(kind: Kind, make: Callable[..., Executor]) -> None:
    records = multiprocessing.get_context(kind.method).Queue()
    try:
        executor = make(initializer=tasks.init_logging, initargs=(records,))
        pids = {executor.submit(tasks.log_message, f"message {i}").result(timeout=WAIT) for i in range(4)}
        messages = [records.get(timeout=WAIT).getMessage() for _ in range(4)]
        assert sorted(m.split(": ")[1] for m in messages) == [f"message {i}" for i in range(4)]
        assert {int(m.split()[2].rstrip(":")) for m in messages} == pids
        executor.shutdown()
    finally:
        records.close()
        records.join_thread()


def test_a_lock_and_a_semaphore_shared_through_initargs(kind: Kind, make: Callable[..., Executor]) -> None:
    context = multiprocessing.get_context(kind.method)
    lock, semaphore = context.Lock(), context.Semaphore(0)
    executor = make(initializer=tasks.init_sync, initargs=(lock, semaphore))
    with lock:
        assert executor.submit(tasks.try_lock, 0).result(timeout=WAIT) is False
    assert executor.submit(tasks.try_lock, WAIT).result(timeout=WAIT) is True
    assert executor.submit(tasks.try_semaphore, 0).result(timeout=WAIT) is False
    semaphore.release()
    assert executor.submit(tasks.try_semaphore, WAIT).result(timeout=WAIT) is True


def test_a_failing_initializer(kind: Kind, make: Callable[..., Executor]) -> None:
    executor = make(initializer=tasks.init_fails)
    future = executor.submit(tasks.square, 2)
    if differs(kind, "failing-initializer"):
        with pytest.raises(WorkerCrashed, match="initializer") as info:
            future.result(timeout=WAIT)
        assert isinstance(info.value.__cause__, RuntimeError)
        assert "initializer failed on purpose" in str(info.value)
    else:
        with pytest.raises(BrokenProcessPool):
            future.result(timeout=WAIT)
        with pytest.raises(BrokenProcessPool):
            executor.submit(tasks.square, 2)


def test_initargs_that_cannot_reach_a_worker(kind: Kind, make: Callable[..., Executor]) -> None:
    # A lock goes by inheritance, and so then does the lambda beside it, which multiprocessing's
    # pickler refuses.
    lock = multiprocessing.get_context(kind.method).Lock()
    initargs = (lock, lambda: None)
    if differs(kind, "initargs-checked-at-construction"):
        with pytest.raises(SerializationError, match="initargs"):
            make(initializer=tasks.init_sync, initargs=initargs)
    else:
        executor = make(initializer=tasks.init_sync, initargs=initargs)
        with pytest.raises((pickle.PicklingError, AttributeError, BrokenProcessPool)):
            executor.submit(tasks.square, 2).result(timeout=WAIT)
