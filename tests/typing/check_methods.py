"""What decorated methods promise to a type checker (mypy --strict and basedpyright; never executed).

``obj.method`` binds like a plain method: the bound form drops ``self`` (or ``cls``) and keeps
the rest, for calls, ``submit``, ``map`` and ``starmap``; on the class, an instance method is the
unbound ``ParallelFunction`` that takes the object first.
"""

from __future__ import annotations

from typing_extensions import assert_type

from parallelize import Future, InProcessFunction, MapIterator, ParallelFunction, in_process, parallel


class Scorer:
    unit = 10

    def __init__(self, weight: float) -> None:
        self.weight = weight

    @parallel
    def score(self, x: int) -> float:
        return self.weight * x

    @parallel(timeout=5)
    def pair(self, x: int, label: str) -> str:
        return f"{label}{x}"

    @in_process
    def score_now(self, x: int) -> float:
        return self.weight * x

    @parallel
    @staticmethod
    def double(x: int) -> int:
        return 2 * x

    @staticmethod
    @parallel
    def triple(x: int) -> int:
        return 3 * x

    @parallel
    @classmethod
    def scaled(cls, x: int) -> int:
        return cls.unit * x

    @in_process
    @staticmethod
    def double_now(x: int) -> int:
        return 2 * x

    @in_process
    @classmethod
    def scaled_now(cls, x: int) -> int:
        return cls.unit * x


def instance_methods(obj: Scorer, xs: list[int]) -> None:
    assert_type(obj.score(2), Future[float])
    assert_type(obj.score.submit(2), Future[float])
    assert_type(obj.score(x=2), Future[float])
    assert_type(obj.score.map(xs), MapIterator[float])
    assert_type(obj.score.starmap([(1,), (2,)]), MapIterator[float])
    assert_type(obj.pair(1, "a"), Future[str])
    assert_type(obj.pair.map(xs, ["a", "b"]), MapIterator[str])
    assert_type(obj.pair.starmap([(1, "a")], chunksize=4), MapIterator[str])
    for value in obj.score.map(xs):
        assert_type(value, float)


def unbound_on_the_class(obj: Scorer, xs: list[int]) -> None:
    unbound: ParallelFunction[[Scorer, int], float] = Scorer.score
    assert_type(Scorer.score(obj, 2), Future[float])
    assert_type(Scorer.score.map([obj, obj], xs), MapIterator[float])
    print(unbound)


def in_process_methods(obj: Scorer) -> None:
    assert_type(obj.score_now(2), float)
    assert_type(Scorer.score_now(obj, 2), float)
    unbound: InProcessFunction[[Scorer, int], float] = Scorer.score_now
    print(unbound)


def static_and_class_methods(obj: Scorer, xs: list[int]) -> None:
    assert_type(Scorer.double(2), Future[int])
    assert_type(obj.double(2), Future[int])
    assert_type(obj.double.map(xs), MapIterator[int])
    assert_type(Scorer.triple(2), Future[int])
    assert_type(obj.triple.map(xs), MapIterator[int])
    assert_type(Scorer.scaled(2), Future[int])
    assert_type(obj.scaled(2), Future[int])
    assert_type(Scorer.scaled.map(xs), MapIterator[int])
    assert_type(Scorer.scaled.starmap([(1,)]), MapIterator[int])
    assert_type(Scorer.double_now(2), int)
    assert_type(obj.scaled_now(2), int)
    assert_type(Scorer.scaled_now(2), int)


def rejected(obj: Scorer, xs: list[int], words: list[str]) -> None:
    obj.score("2")  # type: ignore[arg-type]
    obj.score(obj, 2)  # type: ignore[arg-type, call-arg]
    obj.score.map(words)  # type: ignore[arg-type]
    obj.pair.map(xs, xs)  # type: ignore[arg-type]
    text: str = obj.score_now(2)  # type: ignore[assignment]
    Scorer.scaled("2")  # type: ignore[arg-type]
    Scorer.score(2)  # type: ignore[arg-type, call-arg]
    print(text)
