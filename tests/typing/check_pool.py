"""What ``Pool`` promises to a type checker (checked by mypy --strict, never executed).

Usage sits inside functions so that importing this module would start nothing.
"""

from __future__ import annotations

from collections.abc import Iterator

from typing_extensions import assert_type

from parallelize import Future, MapIterator, Pool, PoolState, in_process, parallel


def square(x: int) -> int:
    return x * x


def power(base: int, exponent: int = 2) -> float:
    return float(base**exponent)


def greet(name: str, *, punctuation: str = "!") -> str:
    return name + punctuation


def setup(level: int, name: str) -> None:
    print(level, name)


@parallel
def decorated(x: int) -> int:
    return x + 1


@in_process
def inproc(x: int) -> str:
    return str(x)


def constructing() -> None:
    assert_type(Pool(), Pool)
    assert_type(Pool(2), Pool)
    assert_type(Pool(workers=2, start_method="spawn"), Pool)
    assert_type(Pool(1, initializer=setup, initargs=(1, "a")), Pool)
    assert_type(Pool(1, initializer=print, initargs=["x"]), Pool)


def lifecycle() -> None:
    pool = Pool(2)
    assert_type(pool.workers, int)
    assert_type(pool.state, PoolState)
    assert_type(pool.worker_pids(), list[int])
    if pool.state is PoolState.NEW:
        pool.shutdown()
    pool.shutdown(wait=False)
    pool.shutdown(True, cancel_pending=True)
    states: list[PoolState] = [PoolState.NEW, PoolState.RUNNING, PoolState.CLOSING, PoolState.CLOSED]
    value: str = states[0].value  # basedpyright narrows it further, to the four literals
    print(value)


def as_context_manager() -> None:
    with Pool(2) as pool:
        assert_type(pool, Pool)


def submitting() -> None:
    with Pool(2) as pool:
        assert_type(pool.submit(square, 3), Future[int])
        assert_type(pool.submit(square, x=3), Future[int])
        assert_type(pool.submit(power, 2), Future[float])
        assert_type(pool.submit(power, 2, exponent=3), Future[float])
        assert_type(pool.submit(greet, "a", punctuation="?"), Future[str])
        assert_type(pool.submit(lambda: b"x"), Future[bytes])
        assert_type(pool.submit(len, "abc"), Future[int])
        assert_type(pool.submit(square, 3).result(timeout=5), int)
        # The pool runs a decorated function's own body, so the result is the value, not a future.
        assert_type(pool.submit(decorated, 3), Future[int])
        assert_type(pool.submit(inproc, 3), Future[str])


async def awaiting_a_pool_future() -> None:
    with Pool(2) as pool:
        assert_type(await pool.submit(square, 3), int)


def mapping() -> None:
    with Pool(2) as pool:
        assert_type(pool.map(square, [1, 2]), MapIterator[int])
        assert_type(pool.map(square, range(3), chunksize=2), MapIterator[int])
        assert_type(pool.map(power, [1, 2], [3, 4]), MapIterator[float])
        assert_type(pool.map(str.upper, ["a"]), MapIterator[str])
        assert_type(pool.map(decorated, [1, 2]), MapIterator[int])
        for value in pool.map(square, [1]):
            assert_type(value, int)


def rejected() -> None:
    with Pool(2) as pool:
        pool.submit(square, "3")  # type: ignore[call-overload]
        pool.submit(square)  # type: ignore[call-overload]
        pool.submit(square, 3, 4)  # type: ignore[call-overload]
        pool.submit(square, y=3)  # type: ignore[call-overload]
        pool.submit(greet, "a", "?")  # type: ignore[call-overload]
        pool.submit(decorated, "3")  # type: ignore[call-overload]
        pool.submit(3)  # type: ignore[call-overload]
        pool.map(square, [1], chunksize="2")  # type: ignore[call-overload]
        pool.map(square, 3)  # type: ignore[call-overload]
        pool.shutdown(True, True)  # type: ignore[call-arg]
        text: str = pool.submit(square, 3).result()  # type: ignore[assignment]
        future: Future[str] = pool.submit(square, 3)  # type: ignore[call-overload]
        values: Iterator[str] = pool.map(square, [1])  # type: ignore[arg-type]
        workers: str = pool.workers  # type: ignore[assignment]
        print(text, future, values, workers)
    Pool("2")  # type: ignore[arg-type]
    Pool(2, "spawn")  # type: ignore[call-arg]
    Pool(2, start_method=1)  # type: ignore[arg-type]
    Pool(2, initializer=3)  # type: ignore[arg-type]
    Pool(2, initargs=3)  # type: ignore[arg-type]
