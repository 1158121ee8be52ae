"""Decorated methods: ``obj.method(x)`` runs ``Class.method(obj, x)`` in a worker.

Instance, static and class methods under both decorators, in each decorator order that works, on
the default pool (the path users take) and on an explicit one, under each start method; the
object travels pickled with each call, so what the worker changes stays there. The classes live in
``tests/method_tasks.py`` (importable, so the functions travel by reference); a script run in a
subprocess covers classes defined in ``__main__`` and a class defined in a function, sent by value.
"""

from __future__ import annotations

import inspect
import os
from pathlib import Path

import pytest

from parallelize import Pool, SerializationError, parallel

from . import lifecycle_tasks
from .method_tasks import BigScorer, Locked, Misordered, Scorer

RESULT_TIMEOUT = 30


def test_instance_method_on_the_default_pool(default_start_method: str) -> None:
    obj = Scorer(2.0)
    assert obj.score(3).result(timeout=RESULT_TIMEOUT) == 6.0
    assert obj.score.submit(x=4).result(timeout=RESULT_TIMEOUT) == 8.0
    assert list(obj.score.map(range(5))) == [0.0, 2.0, 4.0, 6.0, 8.0]
    assert list(obj.score.starmap([(1,), (2,)])) == [2.0, 4.0]
    assert list(obj.pair.map([1, 2, 3], [10, 20])) == [22.0, 44.0]  # stops at the shortest
    assert list(obj.pair.starmap([(1, 1), (2, 2)], chunksize=1)) == [4.0, 8.0]
    assert obj.where().result(timeout=RESULT_TIMEOUT) != os.getpid()
    # On the class it is the unbound function: the object goes first, as for a plain method.
    assert Scorer.score(obj, 5).result(timeout=RESULT_TIMEOUT) == 10.0
    assert list(Scorer.score.map([obj, Scorer(3.0)], [1, 1])) == [2.0, 3.0]
    # Each call worked on a pickled copy: its changes never came back.
    assert obj.calls == 0


def test_instance_method_on_an_explicit_pool(pool: Pool) -> None:
    obj = Scorer(0.5)
    assert pool.submit(obj.score, 4).result(timeout=RESULT_TIMEOUT) == 2.0
    assert list(pool.map(obj.score, [2, 4])) == [1.0, 2.0]

    class Local:  # defined in a function: the method travels by value
        def __init__(self, offset: int) -> None:
            self.offset = offset

        @parallel(pool=pool)
        def shift(self, x: int) -> int:
            return x + self.offset

    local = Local(100)
    assert local.shift(1).result(timeout=RESULT_TIMEOUT) == 101
    assert list(local.shift.map(range(3))) == [100, 101, 102]
    assert local.shift._function_handle().key[0] == "val"  # type: ignore[attr-defined]


def test_static_and_class_methods(default_start_method: str) -> None:
    obj = Scorer(1.0)
    # @parallel above @staticmethod, and below it
    assert Scorer.double(4).result(timeout=RESULT_TIMEOUT) == 8
    assert obj.double(4).result(timeout=RESULT_TIMEOUT) == 8
    assert list(obj.double.map([1, 2])) == [2, 4]
    assert Scorer.triple(2).result(timeout=RESULT_TIMEOUT) == 6
    assert list(obj.triple.map([1, 2])) == [3, 6]
    # @parallel above @classmethod: the class it is reached through, on the class or an instance
    assert Scorer.scaled(2).result(timeout=RESULT_TIMEOUT) == 20
    assert BigScorer.scaled(2).result(timeout=RESULT_TIMEOUT) == 200
    assert BigScorer(1.0).scaled(3).result(timeout=RESULT_TIMEOUT) == 300
    assert list(BigScorer.scaled.map([1, 2])) == [100, 200]
    assert list(Scorer.scaled.starmap([(1,)])) == [10]


