"""map and starmap: order, laziness, early exit, and failures at their positions, on every backend."""

from __future__ import annotations

import gc
import itertools
import threading
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from parallelize import (
    MapIterator,
    Pool,
    PoolState,
    RemoteTraceback,
    SerializationError,
    TaskTimeout,
    WorkerCrashed,
    parallel,
)
from parallelize import _chunking as chunking

from . import core_tasks, fault_tasks, map_tasks, workers

RESULT_TIMEOUT = 30
MILLION = 1_000_000
# Items the map may pull from its input ahead of what the consumer has taken: the chunks in
# flight on the 2 workers, and the one in hand. Far below a million, so a map that materialised its
# input fails this.
AHEAD_LIMIT = (chunking.CHUNKS_PER_WORKER * 2 + 1) * chunking.MAX_CHUNK

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


# -- one iterable: bare items ----------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_one_iterable_passes_each_item_as_the_single_argument(backend: str) -> None:
    # Items that are tuples themselves must arrive whole, not unpacked: f((1, 2)), never f(1, 2).
    items: list[Any] = [(1, 2), (), None, [3], "ab"]
    expected = [(item,) for item in items]
    assert list(mapper(backend, map_tasks.args_of)(items)) == expected
    assert list(mapper(backend, map_tasks.args_of)(items, chunksize=2)) == expected
    # starmap and several iterables still unpack their argument tuples
    starmap = parallel(backend=backend)(map_tasks.args_of).starmap
    assert list(starmap([(1, 2), (), ("a",)])) == [(1, 2), (), ("a",)]
    assert list(mapper(backend, map_tasks.args_of)([1, 2], "xy")) == [(1, "x"), (2, "y")]


def test_one_iterable_is_read_lazily_with_bare_items(pool: Pool) -> None:
    source = Counting(MILLION)
    results = pool.map(workers.square, source)
    assert next(results) == 0
    assert source.consumed < AHEAD_LIMIT
    results.close()


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_list_is_read_in_slices_as_the_map_goes(backend: str) -> None:
    numbers = list(range(MILLION))
    results = mapper(backend, workers.square)(numbers)
    assert list(itertools.islice(results, 1000)) == [x * x for x in range(1000)]
    assert 1000 <= results._taken < AHEAD_LIMIT
    results.close()
    assert list(mapper(backend, workers.square)(numbers[:5000], chunksize=7)) == [x * x for x in range(5000)]

    # a list subclass goes the general way, and gives the same results
    class Numbers(list[int]):
        pass

    assert list(mapper(backend, workers.square)(Numbers(range(50)))) == [x * x for x in range(50)]


# -- the worker's tight loop: failures in the middle of a chunk ------------------------------------


def outcomes(results: Iterator[Any], error: type[BaseException]) -> list[Any]:
    """Every item's outcome taken by ``for`` loops (the fast path), starting a new loop after each
    failure; a failure is recorded as its message."""
    taken: list[Any] = []
    while True:
        try:
            for value in results:
                taken.append(value)
        except error as exc:
            taken.append(str(exc))
            continue
        return taken


def expected_every_7th(n: int) -> list[Any]:
    return [f"item {x} is refused" if x % 7 == 3 else x * 10 for x in range(n)]


@pytest.mark.parametrize("chunksize", [None, 1, 50, 1000])
def test_failures_in_the_middle_of_chunks_keep_every_other_result(pool: Pool, chunksize: int | None) -> None:
    results = pool.map(map_tasks.fail_every_7th, range(300), chunksize=chunksize)
    assert outcomes(results, map_tasks.Every7thError) == expected_every_7th(300)
    with pytest.raises(StopIteration):
        next(results)


