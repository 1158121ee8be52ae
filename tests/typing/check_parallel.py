"""What ``@parallel`` promises to a type checker (checked by mypy --strict, never executed).

Each ``assert_type`` is a promise that must keep holding; each ``# type: ignore[code]`` marks a
call that must stay rejected (strict mode reports an ignore that no longer fires as an error).
Usage sits inside functions so that importing this module would start nothing.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Callable, Iterator
from typing import TypeVar

from typing_extensions import assert_type

import parallelize
from parallelize import Future, MapIterator, ParallelFunction, Pool, parallel

T = TypeVar("T")


@parallel
def crunch(x: int) -> float:
    return x / 2


@parallel
def add(x: int, y: int) -> int:
    return x + y


@parallel
def label(name: str, count: int, sep: str) -> str:
    return sep.join([name] * count)


@parallel(workers=4)
def fetch(url: str) -> bytes:
    return url.encode()


@parallel(backend="thread")
def scaled(x: int, *, factor: float = 1.0) -> float:
    return x * factor


@parallel()
def defaulted(x: int, y: int = 1) -> int:
    return x * y


@parallel
def nothing() -> None:
    return None


@parallel
def total(*numbers: int) -> int:
    return sum(numbers)


@parallel
def same(item: T) -> T:
    return item


@parallel
def six(a: int, b: int, c: int, d: int, e: int, sep: str) -> str:
    return sep.join(map(str, (a, b, c, d, e)))


def decorated_types() -> None:
    # assert_type would compare parameter names too ("Arg(int, 'x')"), so these are assignments.
    one: ParallelFunction[[int], float] = crunch
    two: ParallelFunction[[int, int], int] = add
    options: ParallelFunction[[str], bytes] = fetch
    none: ParallelFunction[[], None] = nothing
    print(one, two, options, none)


def calls_return_futures() -> None:
    assert_type(crunch(3), Future[float])
    assert_type(crunch(x=3), Future[float])
    assert_type(add(1, 2), Future[int])
    assert_type(add(1, y=2), Future[int])
    assert_type(label("a", 2, "-"), Future[str])
    assert_type(fetch("http://example.org"), Future[bytes])
    assert_type(scaled(2), Future[float])
    assert_type(scaled(2, factor=0.5), Future[float])
    assert_type(defaulted(2), Future[int])
    assert_type(defaulted(2, 3), Future[int])
    assert_type(nothing(), Future[None])
    assert_type(crunch(3), parallelize.Future[float])
    assert_type(total(1, 2, 3), Future[int])
    assert_type(same(3), Future[int])
    assert_type(same("a"), Future[str])


def submit_is_the_same_as_calling() -> None:
    assert_type(crunch.submit(3), Future[float])
    assert_type(add.submit(1, y=2), Future[int])
    assert_type(scaled.submit(2, factor=3.0), Future[float])


def futures_are_concurrent_futures() -> None:
    future = crunch(3)
    assert_type(future.result(), float)
    assert_type(future.result(timeout=5), float)
    assert_type(future.exception(timeout=5), BaseException | None)
    assert_type(future.done(), bool)
    assert_type(future.cancel(), bool)
    plain: concurrent.futures.Future[float] = future
    done, _pending = concurrent.futures.wait([future, crunch(4)], timeout=5)
    assert_type(done, set[concurrent.futures.Future[float]])
    for finished in concurrent.futures.as_completed([future], timeout=5):
        assert_type(finished.result(), float)
    future.add_done_callback(lambda f: print(f.result() + 1.0))
    assert_type(plain.result(), float)


def one_iterable_map() -> None:
    assert_type(crunch.map([1, 2, 3]), MapIterator[float])
    assert_type(crunch.map(range(10), chunksize=4), MapIterator[float])
    assert_type(crunch.map(n for n in range(3)), MapIterator[float])
    assert_type(fetch.map(["a", "b"]), MapIterator[bytes])
    assert_type(defaulted.map([1, 2]), MapIterator[int])  # y keeps its default
    assert_type(scaled.map([1, 2]), MapIterator[float])  # factor keeps its default
    bools = [True, False]
    assert_type(crunch.map(bools), MapIterator[float])  # bool is an int
    for value in crunch.map([1, 2]):
        assert_type(value, float)
    total: float = sum(crunch.map([1, 2]), 0.0)
    assert_type(total, float)


def several_iterable_map() -> None:
    assert_type(add.map([1, 2], [3, 4]), MapIterator[int])
    assert_type(add.map(range(3), (4, 5, 6), chunksize=2), MapIterator[int])
    assert_type(defaulted.map([1, 2], [3, 4]), MapIterator[int])
    assert_type(label.map(["a", "b"], [1, 2], ["-", "+"]), MapIterator[str])
    assert_type(total.map([1], [2], [3], [4], [5]), MapIterator[int])
    assert_type(six.map([1], [2], [3], [4], [5], ["a"]), MapIterator[str])  # past five: unchecked items
    assert_type(six.map([1], [2], [3], [4], [5], ["a"], chunksize=2), MapIterator[str])
    assert_type(six.starmap([(1, 2, 3, 4, 5, "a")]), MapIterator[str])


def generic_function_map(ints: list[int]) -> None:
    # basedpyright infers MapIterator[int]; mypy cannot solve T through the call protocols and
    # falls back to MapIterator[Any]. Either way the map is accepted and assignable.
    values: MapIterator[int] = same.map(ints)
    pairs: MapIterator[int] = same.starmap([(1,), (2,)])
    print(values, pairs)


def starmap_takes_tuples() -> None:
    assert_type(crunch.starmap([(1,), (2,)]), MapIterator[float])
    assert_type(add.starmap([(1, 2), (3, 4)]), MapIterator[int])
    assert_type(add.starmap(zip(range(3), range(3), strict=True), chunksize=8), MapIterator[int])
    assert_type(label.starmap([("a", 1, "-")]), MapIterator[str])


def wrapped_keeps_the_signature() -> None:
    original: Callable[[int], float] = crunch.__wrapped__
    assert_type(crunch.__wrapped__(3), float)
    assert_type(add.__wrapped__(1, y=2), int)
    assert_type(scaled.__wrapped__(1, factor=2.0), float)
    assert_type(original(3), float)
    assert_type(crunch.__name__, str)
    assert_type(crunch.__qualname__, str)


def decorated_functions_are_callables() -> None:
    # Passed as arguments: an annotated local would be narrowed back to the decorated type.
    def as_callable(function: Callable[[int], Future[float]]) -> None:
        assert_type(function(1), Future[float])

    def as_concurrent(function: Callable[[int, int], concurrent.futures.Future[int]]) -> None:
        assert_type(function(1, 2), concurrent.futures.Future[int])

    as_callable(crunch)
    as_concurrent(add)


def pool_option() -> None:
    with Pool(2) as pool:

        @parallel(pool=pool)
        def on_pool(x: int) -> str:
            return str(x)

        typed: ParallelFunction[[int], str] = on_pool
        print(typed)
        assert_type(on_pool(1), Future[str])
        assert_type(on_pool.map([1, 2]), MapIterator[str])


def decorating_lambdas_and_closures() -> None:
    offset = 3

    def shifted(x: int) -> int:
        return x + offset

    assert_type(parallel(shifted)(1), Future[int])
    assert_type(parallel(workers=2)(shifted).map([1]), MapIterator[int])


async def awaiting_a_call() -> None:
    assert_type(await crunch(3), float)
    assert_type(await add.submit(1, 2), int)
    assert_type(await nothing(), None)
    gathered = await asyncio.gather(crunch(1), add(1, 2), fetch("u"))
    assert_type(gathered, tuple[float, int, bytes])
    done = await asyncio.wait_for(crunch(2), timeout=5)
    assert_type(done, float)


def rejected_calls() -> None:
    crunch("3")  # type: ignore[arg-type]
    crunch(3, 4)  # type: ignore[call-arg]
    crunch()  # type: ignore[call-arg]
    crunch(y=3)  # type: ignore[call-arg]
    add(1)  # type: ignore[call-arg]
    add(1, "2")  # type: ignore[arg-type]
    scaled(2, 0.5)  # type: ignore[call-arg]
    scaled(2, factor="big")  # type: ignore[arg-type]
    crunch.submit("3")  # type: ignore[arg-type]
    crunch.submit(3, extra=1)  # type: ignore[call-arg]
    nothing(1)  # type: ignore[call-arg]
    crunch.__wrapped__("3")  # type: ignore[arg-type]


def rejected_results() -> None:
    text: str = crunch(3).result()  # type: ignore[assignment]
    count: bytes = add(1, 2).result()  # type: ignore[assignment]
    future: Future[str] = crunch(3)  # type: ignore[assignment]
    print(text, count, future)


def rejected_maps(ints: list[int], words: list[str], pairs: list[tuple[int, str]]) -> None:
    # Only the overload whose call protocol matches the function's arity survives the self-type
    # check, so mypy reports a wrong argument like an error of that one signature; a wrong number
    # of iterables (or a bad keyword) leaves that overload and the 6-or-more one: [call-overload].
    crunch.map(words)  # type: ignore[arg-type]
    crunch.map(str(n) for n in ints)  # type: ignore[misc]
    crunch.map(ints, ints)  # type: ignore[call-overload]
    add.map(ints)  # type: ignore[call-overload]
    add.map(ints, words)  # type: ignore[arg-type]
    add.map(ints, ints, ints)  # type: ignore[call-overload]
    label.map(words, ints, ints)  # type: ignore[arg-type]
    label.map(words, ints)  # type: ignore[call-overload]
    crunch.map(ints, chunksize="big")  # type: ignore[call-overload]
    crunch.starmap(ints)  # type: ignore[arg-type]
    six.starmap([(1, 2, 3, 4, 5)])  # type: ignore[list-item]
    add.starmap(pairs)  # type: ignore[arg-type]
    add.starmap([(n, n, n) for n in ints])  # type: ignore[misc]
    nothing.map(ints)  # type: ignore[call-overload]
    strings: Iterator[str] = crunch.map(ints)  # type: ignore[assignment]
    print(strings)


def rejected_decorations() -> None:
    parallel(3)  # type: ignore[call-overload]
    parallel(workers="4")  # type: ignore[call-overload]
    parallel(pool="default")  # type: ignore[call-overload]
    parallel(crunch.__wrapped__, workers=2)  # type: ignore[call-overload]


async def rejected_awaits() -> None:
    text: str = await crunch(3)  # type: ignore[assignment]
    print(text)
