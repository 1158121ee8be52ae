"""``ordered=False`` and ``return_exceptions=True`` on every map form (issue 12).

Unordered: results come as their chunks finish, and with the ordered map's fault handling (a crash
or a timeout fails one item, an item that cannot be pickled fails its chunk, leaving early cancels
what is in flight, Ctrl-C stops the work). Errors as values: each item's exception is yielded in
its place and the map goes on, so ``zip(inputs, results)`` lines up.

Which item finishes first is never left to timing: a held item waits for a file that the test
creates only after it has taken the results that must come before it.
"""

from __future__ import annotations

import gc
import itertools
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from parallelize import (
    Pool,
    SerializationError,
    TaskTimeout,
    WorkerCrashed,
    parallel,
)

from . import fault_tasks, map_tasks, unordered_tasks, workers
from .conftest import pid_alive, wait_until
from .test_interrupt import (  # noqa: F401 - run_script is a fixture
    EXIT_LIMIT,
    Script,
    _interrupt,
    _markers,
    _no_process_left,
    _read_pid,
    run_script,
)

RESULT_TIMEOUT = 30
BACKENDS = ["process", "thread", "sync"]

pytestmark = pytest.mark.timeout(60)


# -- results as they finish ------------------------------------------------------------------------


@pytest.mark.parametrize("form", ["pool.map", "f.map", "f.starmap"])
def test_a_held_item_does_not_hold_back_the_others(
    pool: Pool, default_start_method: str, tmp_path: Path, form: str
) -> None:
    release = tmp_path / "release"
    xs, releases = [0, 1, 2, 3], [str(release), None, None, None]
    decorated = parallel(unordered_tasks.held)  # on the default pool
    results = {
        "pool.map": lambda: pool.map(unordered_tasks.held, xs, releases, chunksize=1, ordered=False),
        "f.map": lambda: decorated.map(xs, releases, chunksize=1, ordered=False),
        "f.starmap": lambda: decorated.starmap(zip(xs, releases, strict=True), chunksize=1, ordered=False),
    }[form]()
    # Item 0 cannot finish before the release; an ordered map would wait here for good.
    assert sorted(itertools.islice(results, 3)) == [10, 20, 30]
    release.touch()
    assert list(results) == [0]


def test_a_method_maps_unordered(default_start_method: str) -> None:
    scaler = unordered_tasks.Scaler(4)
    assert sorted(scaler.scale.map(range(300), ordered=False)) == [4 * x for x in range(300)]
    assert sorted(scaler.scale.starmap([(1,), (2,)], ordered=False)) == [4, 8]


@pytest.mark.parametrize("backend", BACKENDS)
def test_every_result_comes_once(backend: str) -> None:
    mapped = parallel(backend=backend)(workers.square).map
    results = list(mapped(range(20_000), ordered=False))
    assert sorted(results) == [x * x for x in range(20_000)]
    assert list(mapped([], ordered=False)) == []


@pytest.mark.parametrize("backend", BACKENDS)
def test_several_iterables_and_starmap_unordered(backend: str) -> None:
    function = parallel(backend=backend)(workers.add)
    assert sorted(function.map(range(10), range(100, 105), ordered=False, chunksize=2)) == [
        100,
        102,
        104,
        106,
        108,
    ]
    assert sorted(function.starmap([(1, 2), (3, 4)], ordered=False)) == [3, 7]


def test_inside_a_chunk_results_keep_their_order(pool: Pool) -> None:
    results = list(pool.map(workers.square, range(400), chunksize=100, ordered=False))
    runs = [results[i : i + 100] for i in range(0, 400, 100)]
    assert sorted(run[0] for run in runs) == [x * x for x in (0, 100, 200, 300)]
    for run in runs:
        start = int(run[0] ** 0.5)
        assert run == [x * x for x in range(start, start + 100)]


def test_the_input_is_read_lazily(pool: Pool) -> None:
    consumed = itertools.count()
    source = (x for x in range(1_000_000) if next(consumed) >= 0)
    results = pool.map(workers.square, source, ordered=False)
    assert len(list(itertools.islice(results, 10))) == 10
    assert next(consumed) < 100_000
    results.close()


def test_the_keywords_are_checked(pool1: Pool) -> None:
    with pytest.raises(TypeError, match=r"map\(\)'s ordered= takes True or False, got 'no'"):
        pool1.map(workers.square, [1], ordered="no")  # type: ignore[call-overload]
    with pytest.raises(TypeError, match=r"return_exceptions= takes True or False, got 1"):
        parallel(workers.square).map([1], return_exceptions=1)  # type: ignore[call-overload]


# -- faults, unordered -----------------------------------------------------------------------------


def outcomes(results: Iterator[Any]) -> list[Any]:
    """Every outcome of an unordered map: values, and the exceptions raised in their place."""
    taken: list[Any] = []
    for _ in range(10_000):
        try:
            taken.append(next(results))
        except StopIteration:
            return taken
        except Exception as exc:  # noqa: BLE001 - recorded, and the map asked again
            taken.append(exc)
    pytest.fail("the map never ended")


