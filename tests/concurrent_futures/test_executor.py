"""Executor behaviour: submit, map, cancel, references, the context manager, the constructor.

What ``concurrent.futures.Executor`` documents, checked on Pool and on ProcessPoolExecutor (the
control); ``differs()`` names each intentional difference (see util.py and README).
"""

from __future__ import annotations

import concurrent.futures
import gc
import multiprocessing
import re
import threading
import weakref
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import parallelize
from parallelize import SerializationError, TaskTimeout
from tests.concurrent_futures import tasks
from tests.concurrent_futures.util import DIFFERENCES, WAIT, Gate, Kind, differs

Executor = concurrent.futures.Executor
REPO = Path(__file__).resolve().parent.parent.parent


def test_it_is_an_executor(executor: Executor) -> None:
    assert isinstance(executor, Executor)


def test_submit_runs_the_call_and_returns_a_future(executor: Executor) -> None:
    future = executor.submit(tasks.square, 7)
    assert isinstance(future, concurrent.futures.Future)
    assert future.result(timeout=WAIT) == 49
    assert future.done()
    assert not future.cancelled()
    assert not future.running()


def test_submit_passes_keyword_arguments_including_fn_and_self(executor: Executor) -> None:
    # fn is positional-only in Executor.submit: a keyword of that name belongs to the call.
    future = executor.submit(tasks.capture, 1, 2, fn="f", self="s", x=3)
    assert future.result(timeout=WAIT) == ((1, 2), {"fn": "f", "self": "s", "x": 3})


def test_an_exception_comes_back_with_its_type(executor: Executor) -> None:
    future = executor.submit(tasks.raise_value_error, "no good")
    with pytest.raises(ValueError, match="no good"):
        future.result(timeout=WAIT)
    assert isinstance(future.exception(timeout=WAIT), ValueError)


def test_system_exit_in_a_task_is_that_task_s_outcome(executor: Executor) -> None:
    with pytest.raises(SystemExit):
        executor.submit(tasks.raise_system_exit, 3).result(timeout=WAIT)
    assert executor.submit(tasks.square, 2).result(timeout=WAIT) == 4


def test_map_is_ordered_and_stops_at_the_shortest_iterable(executor: Executor) -> None:
    assert list(executor.map(pow, range(10), range(8))) == [pow(i, i) for i in range(8)]
    assert list(executor.map(tasks.square, [])) == []


@pytest.mark.parametrize("chunksize", [1, 7, 200])
def test_map_chunksize_does_not_change_the_results(executor: Executor, chunksize: int) -> None:
    results = executor.map(tasks.square, range(100), chunksize=chunksize)
    assert list(results) == [i * i for i in range(100)]


def test_map_refuses_a_chunksize_below_one(executor: Executor) -> None:
    with pytest.raises(ValueError, match="chunksize"):
        executor.map(tasks.square, range(3), chunksize=0)


def test_map_raises_a_failed_item_s_error_at_its_place(executor: Executor, kind: Kind) -> None:
    results = executor.map(tasks.fail_at, range(5), [2] * 5)
    assert [next(results), next(results)] == [0, 1]
    with pytest.raises(ValueError, match="item 2 fails"):
        next(results)
    if differs(kind, "map-goes-on-after-error"):
        assert list(results) == [3, 4]
    else:
        assert list(results) == []


def test_map_timeout_is_a_deadline_for_the_whole_map(kind: Kind) -> None:
    gate = Gate(kind.method)
    executor = kind.make(**gate.initargs())
    try:
        results = executor.map(tasks.gated, [0, 1], timeout=0.5)
        with pytest.raises(concurrent.futures.TimeoutError):
            next(results)  # held by the gate: it cannot be ready in time
    finally:
        gate.open()  # the control's task runs on (Pool's was stopped); either way it must end
        executor.shutdown(wait=True)
        gate.close()


def test_when_map_starts_and_how_far_it_reads(gated: tuple[Executor, Gate], kind: Kind) -> None:
    executor, gate = gated
    read: list[int] = []

    def source() -> Iterator[int]:
        for i in range(10_000):
            read.append(i)
            yield i

    if differs(kind, "map-reads-input-lazily"):
        lazy = executor.map(tasks.square, source())
        assert read == []  # nothing read, nothing submitted yet
        assert next(lazy) == 0
        assert len(read) < 10_000  # a few chunks ahead, not the whole input
        lazy.close()  # type: ignore[attr-defined]
    else:
        results = executor.map(tasks.gated, [0, 1, 2])
        gate.wait_started(1)  # running before anything is taken from the iterator
        gate.open()
        assert list(results) == [0, 1, 2]
        eager = executor.map(tasks.square, source())
        assert len(read) == 10_000
        assert next(eager) == 0
        eager.close()  # type: ignore[attr-defined]


def test_map_does_not_keep_results_it_has_yielded(executor: Executor) -> None:
    for result in executor.map(tasks.make_dummy, range(10)):
        ref = weakref.ref(result)
        del result
        gc.collect()
        assert ref() is None


