"""map and starmap: order, laziness, early exit, and failures at their positions, on every backend."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from parallelize import Pool, PoolState, RemoteTraceback, SerializationError, parallel

from . import core_tasks, workers

RESULT_TIMEOUT = 30
MILLION = 1_000_000
# Items the map may pull from its input ahead of what the consumer has taken: the chunks in
# flight. Far below a million, so a map that materialised its input fails this.
AHEAD_LIMIT = 100_000

pytestmark = pytest.mark.timeout(30)


class Counting:
    """An iterable of ``range(n)`` that records how far it has been consumed."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.consumed = 0

    def __iter__(self) -> Iterator[int]:
        for i in range(self.n):
            self.consumed += 1
            yield i


def breaks_after(n: int) -> Iterator[int]:
    yield from range(n)
    raise RuntimeError(f"the input broke after {n} items")


@pytest.fixture
def pool2() -> Iterator[Pool]:
    with Pool(2) as pool:
        yield pool


def mapper(backend: str, function: Any) -> Any:
    """``function.map`` as a decorated function on ``backend`` ("process" is the default pool)."""
    return parallel(backend=backend)(function).map


BACKENDS = ["process", "thread", "sync"]


# -- results ---------------------------------------------------------------------------------------


def test_order_is_preserved_when_items_finish_out_of_order(pool2: Pool) -> None:
    assert list(pool2.map(core_tasks.jitter, range(40), chunksize=1)) == list(range(40))
    assert list(pool2.map(workers.square, range(500))) == [x * x for x in range(500)]


def test_map_with_the_pool_fixture_start_methods(pool: Pool) -> None:
    offset = 3
    # a lambda travels by value: it must work on every start method
    assert list(pool.map(lambda x: x + offset, range(20))) == [x + 3 for x in range(20)]
    assert list(pool.map(workers.add, range(5), range(10, 15))) == [10, 12, 14, 16, 18]


def test_several_iterables_stop_at_the_shortest(pool2: Pool) -> None:
    assert list(pool2.map(workers.add, range(10), [100, 200, 300])) == [100, 201, 302]
    assert list(core_tasks.padd.map(range(10), range(100, 104))) == list(
        map(workers.add, range(10), range(100, 104))
    )
    assert list(core_tasks.padd.map([], range(5))) == []


def test_starmap(pool2: Pool) -> None:
    pairs = [(1, 2), (3, 4), (5, 6)]
    assert list(core_tasks.padd.starmap(pairs)) == [3, 7, 11]
    assert list(core_tasks.padd.starmap(iter(pairs), chunksize=2)) == [3, 7, 11]
    assert list(core_tasks.padd.starmap([])) == []


def test_explicit_chunksize_groups_items(pool2: Pool) -> None:
    source = Counting(700)
    results = pool2.map(core_tasks.pid_and_square, source, chunksize=7)
    first = next(results)
    assert first[1] == 0
    # the input is pulled a whole chunk at a time
    assert source.consumed % 7 == 0
    assert 7 <= source.consumed < 700
    rest = [first, *results]
    assert [value for _, value in rest] == [x * x for x in range(700)]
    # the items of one chunk run together, in one worker
    for start in range(0, 700, 7):
        assert len({pid for pid, _ in rest[start : start + 7]}) == 1


def test_invalid_chunksize_raises(pool2: Pool) -> None:
    with pytest.raises(ValueError, match="chunksize must be at least 1"):
        list(pool2.map(workers.square, range(3), chunksize=0))


def test_empty_input_starts_nothing(pool2: Pool) -> None:
    assert list(pool2.map(workers.square, [])) == []
    assert list(pool2.map(workers.square, iter(()))) == []
    assert pool2.state is PoolState.NEW


def test_map_needs_an_iterable(pool2: Pool) -> None:
    with pytest.raises(TypeError):
        list(pool2.map(workers.square))


# -- laziness --------------------------------------------------------------------------------------


def test_map_over_a_million_items_is_lazy_and_bounded(pool2: Pool) -> None:
    source = Counting(MILLION)
    results = pool2.map(workers.square, source)
    assert list(itertools.islice(results, 5)) == [0, 1, 4, 9, 16]
    assert source.consumed < AHEAD_LIMIT
    results.close()
    consumed = source.consumed
    assert pool2.submit(workers.square, 3).result(timeout=RESULT_TIMEOUT) == 9
    assert source.consumed == consumed  # nothing pulls the input behind the consumer's back

    source = Counting(MILLION)
    total = 0
    most_ahead = 0
    for taken, value in enumerate(pool2.map(workers.square, source), start=1):
        total += value
        most_ahead = max(most_ahead, source.consumed - taken)
    assert total == sum(x * x for x in range(MILLION))
    assert source.consumed == MILLION
    assert most_ahead < AHEAD_LIMIT


