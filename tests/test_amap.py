"""``async for`` over a map, and ``@parallel async def`` awaited (issue 12, asyncio).

The map must never block the event loop it is consumed in: the tests hold an item until a second
coroutine on the same loop releases it, so a map that blocked the loop would never see the release
(the held item then gives up with an error after ``unordered_tasks.HOLD_LIMIT`` seconds). Every
``asyncio.run`` has an explicit ``asyncio.wait_for`` bound.
"""

from __future__ import annotations

import asyncio
import collections.abc
import itertools
import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from parallelize import MapIterator, Pool, WorkerCrashed, parallel

from . import fault_tasks, map_tasks, unordered_tasks, workers
from .conftest import pid_alive, wait_until

RESULT_TIMEOUT = 30
BACKENDS = ["process", "thread", "sync"]

pytestmark = pytest.mark.timeout(60)


def run(coroutine: collections.abc.Coroutine[Any, Any, Any]) -> Any:
    return asyncio.run(asyncio.wait_for(coroutine, RESULT_TIMEOUT))


async def collect(results: AsyncIterator[Any]) -> list[Any]:
    return [value async for value in results]


def forms(pool: Pool, ordered: bool) -> dict[str, Callable[[list[int], list[str | None]], Any]]:
    """Every map form over ``unordered_tasks.held``, one item per chunk."""
    decorated = parallel(unordered_tasks.held)  # on the default pool
    options: dict[str, Any] = {"chunksize": 1, "ordered": ordered}
    return {
        "pool.map": lambda xs, releases: pool.map(unordered_tasks.held, xs, releases, **options),
        "f.map": lambda xs, releases: decorated.map(xs, releases, **options),
        "f.starmap": lambda xs, releases: decorated.starmap(zip(xs, releases, strict=True), **options),
    }


@pytest.mark.parametrize("ordered", [True, False])
@pytest.mark.parametrize("form", ["pool.map", "f.map", "f.starmap"])
def test_async_for_never_blocks_the_loop(
    pool: Pool, default_start_method: str, tmp_path: Path, form: str, ordered: bool
) -> None:
    release = tmp_path / "release"
    xs = list(range(6))
    results = forms(pool, ordered)[form](xs, [str(release)] + [None] * 5)
    assert isinstance(results, collections.abc.AsyncIterator)

    async def main() -> list[int]:
        consumer = asyncio.create_task(collect(results))
        await asyncio.sleep(0)  # the consumer runs up to its first wait, for item 0
        release.touch()  # only reached while the consumer waits without blocking the loop
        return await consumer

    values = run(main())
    assert (values if ordered else sorted(values)) == [x * 10 for x in xs]


def test_a_method_and_an_async_def_map_in_async_for(default_start_method: str) -> None:
    scaler = unordered_tasks.Scaler(3)

    async def main() -> tuple[list[int], list[int], list[int]]:
        scaled = await collect(scaler.scale.map(range(200)))
        starred = await collect(scaler.scale.starmap([(1,), (2,)], ordered=False))
        tripled = await collect(unordered_tasks.async_triple.map(range(50)))
        return scaled, sorted(starred), tripled

    scaled, starred, tripled = run(main())
    assert scaled == [3 * x for x in range(200)]
    assert starred == [3, 6]
    assert tripled == [3 * x for x in range(50)]


@pytest.mark.parametrize("backend", BACKENDS)
def test_async_for_on_each_backend(backend: str) -> None:
    mapped = parallel(backend=backend)(workers.square).map

    async def main() -> tuple[list[int], list[int]]:
        return await collect(mapped(range(5000))), await collect(mapped(range(5000), ordered=False))

    ordered, unordered = run(main())
    assert ordered == [x * x for x in range(5000)]
    assert sorted(unordered) == ordered


@pytest.mark.parametrize("ordered", [True, False])
def test_several_tasks_share_one_map(pool: Pool, ordered: bool) -> None:
    results = pool.map(workers.square, range(3000), chunksize=7, ordered=ordered)

    async def main() -> list[list[int]]:
        return await asyncio.gather(*(collect(results) for _ in range(3)))

    shares = run(main())
    # each outcome went to one task, none was lost or repeated, and in order within each task
    assert sorted(itertools.chain.from_iterable(shares)) == [x * x for x in range(3000)]
    if ordered:
        assert all(share == sorted(share) for share in shares)


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_failed_item_raises_in_place_and_the_map_goes_on(backend: str) -> None:
    results = parallel(backend=backend)(map_tasks.fail_every_7th).map(range(30), chunksize=8)

    async def main() -> list[Any]:
        taken: list[Any] = []
        while True:
            try:
                taken.append(await anext_of(results))
            except StopAsyncIteration:
                return taken
            except map_tasks.Every7thError as exc:
                taken.append(str(exc))

    assert run(main()) == [f"item {x} is refused" if x % 7 == 3 else x * 10 for x in range(30)]


