"""``Pool`` where a ``concurrent.futures.Executor`` is expected (checked by mypy --strict and
basedpyright, never executed). Usage sits inside functions so that importing this starts nothing."""

from __future__ import annotations

import asyncio
import concurrent.futures
import multiprocessing
from collections.abc import Iterator

from typing_extensions import assert_type

from parallelize import Future, MapIterator, Pool


def square(x: int) -> int:
    return x * x


def takes_an_executor(executor: concurrent.futures.Executor) -> list[int]:
    return list(executor.map(square, [1, 2]))


def as_an_executor() -> None:
    pool = Pool(max_workers=2, mp_context=multiprocessing.get_context("spawn"), max_tasks_per_child=10)
    assert_type(pool, Pool)
    print(takes_an_executor(pool))
    through_the_executor_interface(pool)


def through_the_executor_interface(executor: concurrent.futures.Executor) -> None:
    assert_type(executor.submit(square, 3), concurrent.futures.Future[int])
    assert_type(executor.map(square, [1], timeout=5, chunksize=1), Iterator[int])
    executor.shutdown(wait=True, cancel_futures=True)
    with executor as entered:
        print(entered)


def executor_arguments_on_a_pool() -> None:
    with Pool(2) as pool:
        assert_type(pool.submit(square, 3), Future[int])
        assert_type(pool.map(square, [1], timeout=5.0, chunksize=1), MapIterator[int])
        assert_type(pool.map(square, [1], item_timeout=1.0), MapIterator[int])
        pool.shutdown(cancel_futures=True)
        pool.shutdown(wait=False, cancel_pending=True)


async def run_in_executor() -> None:
    with Pool(2) as pool:
        assert_type(await asyncio.get_running_loop().run_in_executor(pool, square, 3), int)


def rejected() -> None:
    with Pool(2) as pool:
        pool.map(square, [1], timeout="5")  # type: ignore[call-overload]
        pool.map(square, [1], item_timeout="1")  # type: ignore[call-overload]
        pool.shutdown(cancel_futures=1.5)  # type: ignore[arg-type]
    Pool(max_workers="2")  # type: ignore[arg-type]
    Pool(max_tasks_per_child="2")  # type: ignore[arg-type]
    Pool(mp_context="spawn")  # type: ignore[arg-type]