def split(taken: list[Any]) -> tuple[list[Any], list[BaseException]]:
    values = sorted(value for value in taken if not isinstance(value, BaseException))
    errors = [value for value in taken if isinstance(value, BaseException)]
    return values, errors


@pytest.mark.parametrize("return_exceptions", [False, True])
def test_a_crash_and_a_timeout_fail_one_item_each(return_exceptions: bool, start_method: str) -> None:
    with Pool(2, start_method=start_method, initializer=fault_tasks.warm) as pool:
        results = pool.map(
            unordered_tasks.crash_or_hang,
            range(12),
            chunksize=4,
            item_timeout=1,
            ordered=False,
            return_exceptions=return_exceptions,
        )
        taken = list(results) if return_exceptions else outcomes(results)
        values, errors = split(taken)
        assert values == [x * x for x in range(12) if x not in (3, 5)]
        assert sorted(type(error).__name__ for error in errors) == ["TaskTimeout", "WorkerCrashed"]
        crashed = next(error for error in errors if isinstance(error, WorkerCrashed))
        timed_out = next(error for error in errors if isinstance(error, TaskTimeout))
        assert "crash_or_hang(3)" in str(crashed)
        assert "crash_or_hang(5)" in str(timed_out)
        assert pool.submit(workers.square, 3).result(timeout=RESULT_TIMEOUT) == 9


@pytest.mark.parametrize("chunksize", [1, 2])
def test_an_item_that_cannot_be_pickled_fails_its_chunk(pool: Pool, chunksize: int) -> None:
    items = [1, 2, threading.Lock(), 4, 5, 6]
    values, errors = split(outcomes(pool.map(workers.identity, items, chunksize=chunksize, ordered=False)))
    # raised once for its chunk
    assert len(errors) == 1
    assert isinstance(errors[0], SerializationError)
    assert "lock" in str(errors[0])
    assert values == sorted(set(range(1, 7)) - {3} - ({4} if chunksize == 2 else set()))
    # as values: once per item of that chunk, so every item has its outcome
    taken = list(
        pool.map(workers.identity, items, chunksize=chunksize, ordered=False, return_exceptions=True)
    )
    values, errors = split(taken)
    assert len(taken) == 6
    assert len(errors) == chunksize
    assert all(isinstance(error, SerializationError) for error in errors)


def test_a_broken_input_is_raised_after_the_results_before_it(pool: Pool) -> None:
    def breaks_after(n: int) -> Iterator[int]:
        yield from range(n)
        raise RuntimeError(f"the input broke after {n} items")

    for return_exceptions in (False, True):
        results = pool.map(
            workers.square, breaks_after(5), chunksize=2, ordered=False, return_exceptions=return_exceptions
        )
        assert sorted(itertools.islice(results, 5)) == [0, 1, 4, 9, 16]
        # not an item's outcome: raised even with return_exceptions, once, then the end
        with pytest.raises(RuntimeError, match="the input broke after 5 items"):
            next(results)
        with pytest.raises(StopIteration):
            next(results)


def running_markers(directory: Path) -> list[Path]:
    """The markers of ``fault_tasks.first_fast``'s items that started (each holds its worker)."""
    return [path for path in directory.iterdir() if path.name.isdigit()]


@pytest.mark.parametrize("leave", ["close", "drop"])
def test_leaving_early_cancels_the_chunks_in_flight(pool: Pool, tmp_path: Path, leave: str) -> None:
    results = pool.map(fault_tasks.first_fast, range(8), [str(tmp_path)] * 8, chunksize=1, ordered=False)
    for value in results:
        assert value == 0  # the one item that does not hang
        break
    wait_until(lambda: len(running_markers(tmp_path)) == 2, RESULT_TIMEOUT, "two items to hold the workers")
    pids = {_read_pid(marker) for marker in running_markers(tmp_path)}
    in_flight = [future for future, _ in results._in_flight]
    assert len(in_flight) >= 2
    if leave == "close":
        results.close()
    else:  # the loop broke; the map is dropped
        del results
        gc.collect()
    assert all(future.cancelled() for future in in_flight)
    wait_until(
        lambda: not any(pid_alive(pid) for pid in pids), RESULT_TIMEOUT, "the held items to be stopped"
    )
    assert not pids & set(pool.worker_pids())
    assert pool.submit(workers.square, 4).result(timeout=RESULT_TIMEOUT) == 16
    assert len(running_markers(tmp_path)) == 2  # the queued items were cancelled, not run


# -- errors as values ------------------------------------------------------------------------------


@pytest.mark.parametrize("chunksize", [None, 1, 40])
@pytest.mark.parametrize("backend", BACKENDS)
def test_return_exceptions_keeps_every_position(backend: str, chunksize: int | None) -> None:
    mapped = parallel(backend=backend)(map_tasks.fail_every_7th).map
    results = list(mapped(range(100), chunksize=chunksize, return_exceptions=True))
    assert [str(r) if isinstance(r, Exception) else r for r in results] == map_tasks_expected(100)
    assert all(type(r) is map_tasks.Every7thError for x, r in enumerate(results) if x % 7 == 3)
    # the worker's traceback stays attached to the exception handed out
    if backend == "process":
        assert "fail_every_7th" in str(results[3].__cause__)


