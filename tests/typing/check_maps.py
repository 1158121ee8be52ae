"""The map options of issue 12 as a type checker sees them (mypy --strict and basedpyright).

``ordered=False`` keeps the element type; ``return_exceptions=True`` (or any ``bool`` not known
to be False) widens it to ``R | BaseException``; a map is an ``AsyncIterator`` of the same type.
Usage sits inside functions so that importing this module would start nothing.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

from typing_extensions import assert_type

from parallelize import MapIterator, Pool, parallel


@parallel
def crunch(x: int) -> float:
    return x / 2


@parallel
def label(name: str, n: int) -> str:
    return name * n


@parallel
async def fetch(url: str) -> bytes:
    return url.encode()


@parallel
def six(a: int, b: int, c: int, d: int, e: int, f: str) -> str:
    return f * (a + b + c + d + e)


class Scorer:
    @parallel
    def score(self, x: int) -> float:
        return float(x)


def square(x: int) -> int:
    return x * x


def unordered(xs: list[int], words: list[str]) -> None:
    assert_type(crunch.map(xs, ordered=False), MapIterator[float])
    assert_type(label.map(words, xs, ordered=False, chunksize=4), MapIterator[str])
    assert_type(label.starmap([("a", 1)], ordered=False), MapIterator[str])
    assert_type(fetch.map(words, ordered=False), MapIterator[bytes])
    assert_type(Scorer().score.map(xs, ordered=False), MapIterator[float])
    assert_type(Pool().map(square, xs, ordered=False), MapIterator[int])
    assert_type(crunch.map(xs, return_exceptions=False), MapIterator[float])


def errors_as_values(xs: list[int], words: list[str], flag: bool) -> None:
    assert_type(crunch.map(xs, return_exceptions=True), MapIterator[float | BaseException])
    assert_type(crunch.map(xs, return_exceptions=flag), MapIterator[float | BaseException])
    assert_type(label.map(words, xs, ordered=False, return_exceptions=True), MapIterator[str | BaseException])
    assert_type(label.starmap([("a", 1)], return_exceptions=True), MapIterator[str | BaseException])
    assert_type(fetch.map(words, return_exceptions=True), MapIterator[bytes | BaseException])
    assert_type(Scorer().score.map(xs, return_exceptions=True), MapIterator[float | BaseException])
    assert_type(Scorer().score.starmap([(1,)], return_exceptions=True), MapIterator[float | BaseException])
    assert_type(six.map(xs, xs, xs, xs, xs, words, return_exceptions=True), MapIterator[str | BaseException])
    assert_type(Pool().map(square, xs, return_exceptions=True), MapIterator[int | BaseException])
    assert_type(Pool().map(crunch, xs, return_exceptions=True), MapIterator[float | BaseException])
    for outcome in crunch.map(xs, return_exceptions=True):
        if isinstance(outcome, BaseException):
            assert_type(outcome, BaseException)
        else:
            value: float = outcome  # pyright spells the narrowed float "float | int"
            print(value)


async def async_iteration(xs: list[int]) -> None:
    results = crunch.map(xs)
    iterator: Iterator[float] = results
    async_iterator: AsyncIterator[float] = results
    assert_type(aiter(results), MapIterator[float])
    async for value in crunch.map(xs, ordered=False):
        assert_type(value, float)
    async for outcome in Pool().map(square, xs, return_exceptions=True):
        assert_type(outcome, int | BaseException)
    assert_type(await results.__anext__(), float)
    print(iterator, async_iterator)


def rejected(xs: list[int]) -> None:
    crunch.map(xs, ordered="no")  # type: ignore[call-overload]
    crunch.map(xs, return_exceptions=None)  # type: ignore[call-overload]
    Pool().map(square, xs, ordered=1)  # type: ignore[call-overload]
    strict: MapIterator[float] = crunch.map(xs, return_exceptions=True)  # type: ignore[assignment]
    print(strict)