def test_a_finished_task_does_not_keep_its_callable_alive(executor: Executor) -> None:
    holder = tasks.Holder()
    collected = threading.Event()
    ref = weakref.ref(holder, lambda _: collected.set())
    future = executor.submit(holder.method)
    del holder
    assert future.result(timeout=WAIT) == 7
    assert collected.wait(WAIT), "the bound method's object was not collected"
    assert ref() is None


def test_a_pending_future_can_be_cancelled(gated: tuple[Executor, Gate]) -> None:
    executor, gate = gated
    running = [executor.submit(tasks.gated, 0)]
    gate.wait_started(1)
    # Behind a running task (and whatever each executor queued ahead), the last is pending.
    futures = [executor.submit(tasks.gated, i) for i in range(1, 12)]
    assert futures[-1].cancel()
    assert futures[-1].cancelled()
    with pytest.raises(concurrent.futures.CancelledError):
        futures[-1].result(timeout=WAIT)
    gate.open()
    assert [f.result(timeout=WAIT) for f in running + futures[:-1]] == list(range(11))


def test_cancelling_a_running_future(gated: tuple[Executor, Gate], kind: Kind) -> None:
    executor, gate = gated
    future = executor.submit(tasks.gated, 1)
    gate.wait_started(1)
    if differs(kind, "cancel-running"):
        assert future.cancel()
        assert future.cancelled()
    else:
        assert not future.cancel()
        gate.open()
        assert future.result(timeout=WAIT) == 1


def test_the_context_manager_returns_the_executor_and_shuts_it_down(
    make: Callable[..., Executor],
) -> None:
    executor = make()
    with executor as entered:
        assert entered is executor
        future = executor.submit(tasks.square, 3)
    assert future.done()
    assert future.result() == 9
    with pytest.raises(RuntimeError):
        executor.submit(tasks.square, 3)


@pytest.mark.parametrize("workers", [0, -1])
def test_max_workers_must_be_positive(kind: Kind, workers: int) -> None:
    with pytest.raises(ValueError, match="max_workers"):
        kind.make(workers=workers)


def test_an_unpicklable_argument(executor: Executor, kind: Kind) -> None:
    lock = threading.Lock()
    if differs(kind, "unpicklable-argument-at-submit"):
        with pytest.raises(SerializationError, match="lock"):
            executor.submit(tasks.capture, lock)
    else:
        with pytest.raises(TypeError, match="lock"):
            executor.submit(tasks.capture, lock).result(timeout=WAIT)
    assert executor.submit(tasks.square, 5).result(timeout=WAIT) == 25


def test_an_unpicklable_result_fails_its_future_only(executor: Executor) -> None:
    with pytest.raises(TypeError, match="lock"):
        executor.submit(tasks.return_lock).result(timeout=WAIT)
    assert executor.submit(tasks.square, 6).result(timeout=WAIT) == 36


def test_submit_s_timeout_keyword(executor: Executor, kind: Kind) -> None:
    if differs(kind, "submit-timeout-keyword"):
        with pytest.raises(TypeError, match=r"functools\.partial"):
            executor.submit(tasks.capture, timeout=5)
        with pytest.raises(TaskTimeout):
            executor.submit(tasks.sleep_then, 30, timeout=0.5).result(timeout=WAIT)
    else:
        future = executor.submit(tasks.capture, timeout=5)
        assert future.result(timeout=WAIT) == ((), {"timeout": 5})


# -- Pool only: the names it shares with ProcessPoolExecutor, and its own beside them ----------


def test_executor_names_and_ours_name_one_setting_each() -> None:
    spawn = multiprocessing.get_context("spawn")
    pool = parallelize.Pool(max_workers=3, mp_context=spawn, max_tasks_per_child=5)
    assert (pool.workers, pool._start_method, pool._max_tasks) == (3, "spawn", 5)
    pool.shutdown()
    for ours, theirs in [
        ({"workers": 2}, {"max_workers": 2}),
        ({"start_method": "spawn"}, {"mp_context": spawn}),
        ({"max_tasks_per_worker": 2}, {"max_tasks_per_child": 2}),
    ]:
        with pytest.raises(TypeError, match="two names for one setting"):
            parallelize.Pool(**ours, **theirs)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="multiprocessing context"):
        parallelize.Pool(mp_context="spawn")  # type: ignore[arg-type]


def test_map_item_timeout_is_ours_per_item(start_method: str) -> None:
    with parallelize.Pool(2, start_method=start_method) as pool:
        results = pool.map(tasks.sleep_then, [0, 30, 0], [0, 1, 2], item_timeout=1)
        assert next(results) == 0
        with pytest.raises(TaskTimeout):
            next(results)
        assert next(results) == 2


# -- the table of differences is complete, used and published ---------------------------------


def test_every_difference_is_tested_and_in_the_readme() -> None:
    suite = "".join(path.read_text() for path in Path(__file__).parent.glob("test_*.py"))
    readme = (REPO / "README.md").read_text()
    for name in DIFFERENCES:
        assert re.search(rf"differs\(kind, \"{re.escape(name)}\"\)", suite), f"{name} is not tested"
        assert f"`{name}`" in readme, f"{name} is missing from README's compatibility table"