@pytest.mark.parametrize("backend", BACKENDS)
def test_failures_in_the_middle_of_chunks_on_each_backend(backend: str) -> None:
    results = mapper(backend, map_tasks.fail_every_7th)(range(100), chunksize=40)
    assert outcomes(results, map_tasks.Every7thError) == expected_every_7th(100)
    # next() sees the same outcomes
    results = mapper(backend, map_tasks.fail_every_7th)(range(30), chunksize=40)
    for x in range(30):
        if x % 7 == 3:
            with pytest.raises(map_tasks.Every7thError, match=f"item {x} is refused"):
                next(results)
        else:
            assert next(results) == x * 10


@pytest.mark.parametrize("chunksize", [None, 10])
def test_an_item_raising_stop_iteration_fails_only_itself(pool: Pool, chunksize: int | None) -> None:
    # A C-speed loop would take StopIteration for the end of the chunk and drop the rest.
    results = pool.map(map_tasks.stop_at_4, range(10), chunksize=chunksize)
    assert [next(results) for _ in range(4)] == [0, 1, 2, 3]
    with pytest.raises(StopIteration):
        next(results)
    assert [next(results) for _ in range(5)] == [5, 6, 7, 8, 9]
    with pytest.raises(StopIteration):
        next(results)
    # a for loop or list() does not end quietly at that item either (a RuntimeError, as PEP 479
    # makes of a generator's), and the iterator goes on after it
    results = iter(pool.map(map_tasks.stop_at_4, range(10), chunksize=chunksize))
    with pytest.raises(RuntimeError, match="raised StopIteration") as info:
        list(results)
    assert isinstance(info.value.__cause__, StopIteration)
    assert list(results) == [5, 6, 7, 8, 9]


@pytest.mark.parametrize("backend", BACKENDS)
def test_stop_iteration_and_system_exit_fail_one_item_on_each_backend(backend: str) -> None:
    results = mapper(backend, map_tasks.stop_at_4)(range(8), chunksize=8)
    assert [next(results) for _ in range(4)] == [0, 1, 2, 3]
    with pytest.raises(StopIteration):
        next(results)
    assert list(results) == [5, 6, 7]
    results = mapper(backend, map_tasks.exit_at_5)(range(8), chunksize=8)
    assert [next(results) for _ in range(5)] == [0, 1, 2, 3, 4]
    with pytest.raises(SystemExit):
        next(results)
    assert list(results) == [6, 7]


def test_system_exit_in_a_chunk_fails_that_item_and_the_worker_goes_on(pool: Pool) -> None:
    results = pool.map(map_tasks.exit_at_5, range(12), chunksize=12)
    assert [next(results) for _ in range(5)] == [0, 1, 2, 3, 4]
    with pytest.raises(SystemExit):
        next(results)
    assert list(results) == [6, 7, 8, 9, 10, 11]


def test_retry_on_reruns_only_the_failing_items_of_a_chunk(tmp_path: Path) -> None:
    paths = [str(tmp_path / f"item{i}") for i in range(6)]
    with Pool(2) as pool:
        assert list(pool.map(map_tasks.flaky_item_retried, paths, chunksize=3)) == [2] * 6
    assert all(Path(p).read_text().count("\n") == 2 for p in paths)


def test_a_crash_in_a_chunk_of_bare_items_fails_only_that_item() -> None:
    with Pool(2) as pool:
        results = pool.map(map_tasks.crash_at_5, range(16), chunksize=8)
        assert [next(results) for _ in range(5)] == [x * x for x in range(5)]
        with pytest.raises(WorkerCrashed, match=r"while running tests\.map_tasks\.crash_at_5\(5\)"):
            next(results)
        assert list(results) == [x * x for x in range(6, 16)]


def test_a_timeout_in_a_chunk_of_bare_items_fails_only_that_item() -> None:
    # Every item has the 0.5 s limit, so workers import the tasks before their first item.
    with Pool(2, initializer=fault_tasks.warm) as pool:
        results = pool.map(map_tasks.hang_at_5, range(16), chunksize=8, item_timeout=0.5)
        assert [next(results) for _ in range(5)] == [x * x for x in range(5)]
        with pytest.raises(TaskTimeout, match=r"tests\.map_tasks\.hang_at_5\(5\) ran past"):
            next(results)
        assert list(results) == [x * x for x in range(6, 16)]


