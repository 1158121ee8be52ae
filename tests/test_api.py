"""The public surface: the decorators, Pool, its lifecycle, and the errors that guard the options."""

from __future__ import annotations

import concurrent.futures
import inspect
import itertools
import os
import pickle
from pathlib import Path

import pytest

import parallelize
from parallelize import (
    Future,
    InProcessFunction,
    ParallelFunction,
    Pool,
    PoolClosed,
    PoolState,
    WorkerCrashed,
    _config,
    in_process,
    parallel,
)

from . import core_tasks, workers
from .conftest import pid_alive, wait_until

RESULT_TIMEOUT = 30

pytestmark = pytest.mark.timeout(30)


# -- @parallel -------------------------------------------------------------------------------------


def test_bare_form_returns_a_future_computed_in_a_worker(default_start_method: str) -> None:
    future = workers.decorated_square(7)
    assert isinstance(future, Future)
    assert isinstance(future, concurrent.futures.Future)
    assert future.result(timeout=RESULT_TIMEOUT) == 49
    assert isinstance(workers.decorated_square, ParallelFunction)
    pid = core_tasks.decorated_getpid().result(timeout=RESULT_TIMEOUT)
    assert pid != os.getpid()
    assert pid in workers.default_pool_pids()


def test_submit_is_the_same_as_calling() -> None:
    future = workers.decorated_square.submit(5)
    assert isinstance(future, Future)
    assert future.result(timeout=RESULT_TIMEOUT) == 25


def test_keyword_arguments_reach_the_worker() -> None:
    assert core_tasks.documented(3, "y", flag=True).result(timeout=RESULT_TIMEOUT) == "3yTrue"
    assert core_tasks.documented(a=4).result(timeout=RESULT_TIMEOUT) == "4xFalse"


def test_options_form_with_workers() -> None:
    # documented is @parallel(workers=2): the options form still returns futures from workers.
    futures = [core_tasks.documented(i) for i in range(4)]
    assert [f.result(timeout=RESULT_TIMEOUT) for f in futures] == [f"{i}xFalse" for i in range(4)]


def test_options_form_with_pool_runs_on_that_pool_only() -> None:
    with Pool(1) as pool:
        getpid = parallel(pool=pool)(workers.getpid)
        pid = getpid().result(timeout=RESULT_TIMEOUT)
        assert pool.worker_pids() == [pid]
        assert pid != os.getpid()
    # the shared default pool was never created for this function
    assert _config._default_pool is None


def test_options_form_with_pool_accepts_closures() -> None:
    offset = 10
    with Pool(1) as pool:

        @parallel(pool=pool)
        def shifted(x: int) -> tuple[int, int]:
            return os.getpid(), x + offset

        pid, value = shifted(5).result(timeout=RESULT_TIMEOUT)
        assert value == 15
        assert pid in pool.worker_pids()


@pytest.mark.parametrize("backend", ["thread", "sync"])
def test_options_form_with_backend(backend: str) -> None:
    getpid = parallel(backend=backend)(workers.getpid)
    assert getpid().result(timeout=RESULT_TIMEOUT) == os.getpid()
    assert _config._default_pool is None


def test_options_form_with_process_backend() -> None:
    getpid = parallel(backend="process")(workers.getpid)
    assert getpid().result(timeout=RESULT_TIMEOUT) != os.getpid()


def test_wrapped_runs_in_this_process() -> None:
    assert workers.decorated_square.__wrapped__(6) == 36
    assert core_tasks.decorated_getpid.__wrapped__() == os.getpid()
    assert workers.inproc_add.__wrapped__(2, 3) == 5
    assert _config._default_pool is None


def test_introspection_is_kept() -> None:
    fn = core_tasks.documented
    assert fn.__name__ == "documented"
    assert fn.__qualname__ == "documented"
    assert fn.__module__ == "tests.core_tasks"
    assert fn.__doc__ == "Join a number and a string; the docstring must survive decoration."
    # the parameters are the function's; the return is what a call returns (help() shows it)
    signature = "(a: 'int', b: 'str' = 'x', *, flag: 'bool' = False) -> 'parallelize.Future[str]'"
    assert str(inspect.signature(fn)) == signature
    assert inspect.signature(fn).parameters == inspect.signature(fn.__wrapped__).parameters

    inproc = core_tasks.inproc_documented
    assert inproc.__name__ == "inproc_documented"
    assert inproc.__doc__ == "Scale a number in a worker process."
    assert str(inspect.signature(inproc)) == "(a: 'int', *, scale: 'float' = 1.0) -> 'float'"
    assert callable(fn)
    assert "documented" in repr(fn)


# -- @in_process -----------------------------------------------------------------------------------


def test_in_process_returns_the_value_itself() -> None:
    assert workers.inproc_add(2, 3) == 5
    assert isinstance(workers.inproc_add, InProcessFunction)
    assert core_tasks.inproc_documented(4, scale=0.5) == 2.0
    assert core_tasks.inproc_getpid() != os.getpid()


