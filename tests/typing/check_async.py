"""Typing of decorated ``async def`` functions: calls give ``Future[R]`` for ``-> R``."""

from __future__ import annotations

from collections.abc import Coroutine
from typing import Any

from typing_extensions import assert_type

from parallelize import Future, MapIterator, in_process, parallel


@parallel
async def fetch(url: str) -> bytes:
    return url.encode()


@parallel(workers=2)
async def scaled(x: int, factor: float = 2.0) -> float:
    return x * factor


@in_process
async def load(path: str) -> int:
    return len(path)


@parallel
def plain(x: int) -> int:
    return x


async def calls() -> None:
    assert_type(fetch("u"), Future[bytes])
    assert_type(fetch.submit("u"), Future[bytes])
    assert_type(scaled(1, factor=0.5), Future[float])
    assert_type(fetch.map(["a", "b"]), MapIterator[bytes])
    assert_type(scaled.starmap([(1, 2.0)]), MapIterator[float])
    assert_type(await fetch("u"), bytes)
    # @in_process keeps the signature: the call is still awaitable, and runs in a worker
    assert_type(await load("p"), int)
    assert_type(plain(1), Future[int])
    fetch(3)  # type: ignore[call-overload]
    scaled("x")  # type: ignore[call-overload]


def the_coroutine_type_stays_visible() -> None:
    coroutine: Coroutine[Any, Any, int] = load("p")
    coroutine.close()
    load(3).close()  # type: ignore[arg-type]