# -- no iterator over a map ends early -------------------------------------------------------------

# A loop that catches a failed item's error and asks again: over the map itself, over the one
# iterator iter() gives (what for, zip, list() and itertools take), or over iter() of that.
CONSUMERS = {
    "next() on the map": lambda results: results,
    "iter(map)": iter,
    "iter(iter(map))": lambda results: iter(iter(results)),
}
MESSAGES = (map_tasks.Every7thError, SerializationError, RuntimeError)


def every_outcome(results: Iterator[Any]) -> list[Any]:
    """Each outcome ``next()`` gives, asking again after each failure (recorded as its message),
    until StopIteration; which must then stay the answer."""
    taken: list[Any] = []
    for _ in range(10_000):  # a bound, should an iterator keep raising
        try:
            taken.append(next(results))
        except StopIteration:
            with pytest.raises(StopIteration):
                next(results)
            return taken
        except MESSAGES as exc:
            taken.append(str(exc))
    pytest.fail(f"the iterator gave no StopIteration after {len(taken)} outcomes")


@pytest.mark.parametrize("consumer", CONSUMERS)
@pytest.mark.parametrize("backend", BACKENDS)
def test_one_iterator_goes_on_past_each_failed_item(backend: str, consumer: str) -> None:
    # Chunks of 40: several failures in each chunk, and failures in every chunk.
    results = mapper(backend, map_tasks.fail_every_7th)(range(100), chunksize=40)
    assert every_outcome(CONSUMERS[consumer](results)) == expected_every_7th(100)


@pytest.mark.parametrize("chunksize", [None, 1, 1000])
def test_one_iterator_over_pool_map_goes_on_past_each_failed_item(pool: Pool, chunksize: int | None) -> None:
    results = iter(pool.map(map_tasks.fail_every_7th, range(300), chunksize=chunksize))
    assert every_outcome(results) == expected_every_7th(300)


@pytest.mark.parametrize("backend", BACKENDS)
def test_for_loops_over_one_iterator_go_on_after_a_failure(backend: str) -> None:
    # A for loop ends at the failure; the next loop over the same iterator takes the next item.
    results = iter(mapper(backend, map_tasks.fail_every_7th)(range(100), chunksize=40))
    assert outcomes(results, map_tasks.Every7thError) == expected_every_7th(100)


@pytest.mark.parametrize("backend", BACKENDS)
def test_zip_over_a_map_goes_on_and_keeps_positions(backend: str) -> None:
    results = mapper(backend, map_tasks.fail_every_7th)(range(100), chunksize=40)
    # count() is taken once per attempt, the failed ones too: its number is the item's position.
    pairs = zip(itertools.count(), results)
    taken = every_outcome(pairs)
    assert taken == [(x, x * 10) if x % 7 != 3 else f"item {x} is refused" for x in range(100)]


@pytest.mark.parametrize("backend", BACKENDS)
def test_list_raises_at_the_first_failure_and_the_iterator_goes_on(backend: str) -> None:
    results = iter(mapper(backend, map_tasks.fail_every_7th)(range(20), chunksize=8))
    with pytest.raises(map_tasks.Every7thError, match="item 3 is refused"):
        list(results)
    assert next(results) == 40
    taken: list[int] = []
    with pytest.raises(map_tasks.Every7thError, match="item 10 is refused"):
        taken.extend(results)  # 10 is in the second chunk
    assert taken == [50, 60, 70, 80, 90]
    with pytest.raises(map_tasks.Every7thError, match="item 17 is refused"):
        taken.extend(results)
    assert taken[5:] == [110, 120, 130, 140, 150, 160]
    assert list(results) == [180, 190]
    assert list(results) == []