def test_in_process_raises_the_workers_exception() -> None:
    with pytest.raises(workers.CustomError, match="went wrong") as info:
        workers.inproc_raise("went wrong")
    assert type(info.value) is workers.CustomError
    assert info.value.code == 7


def test_isolated_runs_each_call_in_a_fresh_process_gone_on_return() -> None:
    first = workers.isolated_pid()
    assert not pid_alive(first)
    second = workers.isolated_pid()
    assert not pid_alive(second)
    assert len({first, second, os.getpid()}) == 3
    assert _config._default_pool is None


@pytest.mark.timeout(40)
def test_isolated_crash_raises_worker_crashed() -> None:
    with pytest.raises(WorkerCrashed, match="exited with code 9") as info:
        workers.isolated_crash()
    assert "isolated_crash" in str(info.value)
    assert info.value.exitcode == 9
    assert info.value.pid is not None
    assert not pid_alive(info.value.pid)
    # the next isolated call gets a healthy process of its own
    assert workers.isolated_pid() != os.getpid()


# -- Pool ------------------------------------------------------------------------------------------


def test_pool_submit_map_and_context_manager(start_method: str) -> None:
    with Pool(2, start_method=start_method) as pool:
        assert pool.workers == 2
        assert pool.submit(workers.add, 2, b=3).result(timeout=RESULT_TIMEOUT) == 5
        assert list(pool.map(workers.square, range(10))) == [x * x for x in range(10)]
        assert list(pool.map(workers.add, [1, 2], [10, 20])) == [11, 22]
        pids = pool.worker_pids()
        assert pids
    assert pool.state is PoolState.CLOSED
    assert pool.worker_pids() == []
    assert not any(pid_alive(pid) for pid in pids)


def test_pool_initializer_runs_in_each_worker_before_its_tasks(start_method: str, tmp_path: Path) -> None:
    inits = tmp_path / "inits"
    inits.mkdir()
    with Pool(
        2,
        start_method=start_method,
        initializer=core_tasks.initializer_record,
        initargs=("hello", str(inits)),
    ) as pool:
        # The two calls wait for each other, so each runs on a worker of its own.
        futures = [
            pool.submit(core_tasks.init_value_after_rendezvous, str(tmp_path / "meet"), 2) for _ in range(2)
        ]
        results = [f.result(timeout=RESULT_TIMEOUT) for f in futures]
    assert [value for _, value in results] == ["hello", "hello"]
    task_pids = {pid for pid, _ in results}
    assert len(task_pids) == 2
    assert {int(p.name) for p in inits.iterdir()} == task_pids


def test_worker_pids_tracks_live_workers() -> None:
    with Pool(2) as pool:
        assert pool.worker_pids() == []
        pid = pool.submit(workers.getpid).result(timeout=RESULT_TIMEOUT)
        pids = pool.worker_pids()
        assert pid in pids
        assert 1 <= len(pids) <= 2
        assert all(pid_alive(p) for p in pids)
    assert pool.worker_pids() == []
    assert not any(pid_alive(p) for p in pids)


def test_pool_state_new_running_closed_and_submit_after_shutdown() -> None:
    pool = Pool(1)
    assert pool.state is PoolState.NEW
    assert pool.worker_pids() == []  # lazy: nothing starts before the first task
    assert pool.submit(workers.square, 3).result(timeout=RESULT_TIMEOUT) == 9
    assert pool.state is PoolState.RUNNING
    pool.shutdown()
    assert pool.state is PoolState.CLOSED
    with pytest.raises(PoolClosed):
        pool.submit(workers.square, 3)
    with pytest.raises(PoolClosed):
        list(pool.map(workers.square, [1]))
    pool.shutdown()  # a second shutdown is harmless
    assert pool.state is PoolState.CLOSED


def test_shutdown_of_an_unused_pool_closes_it_without_starting_anything() -> None:
    pool = Pool(2)
    pool.shutdown()
    assert pool.state is PoolState.CLOSED
    with pytest.raises(PoolClosed):
        pool.submit(workers.square, 3)
    assert pool.worker_pids() == []


def test_pool_is_closing_while_it_drains(tmp_path: Path) -> None:
    release, started = tmp_path / "release", tmp_path / "started"
    pool = Pool(1)
    try:
        future = pool.submit(core_tasks.block_until, str(release), str(started))
        wait_until(started.exists, RESULT_TIMEOUT, "the task to start")
        pool.shutdown(wait=False)
        assert pool.state is PoolState.CLOSING
        with pytest.raises(PoolClosed):
            pool.submit(workers.square, 2)
        release.touch()
        assert future.result(timeout=RESULT_TIMEOUT) > 0  # submitted work still completes
        wait_until(lambda: pool.state is PoolState.CLOSED, RESULT_TIMEOUT, "the pool to close")
    finally:
        release.touch()
        pool.shutdown()