def map_tasks_expected(n: int) -> list[Any]:
    return [f"item {x} is refused" if x % 7 == 3 else x * 10 for x in range(n)]


@pytest.mark.parametrize("backend", BACKENDS)
def test_return_exceptions_unordered_gives_each_outcome_once(backend: str) -> None:
    mapped = parallel(backend=backend)(map_tasks.fail_every_7th).map
    results = list(mapped(range(300), chunksize=20, ordered=False, return_exceptions=True))
    assert sorted(map(str, results)) == sorted(map(str, map_tasks_expected(300)))


def test_return_exceptions_on_the_default_pool_and_starmap(default_start_method: str) -> None:
    results = list(unordered_tasks.fails_on_odd.map(range(6), return_exceptions=True))
    assert results[::2] == [0, 2, 4]
    assert [str(error) for error in results[1::2]] == ["item 1 is odd", "item 3 is odd", "item 5 is odd"]
    starred = list(unordered_tasks.fails_on_odd.starmap([(1,), (2,)], return_exceptions=True))
    assert isinstance(starred[0], ValueError)
    assert starred[1] == 2


def test_return_exceptions_hands_back_stop_iteration_and_system_exit(pool: Pool) -> None:
    results = list(pool.map(map_tasks.stop_at_4, range(8), chunksize=8, return_exceptions=True))
    assert results[:4] == [0, 1, 2, 3]
    assert isinstance(results[4], StopIteration)
    assert results[5:] == [5, 6, 7]
    results = list(pool.map(map_tasks.exit_at_5, range(8), return_exceptions=True))
    assert isinstance(results[5], SystemExit)
    assert [r for r in results if not isinstance(r, BaseException)] == [0, 1, 2, 3, 4, 6, 7]


def test_return_exceptions_with_a_crash_and_a_timeout_in_order(start_method: str) -> None:
    with Pool(2, start_method=start_method, initializer=fault_tasks.warm) as pool:
        options = {"chunksize": 4, "item_timeout": 1, "return_exceptions": True}
        results = list(pool.map(unordered_tasks.crash_or_hang, range(8), **options))
    assert isinstance(results[3], WorkerCrashed)
    assert isinstance(results[5], TaskTimeout)
    assert [r for i, r in enumerate(results) if i not in (3, 5)] == [x * x for x in (0, 1, 2, 4, 6, 7)]


# -- Ctrl-C ----------------------------------------------------------------------------------------

CTRL_C_SCRIPT = textwrap.dedent(
    """
    import asyncio
    import os
    import signal
    import sys

    from parallelize import Pool
    from tests import fault_tasks as ft
    from tests import workers


    def say(*words):
        print(*words, flush=True)


    async def consume(results):
        async for value in results:
            say("value", value)


    def run(mode, directory):
        markers = [os.path.join(directory, f"item-{i}") for i in range(6)]
        with Pool(2) as pool:
            warm = [pool.submit(workers.square, i) for i in range(2)]
            assert [f.result(timeout=30) for f in warm] == [0, 1]
            say("pids", *pool.worker_pids())
            # Ctrl-C is not an item's outcome: raised even with return_exceptions
            as_values = mode == "unordered"
            ordered = mode == "async"
            results = pool.map(ft.hang, markers, chunksize=1, ordered=ordered, return_exceptions=as_values)
            try:
                say("started")
                if mode.startswith("async"):
                    asyncio.run(consume(results))
                else:
                    for value in results:
                        say("value", value)
            except KeyboardInterrupt:
                say("interrupted")
            say("after", pool.submit(workers.square, 7).result(timeout=30))


    if __name__ == "__main__":
        signal.signal(signal.SIGINT, signal.default_int_handler)
        run(*sys.argv[1:])
    """
)


@pytest.mark.parametrize("mode", ["unordered", "async", "async-unordered"])
def test_ctrl_c_stops_the_map_and_the_pool_goes_on(
    run_script: Callable[..., Script],  # noqa: F811 - the fixture imported above
    tmp_path: Path,
    mode: str,
) -> None:
    script = run_script(mode, str(tmp_path), source=CTRL_C_SCRIPT)
    pids = script.until_started()
    stopped = [_read_pid(marker) for marker in _markers(tmp_path, 2)]
    sent = _interrupt(script)
    assert script.read_line(timeout=EXIT_LIMIT) == "interrupted"
    assert script.read_line() == "after 49"
    out, err = script.finish()
    assert time.monotonic() - sent < EXIT_LIMIT + RESULT_TIMEOUT
    assert script.proc.returncode == 0, err
    assert "Traceback" not in err, err
    assert "value" not in out  # the hanging items gave nothing, not even an error as a value
    _no_process_left(script, pids + stopped)