@pytest.mark.parametrize("backend", BACKENDS)
def test_islice_raises_at_a_failure_and_a_new_islice_goes_on(backend: str) -> None:
    results = iter(mapper(backend, map_tasks.fail_every_7th)(range(20), chunksize=8))
    with pytest.raises(map_tasks.Every7thError, match="item 3 is refused"):
        list(itertools.islice(results, 10))
    # An islice ends itself after passing on an error (as a generator does); the map goes on.
    assert list(itertools.islice(results, 3)) == [40, 50, 60]
    assert every_outcome(results) == expected_every_7th(20)[7:]


def test_a_failed_chunk_and_a_broken_input_through_one_iterator(pool2: Pool) -> None:
    # The chunk holding the lock cannot be pickled: its error stands once for both its items.
    items = [1, 2, threading.Lock(), 4, 5, 6]
    taken = every_outcome(iter(pool2.map(workers.identity, items, chunksize=2)))
    assert taken[:2] == [1, 2]
    assert "lock" in taken[2]
    assert taken[3:] == [5, 6]
    # A broken input ends the map after its error, and only then.
    taken = every_outcome(iter(pool2.map(workers.square, breaks_after(5), chunksize=2)))
    assert taken == [0, 1, 4, 9, 16, "the input broke after 5 items"]


# -- for loops and next() share one position -------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_for_loops_and_next_take_turns_without_losing_or_repeating_items(backend: str) -> None:
    results = mapper(backend, workers.square)(range(1000), chunksize=7)
    taken = [next(results), next(results)]
    for value in results:
        taken.append(value)
        if len(taken) == 5:  # break in the middle of a chunk
            break
    taken.append(next(results))
    loop = iter(results)
    taken.append(next(loop))
    taken.append(next(results))  # next() while a loop is paused part-way through a chunk
    taken.append(next(loop))
    taken += [next(results) for _ in range(20)]  # next() runs past the loop's chunk
    taken += list(loop)  # the paused loop goes on from there
    assert taken == [x * x for x in range(1000)]
    with pytest.raises(StopIteration):
        next(results)


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_loop_ended_by_a_failure_leaves_the_map_going(backend: str) -> None:
    results = mapper(backend, workers.fail_at)(range(20), itertools.repeat(6), chunksize=4)
    taken = []
    with pytest.raises(ValueError, match="item 6 is bad"):
        taken.extend(results)  # a loop in C over the fast path; extend keeps what came before
    assert taken == [0, 1, 2, 3, 4, 5]
    assert next(results) == 7
    assert list(results) == list(range(8, 20))


def test_close_inside_a_loop_ends_it_at_the_next_item(pool2: Pool) -> None:
    results = pool2.map(workers.square, range(10_000), chunksize=100)
    taken = []
    for value in results:
        taken.append(value)
        if len(taken) == 10:
            results.close()  # the loop is part-way through a chunk of 100
    assert taken == [x * x for x in range(10)]
    with pytest.raises(StopIteration):
        next(results)
    assert pool2.submit(workers.square, 3).result(timeout=RESULT_TIMEOUT) == 9


def test_map_iterator_is_an_iterator(pool2: Pool) -> None:
    results = pool2.map(workers.square, range(3))
    assert isinstance(results, MapIterator)
    assert isinstance(iter(results), Iterator)
    assert list(results) == [0, 1, 4]
    assert list(results) == []


# -- adaptive chunk sizes (read from the chunks in flight, never from timings) ---------------------


def in_flight_sizes(results: MapIterator[Any]) -> list[int]:
    return [size for _, size in results._in_flight]


def never_measured() -> Any:
    """A function no map has measured yet (a new closure each time: its own record)."""

    def square(x: int) -> int:
        return x * x

    return square