def test_in_process_methods_return_the_value(default_start_method: str) -> None:
    obj = Scorer(3.0)
    assert obj.score_now(2) == 6.0
    assert Scorer.score_now(obj, 3) == 9.0
    assert obj.double_now(5) == 10
    assert Scorer.double_now(6) == 12
    assert BigScorer.scaled_now(2) == 200
    assert obj.scaled_now(1) == 10


@pytest.mark.parametrize(
    ("function", "qualname"),
    [
        (Scorer.score, "Scorer.score"),
        (Scorer.__dict__["double"], "Scorer.double"),
        (Scorer.triple, "Scorer.triple"),
        (Scorer.__dict__["scaled"], "Scorer.scaled"),
        (Scorer.score_now, "Scorer.score_now"),
    ],
)
def test_methods_travel_by_reference(function: object, qualname: str) -> None:
    # A worker imports them by name: nothing of the function is pickled with the calls.
    handle = function._function_handle()  # type: ignore[attr-defined]
    assert handle.key == ("ref", "tests.method_tasks", qualname)
    assert handle.definition is None


def test_an_unpicklable_object_fails_at_the_call_naming_self() -> None:
    obj = Locked()
    with pytest.raises(SerializationError, match=r"argument 'self' \(tests\.method_tasks\.Locked\)"):
        obj.work(1)
    with pytest.raises(SerializationError, match=r"argument 'self' \(tests\.method_tasks\.Locked\)"):
        list(obj.work.map([1, 2]))


def test_classmethod_above_the_decorator_is_refused() -> None:
    with pytest.raises(TypeError, match=r"put the decorator above @classmethod") as raised:
        Misordered.make(1)
    assert "tests.method_tasks.Misordered.make" in str(raised.value)
    assert "@parallel\n    @classmethod" in str(raised.value)


def test_the_bound_form_looks_like_a_bound_method() -> None:
    obj = Scorer(2.0)
    bound = obj.score
    assert bound.__self__ is obj
    assert bound.__func__ is Scorer.score
    assert bound.__name__ == "score"
    assert bound.__wrapped__(3) == 6.0  # the original, run here and now
    assert str(inspect.signature(bound)) == "(x: 'int') -> 'float'"
    assert bound == obj.score
    assert hash(bound) == hash(obj.score)
    assert bound != Scorer(2.0).score
    assert repr(bound).startswith("<bound <ParallelFunction tests.method_tasks.Scorer.score> of <")
    with pytest.raises(TypeError, match="at least one iterable"):
        bound.map()


# Classes of the main script: one at top level (workers have it: spawn and forkserver run the
# script again), one under the guard (they do not: it travels by value).
MAIN_SCRIPT = """
import os

from parallelize import in_process, parallel


class Counter:
    def __init__(self, start):
        self.start = start

    @parallel
    def add(self, x):
        return self.start + x

    @parallel
    @classmethod
    def name(cls):
        return cls.__name__

    @in_process
    def pid(self):
        return os.getpid()


if __name__ == "__main__":
    class Guarded:
        factor = 3

        @parallel
        @staticmethod
        def times(x):
            return 2 * x

        @parallel
        def scale(self, x):
            return self.factor * x

    counter = Counter(10)
    print(counter.add(1).result(timeout=20), list(counter.add.map([1, 2])))
    print(Counter.name().result(timeout=20), counter.pid() != os.getpid())
    print(list(Guarded().scale.map([1, 2])), Guarded.times(4).result(timeout=20))
"""


def test_classes_defined_in_main(start_method: str, tmp_path: Path) -> None:
    script = tmp_path / "methods_main.py"
    script.write_text(MAIN_SCRIPT)
    done = lifecycle_tasks.run_script([str(script)], start_method, tmp_path, timeout=RESULT_TIMEOUT)
    assert done.returncode == 0, f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    assert done.stderr == ""
    assert done.stdout.splitlines() == ["11 [11, 12]", "Counter True", "[3, 6] 8"]
