"""What ``progress=`` and the live counts promise to a type checker (checked, never executed)."""

from __future__ import annotations

from typing_extensions import assert_type

import parallelize
from parallelize import MapIterator, Pool, PoolStats, parallel


@parallel
def square(x: int) -> int:
    return x * x


@parallel
def add(a: int, b: int) -> int:
    return a + b


class Scorer:
    @parallel
    def score(self, x: int) -> float:
        return x / 2


class Bar:
    """A bar of one's own: what a tqdm offers (update and close)."""

    total: int | None = None

    def update(self, n: int = 1) -> None:
        print(n)

    def close(self) -> None:
        print("closed")


def on_progress(done: int, total: int | None) -> None:
    print(done, total)


def only_done(done: int) -> None:
    print(done)


def progress_forms(pool: Pool) -> None:
    assert_type(square.map([1, 2], progress=True), MapIterator[int])
    assert_type(square.map([1, 2], progress=None), MapIterator[int])
    assert_type(square.map([1], progress=Bar()), MapIterator[int])
    assert_type(square.map([1], progress=on_progress), MapIterator[int])
    assert_type(square.map([1], progress=lambda done, total: None), MapIterator[int])
    assert_type(add.map([1], [2], progress=True), MapIterator[int])
    assert_type(add.starmap([(1, 2)], progress=on_progress), MapIterator[int])
    assert_type(Scorer().score.map([1, 2], progress=True), MapIterator[float])
    assert_type(pool.map(square, [1], progress=Bar()), MapIterator[int])
    assert_type(pool.map(len, ["a"], progress=True), MapIterator[int])


def progress_mistakes(pool: Pool) -> None:
    square.map([1], progress="yes")  # type: ignore[call-overload]
    square.map([1], progress=only_done)  # type: ignore[arg-type]
    add.starmap([(1, 2)], progress=3)  # type: ignore[call-overload]
    pool.map(square, [1], progress="yes")  # type: ignore[call-overload]


def live_counts(pool: Pool) -> None:
    stats = pool.stats()
    assert_type(stats, PoolStats)
    assert_type(parallelize.stats(), PoolStats)
    assert_type(stats.completed, int)
    assert_type(stats.backend, str)
    assert_type(stats.since, float | None)
    stats.completed = 3  # type: ignore[misc]