def test_chunks_grow_for_tiny_items(pool: Pool) -> None:
    results = pool.map(never_measured(), range(MILLION))
    assert next(results) == 0
    # the first chunks, sent before anything was measured, hold one item each: the first results
    # come back at once
    assert in_flight_sizes(results)[:3] == [1, 1, 1]
    for _ in itertools.islice(results, 100_000):
        pass
    sizes = in_flight_sizes(results)
    # thousands of items per round trip (max: a chunk that a busy machine slowed down shrinks
    # the next one for a while)
    assert max(sizes) >= 1024
    assert max(sizes) <= chunking.MAX_CHUNK
    results.close()


def test_a_second_map_of_a_function_starts_from_what_the_first_measured(pool: Pool) -> None:
    square = never_measured()
    assert sum(pool.map(square, range(20_000))) == sum(x * x for x in range(20_000))
    results = pool.map(square, range(20_000))
    assert next(results) == 0
    first = in_flight_sizes(results)
    # one eightfold step below what the measure asks for, and never more than a quarter of each
    # of the 2 workers' share of a known length
    assert 1 < first[0] <= 20_000 // 8
    assert sum(results) == sum(x * x for x in range(1, 20_000))


def test_a_map_of_known_length_cuts_no_chunk_over_a_quarter_of_a_worker_share(pool: Pool) -> None:
    square = never_measured()
    assert sum(pool.map(square, range(20_000))) > 0  # measured: the next map starts big
    results = pool.map(square, range(4_000))
    seen = []
    for _ in results:
        seen += in_flight_sizes(results)
    assert max(seen) == 4_000 // (4 * 2)
    # a generator's length is unknown: its chunks are sized by time alone
    results = pool.map(square, iter(range(40_000)))
    seen = []
    for _ in results:
        seen += in_flight_sizes(results)
    assert max(seen) > 4_000 // (4 * 2)


def test_the_chunk_sizer_starts_one_step_below_a_known_measure() -> None:
    assert chunking.ChunkSizer(None).next_size() == 1
    cheap = chunking.ChunkSizer(None, known=1e-7)  # 0.1 µs an item: 100,000 fill 10 ms
    assert cheap.next_size() == chunking.MAX_CHUNK // 8
    assert cheap.next_size(total=100, workers=2) == 13  # a quarter of 50, rounded up
    slow = chunking.ChunkSizer(None, known=0.5)
    assert slow.next_size() == 1
    fixed = chunking.ChunkSizer(7, known=1e-7)
    assert fixed.next_size(total=10, workers=2) == 7  # an explicit chunksize is the user's
    fixed.observe(7, 1.0)
    assert fixed.per_item is None
    cheap.observe(1000, 0.001)
    assert cheap.per_item == pytest.approx(1e-6)


def test_chunks_stay_at_one_item_for_slow_items(pool: Pool) -> None:
    results = pool.map(map_tasks.pause, range(16))
    seen = []
    for expected in range(16):
        seen += in_flight_sizes(results)
        assert next(results) == expected
    assert set(seen) == {1}


def test_an_explicit_chunksize_does_not_adapt(pool2: Pool) -> None:
    results = pool2.map(workers.square, range(MILLION), chunksize=5)
    for _ in itertools.islice(results, 10_000):
        pass
    assert set(in_flight_sizes(results)) == {5}
    results.close()


# -- memory ----------------------------------------------------------------------------------------


def test_finished_chunks_are_freed_without_the_garbage_collector(pool2: Pool) -> None:
    # A chunk's future and its task refer to each other; unless the dispatcher breaks that cycle
    # when the chunk is done, every chunk's items, payload and values wait for a collection.
    refs: list[weakref.ref[map_tasks.Box]] = []

    def boxes() -> Iterator[map_tasks.Box]:
        for i in range(300):
            box = map_tasks.Box(i)
            refs.append(weakref.ref(box))
            yield box

    gc.disable()
    try:
        assert sum(pool2.map(map_tasks.unbox, boxes(), chunksize=10)) == sum(range(300))
        alive = [ref for ref in refs if ref() is not None]
    finally:
        gc.enable()
    assert alive == []