def test_stopping_early_leaves_the_pool_usable(pool2: Pool) -> None:
    source = Counting(MILLION)
    results = pool2.map(core_tasks.jitter, source)
    for i, value in enumerate(results):
        assert value == i
        if i == 20:
            break
    results.close()
    assert list(pool2.map(workers.square, range(5))) == [0, 1, 4, 9, 16]
    assert pool2.submit(workers.add, 1, 2).result(timeout=RESULT_TIMEOUT) == 3
    pool2.shutdown()
    assert source.consumed < AHEAD_LIMIT


# -- failures at their positions -------------------------------------------------------------------


@pytest.mark.parametrize("chunksize", [1, 4, None])
def test_failing_item_raises_at_its_position(pool2: Pool, chunksize: int | None) -> None:
    results = pool2.map(workers.fail_at, range(20), itertools.repeat(6), chunksize=chunksize)
    assert [next(results) for _ in range(6)] == [0, 1, 2, 3, 4, 5]
    with pytest.raises(ValueError, match="item 6 is bad") as info:
        next(results)
    assert isinstance(info.value.__cause__, RemoteTraceback)
    assert "fail_at" in info.value.__cause__.text
    assert pool2.submit(workers.square, 2).result(timeout=RESULT_TIMEOUT) == 4


def test_unpicklable_argument_raises_serialization_error(pool2: Pool) -> None:
    items = [1, 2, threading.Lock(), 4]
    with pytest.raises(SerializationError, match="lock") as info:
        list(pool2.map(workers.identity, items, chunksize=1))
    assert "'x'" in str(info.value)
    assert list(pool2.map(workers.identity, [1, 2])) == [1, 2]


@pytest.mark.parametrize("chunksize", [1, 4])
def test_unpicklable_result_raises_at_its_position(pool2: Pool, chunksize: int) -> None:
    results = pool2.map(workers.return_lock_at, range(10), itertools.repeat(5), chunksize=chunksize)
    assert [next(results) for _ in range(5)] == [0, 1, 2, 3, 4]
    with pytest.raises(SerializationError, match="return_lock_at") as info:
        next(results)
    assert "lock" in str(info.value)
    assert pool2.submit(workers.square, 2).result(timeout=RESULT_TIMEOUT) == 4


@pytest.mark.parametrize("chunksize", [1, 3, None])
def test_input_raising_midway_raises_after_earlier_results(pool2: Pool, chunksize: int | None) -> None:
    results = pool2.map(workers.square, breaks_after(5), chunksize=chunksize)
    assert [next(results) for _ in range(5)] == [0, 1, 4, 9, 16]
    with pytest.raises(RuntimeError, match="the input broke after 5 items"):
        next(results)


# -- every backend ---------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_map_on_each_backend(backend: str) -> None:
    assert list(mapper(backend, workers.square)(range(50))) == [x * x for x in range(50)]
    assert list(mapper(backend, workers.add)(range(5), [10, 20, 30])) == [10, 21, 32]
    assert list(mapper(backend, workers.square)([])) == []


@pytest.mark.parametrize("backend", BACKENDS)
def test_failing_item_on_each_backend(backend: str) -> None:
    results = mapper(backend, workers.fail_at)(range(10), itertools.repeat(3))
    assert [next(results) for _ in range(3)] == [0, 1, 2]
    with pytest.raises(ValueError, match="item 3 is bad"):
        next(results)


@pytest.mark.parametrize("backend", BACKENDS)
def test_input_raising_midway_on_each_backend(backend: str) -> None:
    results = mapper(backend, workers.square)(breaks_after(3))
    assert [next(results) for _ in range(3)] == [0, 1, 4]
    with pytest.raises(RuntimeError, match="the input broke"):
        next(results)


@pytest.mark.parametrize("backend", BACKENDS)
def test_lazy_on_each_backend(backend: str) -> None:
    source = Counting(MILLION)
    results = mapper(backend, workers.square)(source)
    assert list(itertools.islice(results, 3)) == [0, 1, 4]
    results.close()
    assert source.consumed < AHEAD_LIMIT