# -- invalid options -------------------------------------------------------------------------------


@pytest.mark.parametrize("workers_value", [0, -1, True, 1.5, "2"])
def test_invalid_workers_raise_value_error(workers_value: object) -> None:
    with pytest.raises(ValueError, match="workers must be a positive int"):
        parallel(workers=workers_value)(workers.square)  # type: ignore[call-overload]
    with pytest.raises(ValueError, match="workers must be a positive int"):
        Pool(workers_value)  # type: ignore[arg-type]


def test_invalid_backend_name_raises_value_error() -> None:
    with pytest.raises(ValueError, match=r"backend must be one of process, thread, sync, dask; got 'gpu'"):
        parallel(backend="gpu")(workers.square)
    with pytest.raises(ValueError, match="backend must be one of"):
        in_process(backend="gpu")(workers.square)


def test_invalid_start_method_raises_value_error() -> None:
    with pytest.raises(ValueError, match=r"start_method must be one of .*; got 'teleport'"):
        Pool(1, start_method="teleport")
    with pytest.raises(ValueError, match="start_method must be one of"):
        parallelize.configure(start_method="teleport")


def test_pool_and_backend_together_are_refused() -> None:
    with Pool(1) as pool:
        with pytest.raises(TypeError, match="pool= or backend="):
            parallel(pool=pool, backend="thread")
        with pytest.raises(TypeError, match="at most one of"):
            in_process(pool=pool, backend="thread")
        with pytest.raises(TypeError, match="at most one of"):
            in_process(pool=pool, isolated=True)
        assert pool.state is PoolState.NEW


def test_decorating_a_non_callable_is_refused() -> None:
    with pytest.raises(TypeError, match=r"did you mean `@parallel\(workers=42\)`"):
        parallel(42)  # type: ignore[call-overload]
    with pytest.raises(TypeError, match="decorate functions"):
        parallel(workers=2)(42)  # type: ignore[arg-type]


# -- workers=n -------------------------------------------------------------------------------------


def test_workers_limit_serialises_calls_of_that_function(tmp_path: Path) -> None:
    parallelize.configure(workers=2)
    # Control: the shared pool can run two calls at once (each waits until the other has started).
    meet = [core_tasks.decorated_rendezvous(str(tmp_path / "meet"), 2) for _ in range(2)]
    assert len({f.result(timeout=RESULT_TIMEOUT) for f in meet}) == 2

    futures = [core_tasks.limited_probe(str(tmp_path / "probe"), 0.15) for _ in range(3)]
    results = sorted(f.result(timeout=RESULT_TIMEOUT) for f in futures)
    assert [overlapped for _, _, overlapped, _ in results] == [False, False, False]
    for (_, end, _, _), (start, _, _, _) in itertools.pairwise(results):
        assert start >= end, f"a call started at {start} before the previous one ended at {end}"


def test_workers_limit_queued_call_can_be_cancelled(tmp_path: Path) -> None:
    release, started, marker = tmp_path / "release", tmp_path / "started", tmp_path / "ran"
    queued_started = tmp_path / "queued-started"
    try:
        first = core_tasks.limited_block(str(release), str(started))
        second = core_tasks.limited_touch(str(marker))  # another function: a limit of its own
        queued = core_tasks.limited_block(str(release), str(queued_started))
        wait_until(started.exists, RESULT_TIMEOUT, "the first call to start")
        assert second.result(timeout=RESULT_TIMEOUT) > 0  # other functions are not held up
        assert queued.cancel()
    finally:
        release.touch()
    assert first.result(timeout=RESULT_TIMEOUT) > 0
    assert queued.cancelled()
    # the limit is free again: a new call runs, and the cancelled one never did
    assert core_tasks.limited_block(str(release)).result(timeout=RESULT_TIMEOUT) > 0
    assert not queued_started.exists()


# -- inside workers, and pickling ------------------------------------------------------------------


def test_nested_call_inside_a_worker_runs_inline() -> None:
    assert workers.nested_outer(4).result(timeout=RESULT_TIMEOUT) == (16, True)
    outer, inner = core_tasks.nested_pids().result(timeout=RESULT_TIMEOUT)
    assert outer == inner
    assert outer != os.getpid()


def test_decorated_function_pickles_by_reference() -> None:
    data = pickle.dumps(workers.decorated_square)
    assert pickle.loads(data) is workers.decorated_square
    assert b"decorated_square" in data
    assert b"cloudpickle" not in data
    assert pickle.loads(pickle.dumps(workers.inproc_add)) is workers.inproc_add
    assert _config._default_pool is None


def test_decorated_function_can_be_passed_to_a_worker() -> None:
    with Pool(1) as pool:
        result = pool.submit(core_tasks.call_decorated, workers.decorated_square, 5)
        assert result.result(timeout=RESULT_TIMEOUT) == 25