async def anext_of(results: MapIterator[Any]) -> Any:
    return await results.__anext__()  # anext() is 3.10+, but typeshed gives it to 3.10 only partly


def test_return_exceptions_in_async_for(pool: Pool) -> None:
    results = pool.map(map_tasks.fail_every_7th, range(30), chunksize=8, return_exceptions=True)
    values = run(collect(results))
    assert [str(v) if isinstance(v, Exception) else v for v in values] == [
        f"item {x} is refused" if x % 7 == 3 else x * 10 for x in range(30)
    ]


def test_an_item_raising_stop_iteration_cannot_end_the_loop(pool: Pool) -> None:
    results = pool.map(map_tasks.stop_at_4, range(8), chunksize=8)

    async def main() -> tuple[list[int], BaseException, list[int]]:
        before: list[int] = []
        try:
            async for value in results:
                before.append(value)
        except RuntimeError as exc:
            return before, exc, await collect(results)  # a new loop goes on after the item
        pytest.fail("the loop ended quietly at the item that raised StopIteration")

    before, error, after = run(main())
    assert before == [0, 1, 2, 3]
    assert "raised StopIteration" in str(error)
    assert isinstance(error.__cause__, StopIteration)
    assert after == [5, 6, 7]


@pytest.mark.parametrize("how", ["cancel", "wait_for"])
def test_cancelling_the_consumer_cancels_the_maps_work(pool: Pool, tmp_path: Path, how: str) -> None:
    results = pool.map(fault_tasks.first_fast, range(8), [str(tmp_path)] * 8, chunksize=1)
    markers = [tmp_path / "1", tmp_path / "2"]  # items 1 and 2 hold both workers
    taken: list[int] = []

    async def consume() -> None:
        async for value in results:
            taken.append(value)

    async def main() -> tuple[list[Any], set[int]]:
        consumer = asyncio.create_task(consume())
        await asyncio.to_thread(
            wait_until, lambda: all(m.exists() for m in markers), RESULT_TIMEOUT, "items 1 and 2"
        )
        in_flight = [future for future, _ in results._in_flight]
        pids = {fault_tasks.read_pid(str(m)) for m in markers}
        if how == "cancel":
            consumer.cancel()
            with pytest.raises(asyncio.CancelledError):
                await consumer
        else:
            with pytest.raises((asyncio.TimeoutError, TimeoutError)):
                await asyncio.wait_for(consumer, 0.1)  # the items hang for ever: a time-out cancels
        return in_flight, pids

    in_flight, pids = run(main())
    assert taken == [0]
    assert in_flight
    assert all(future.cancelled() for future in in_flight)
    assert not results._in_flight
    wait_until(lambda: not any(map(pid_alive, pids)), RESULT_TIMEOUT, "the held items to be stopped")
    assert pool.submit(workers.square, 6).result(timeout=RESULT_TIMEOUT) == 36
    assert not (tmp_path / "5").exists()  # queued items were cancelled, not run


# -- @parallel async def: futures that await the coroutine's result ----------------------------------


def test_parallel_async_def_gives_awaitable_futures(default_start_method: str) -> None:
    async def main() -> tuple[int, list[int], int]:
        one = await unordered_tasks.async_triple(4)
        many = await asyncio.gather(*(unordered_tasks.async_triple(i) for i in range(10)))
        future = unordered_tasks.async_triple(5)  # a concurrent.futures.Future too
        return one, many, await asyncio.wrap_future(future)

    one, many, wrapped = run(main())
    assert (one, many, wrapped) == (12, [3 * i for i in range(10)], 15)
    assert unordered_tasks.async_triple(2).result(timeout=RESULT_TIMEOUT) == 6


def test_cancelling_an_awaited_async_def_stops_it_in_its_worker(
    default_start_method: str, tmp_path: Path
) -> None:
    marker = tmp_path / "running"

    async def main() -> int:
        call = asyncio.ensure_future(unordered_tasks.async_hang(str(marker)))
        await asyncio.to_thread(wait_until, marker.exists, RESULT_TIMEOUT, "the coroutine to start")
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
        return fault_tasks.read_pid(str(marker))

    pid = run(main())
    wait_until(lambda: not pid_alive(pid), RESULT_TIMEOUT, "the worker running the coroutine to be stopped")
    assert unordered_tasks.async_triple(1).result(timeout=RESULT_TIMEOUT) == 3
    assert os.getpid() != pid


def test_a_crash_in_async_for_fails_one_item(tmp_path: Path) -> None:
    with Pool(2) as pool:
        results = pool.map(map_tasks.crash_at_5, range(10), chunksize=4, return_exceptions=True)
        values = run(collect(results))
    assert isinstance(values[5], WorkerCrashed)
    assert [v for i, v in enumerate(values) if i != 5] == [x * x for x in range(10) if x != 5]
