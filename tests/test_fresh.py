"""By-value functions run as they are at the call; nothing keeps a finished task's callable alive;
restart() replaces workers; a random generator's method warns (issue 8, items 3, 6 and 7).

The notebook side of item 3 runs through a real kernel in test_notebook.py.
"""

from __future__ import annotations

import functools
import gc
import os
import random
import subprocess
import sys
import warnings
import weakref
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import parallelize
from parallelize import Pool, PoolClosed, _functions, parallel
from parallelize._channel import DEFINITIONS

from . import lifecycle_tasks, workers
from .conftest import wait_until

RESULT_TIMEOUT = 30


# -- item 3: a by-value function is as fresh as a local call ----------------------------------------


def test_closure_cells_and_captured_objects_are_read_at_each_call(pool: Pool) -> None:
    factor = 2
    seen: list[int] = []

    def scale(x: int) -> tuple[int, int]:
        return x * factor, sum(seen)

    assert pool.submit(scale, 10).result(timeout=RESULT_TIMEOUT) == (20, 0)
    factor = 3  # a rebound cell
    seen.append(5)  # an object mutated in place: no fingerprint of names or ids would notice
    assert pool.submit(scale, 10).result(timeout=RESULT_TIMEOUT) == (30, 5)
    # on every worker, not only the one that got the new definition first
    assert {pool.submit(scale, 1).result(timeout=RESULT_TIMEOUT) for _ in range(8)} == {(3, 5)}
    # A map is lazy, like builtins.map: it reads the function when iteration starts, and then
    # takes no other snapshot, so every item of it runs the same function.
    scaled = pool.map(scale, range(20), chunksize=1)
    factor = 4
    assert next(scaled) == (0, 5)
    factor = 100
    assert list(scaled) == [(4 * x, 5) for x in range(1, 20)]
    assert pool.submit(scale, 1).result(timeout=RESULT_TIMEOUT) == (100, 5)


GLOBAL_K = 1  # read by a closure below: a module global that travels with it, by value


def test_immutable_state_is_pickled_again_only_when_it_changes(
    pool1: Pool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The shortcut in _frozen.Frozen: a function whose pickled state holds only immutable
    values and things that travel by name is not pickled again while each is the same object;
    every kind of change still shows at the next call. A spy around the real pickler counts."""
    pickles: list[object] = []
    real = _functions.dumps_by_value

    def counting(function: object) -> bytes:
        pickles.append(function)
        return real(function)

    monkeypatch.setattr(_functions, "dumps_by_value", counting)
    k = 2

    def times(x: int, plus: int = 0) -> int:
        return x * k * GLOBAL_K + len("ab") + plus

    def negated(x: int, plus: int = 0) -> int:
        return -x * k

    def call() -> int:
        return pool1.submit(times, 3).result(timeout=RESULT_TIMEOUT)

    assert [call() for _ in range(5)] == [8] * 5
    assert len(pickles) == 1  # the same objects: the same bytes, not pickled again
    k = 5  # a rebound closure cell
    assert call() == 17
    monkeypatch.setattr(sys.modules[__name__], "GLOBAL_K", 10)  # a rebound global
    assert GLOBAL_K == 10
    assert call() == 152
    times.__defaults__ = (1000,)  # new defaults
    assert call() == 1152
    monkeypatch.setitem(globals(), "len", lambda _: 100)  # a name that was a builtin, now a global
    assert call() == 1250
    assert call() == 1250  # a by-value function among the globals: pickled at every call
    monkeypatch.delitem(globals(), "len")
    times.__code__ = negated.__code__  # new code
    assert call() == -15
    assert len(pickles) == 7


def test_defaults_and_a_decorated_closure_on_the_default_pool(default_start_method: str) -> None:
    offset = {"value": 1}

    @parallel
    def shifted(x: int, extra: int = 0) -> int:
        return x + offset["value"] + extra

    assert shifted(1).result(timeout=RESULT_TIMEOUT) == 2
    offset["value"] = 10
    shifted.__wrapped__.__defaults__ = (100,)  # type: ignore[attr-defined]
    assert shifted(1).result(timeout=RESULT_TIMEOUT) == 111
    assert list(shifted.map([0, 1])) == [110, 111]


MAIN_SCRIPT = """
import os
from parallelize import Pool, parallel

if __name__ == "__main__":
    K = 1

    @parallel
    def times_k(x):
        return x * K

    print(times_k(10).result(timeout=30))
    K = 2
    print(times_k(10).result(timeout=30))
    print(sorted({times_k(1).result(timeout=30) for _ in range(6)}))

    @parallel
    def times_k(x):  # redefined, as a notebook cell run again with an edit
        return -x * K

    print(times_k(10).result(timeout=30))
    numbers = []
    appended = lambda x: x + sum(numbers)
    with Pool(2) as pool:
        print(pool.submit(appended, 1).result(timeout=30))
        numbers.append(41)
        print(pool.submit(appended, 1).result(timeout=30))
"""


def test_main_functions_under_the_guard_are_fresh(start_method: str, tmp_path: Path) -> None:
    script = tmp_path / "fresh_main.py"
    script.write_text(MAIN_SCRIPT)
    done = lifecycle_tasks.run_script([str(script)], start_method, tmp_path, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    assert done.stdout.split("\n") == ["10", "20", "[2]", "-20", "1", "42", ""]


def _copies_in_worker(qualname: str) -> int:
    """How many function objects named ``qualname`` are alive in this worker."""
    import gc
    import types

    gc.collect()
    return sum(
        1 for o in gc.get_objects() if isinstance(o, types.FunctionType) and o.__qualname__ == qualname
    )


def test_redefinitions_do_not_pile_up_in_a_worker(pool1: Pool) -> None:
    def make(n: int) -> Callable[[], int]:
        def redefined() -> int:
            return n

        return redefined

    rounds = DEFINITIONS * 3
    assert [pool1.submit(make(i)).result(timeout=RESULT_TIMEOUT) for i in range(rounds)] == list(
        range(rounds)
    )
    qualname = make(0).__qualname__
    kept = pool1.submit(_copies_in_worker, qualname).result(timeout=RESULT_TIMEOUT)
    assert 0 < kept <= DEFINITIONS


# -- item 7: nothing keeps a finished task's callable, arguments or result alive --------------------


class Payload:
    """Something weakly referenceable to send as an argument and get back as a result."""

    def __init__(self, value: int) -> None:
        self.value = value

    def __reduce__(self) -> tuple[Any, ...]:
        return (Payload, (self.value,))

    def echo(self, other: Payload) -> Payload:
        return Payload(self.value + other.value)


def _combine(a: Payload, b: Payload) -> Payload:
    return Payload(a.value + b.value)


def _adder(base: Payload) -> Callable[[Payload], Payload]:
    def add(other: Payload) -> Payload:
        return Payload(base.value + other.value)

    return add


def _backend(name: str, start_method: str) -> Iterator[Any]:
    if name == "pool":
        with Pool(2, start_method=start_method) as pool:
            yield pool
    else:
        parallelize.configure(backend=None if name == "default" else name, start_method=start_method)
        yield None


@pytest.fixture(params=["default", "pool", "thread", "sync"])
def submitter(request: pytest.FixtureRequest, start_method: str) -> Iterator[Callable[..., Any]]:
    """``submit(fn, *args)``: through an explicit pool, or ``@parallel``'s path on a default backend."""
    for pool in _backend(str(request.param), start_method):
        if pool is not None:
            yield pool.submit
        else:
            yield lambda fn, *args: parallel(fn)(*args)


@pytest.mark.parametrize("kind", ["partial", "bound method", "closure"])
def test_a_settled_task_keeps_nothing_alive(submitter: Callable[..., Any], kind: str) -> None:
    owner, argument = Payload(1), Payload(2)
    if kind == "partial":
        function: Callable[..., Any] = functools.partial(_combine, owner)
    elif kind == "bound method":
        function = owner.echo
    else:
        function = _adder(owner)

    future = submitter(function, argument)
    result = future.result(timeout=RESULT_TIMEOUT)
    assert result.value == 3
    refs = {
        "callable": weakref.ref(function),
        "its state": weakref.ref(owner),
        "argument": weakref.ref(argument),
        "result": weakref.ref(result),
    }
    del function, owner, argument, result, future
    gc.collect()
    alive = [what for what, ref in refs.items() if ref() is not None]
    assert alive == []


def test_a_new_function_in_a_dead_ones_place_is_not_taken_for_it(pool: Pool) -> None:
    # handle_for remembers the last function it saw; a lambda made in each turn of a loop often
    # lands at the address of the last turn's, freed meanwhile, and must still run as itself.
    for i in range(20):
        assert pool.submit(lambda x, i=i: x + i, 100).result(timeout=RESULT_TIMEOUT) == 100 + i
    # and two functions taking turns each run as themselves
    results = [pool.submit(f, 3).result(timeout=RESULT_TIMEOUT) for f in [workers.square, abs] * 3]
    assert results == [9, 3] * 3


def test_a_loop_of_partials_leaves_nothing_behind_even_after_shutdown(start_method: str) -> None:
    pool = Pool(2, start_method=start_method)
    refs = []
    for i in range(50):
        function = functools.partial(_combine, Payload(i))
        refs.append(weakref.ref(function))
        assert pool.submit(function, Payload(1)).result(timeout=RESULT_TIMEOUT).value == i + 1
    del function
    gc.collect()
    assert [r for r in refs if r() is not None] == []
    pool.shutdown()
    mapped = functools.partial(_combine, Payload(5))
    ref = weakref.ref(mapped)
    with Pool(1, start_method=start_method) as other:
        assert [p.value for p in other.map(mapped, [Payload(1), Payload(2)])] == [6, 7]
    del mapped
    gc.collect()
    assert ref() is None


def test_a_map_lets_go_of_results_it_handed_out(pool: Pool) -> None:
    results = pool.map(Payload, range(6), chunksize=3)
    first = next(results)
    refs = [weakref.ref(first)]
    del first
    rest = list(results)  # the second chunk is the map's last
    refs += [weakref.ref(p) for p in rest]
    assert [p.value for p in rest] == [1, 2, 3, 4, 5]
    del rest
    gc.collect()
    assert [r for r in refs if r() is not None] == []  # while the map object is still alive
    assert list(results) == []


# -- item 6: a random generator's method travels with a copy of its state ---------------------------


def test_random_generator_methods_warn_once_naming_the_fix(pool1: Pool) -> None:
    with pytest.warns(UserWarning, match=r"random generator .*Draw in the worker.*seed"):
        parallel(random.random, pool=pool1)().result(timeout=RESULT_TIMEOUT)
    generator = random.Random(7)
    with pytest.warns(UserWarning, match=r"Random.randint .*random.Random"):
        pool1.submit(generator.randint, 1, 6).result(timeout=RESULT_TIMEOUT)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        # once per generator and method; an OS-entropy generator has no state to copy
        pool1.submit(generator.randint, 1, 6).result(timeout=RESULT_TIMEOUT)
        _functions._warn_if_random_state(random.SystemRandom().random, "SystemRandom.random")
        pool1.submit(workers.square, 3).result(timeout=RESULT_TIMEOUT)


def test_numpy_generators_warn_too(pool1: Pool) -> None:
    numpy = pytest.importorskip("numpy")
    with pytest.warns(UserWarning, match="numpy.random._generator.Generator"):
        pool1.submit(numpy.random.default_rng(1).random).result(timeout=RESULT_TIMEOUT)
    with pytest.warns(UserWarning, match="RandomState"):
        pool1.submit(functools.partial(numpy.random.RandomState(1).randint, 10)).result(
            timeout=RESULT_TIMEOUT
        )


def test_the_numpy_check_does_not_import_numpy() -> None:
    code = (
        "import random, sys, parallelize._functions as f\n"
        "f._warn_if_random_state(print, 'print')\n"
        "print('numpy' in sys.modules)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout == "False\n"


# -- restart() ---------------------------------------------------------------------------------------


def test_restart_replaces_idle_workers_now_and_busy_ones_after_their_task(
    start_method: str, tmp_path: Path
) -> None:
    release, meet = tmp_path / "release", tmp_path / "meet"
    meet.mkdir()
    with Pool(2, start_method=start_method) as pool:
        started = [pool.submit(lifecycle_tasks.rendezvous, str(meet), 2) for _ in range(2)]
        before = {f.result(timeout=RESULT_TIMEOUT) for f in started}
        assert len(before) == 2
        running = pool.submit(lifecycle_tasks.wait_for_file, str(release))
        wait_until(running.running, 30, "the long task to start")
        pool.restart()
        after = [pool.submit(os.getpid).result(timeout=RESULT_TIMEOUT) for _ in range(4)]
        assert not set(after) & before  # nothing submitted after restart() ran in an old worker
        release.write_text("done")
        text, pid = running.result(timeout=RESULT_TIMEOUT).split(":")
        assert text == "done"  # the running task was not lost, and ran where it started
        assert int(pid) in before
        wait_until(lambda: not set(pool.worker_pids()) & before, 30, "the old workers to go")
        assert pool.submit(workers.square, 4).result(timeout=RESULT_TIMEOUT) == 16


def test_restart_of_the_default_pool_and_of_pools_that_never_started_or_closed(
    default_start_method: str,
) -> None:
    parallelize.restart()  # no default pool yet: nothing to do
    assert workers.decorated_square(3).result(timeout=RESULT_TIMEOUT) == 9
    old = set(workers.default_pool_pids())
    assert old
    parallelize.restart()
    assert workers.decorated_square(4).result(timeout=RESULT_TIMEOUT) == 16
    assert not set(workers.default_pool_pids()) & old
    fresh = Pool(1)
    fresh.restart()  # never started: nothing to replace
    assert fresh.submit(workers.square, 3).result(timeout=RESULT_TIMEOUT) == 9
    fresh.shutdown()
    with pytest.raises(PoolClosed, match="shut down"):
        fresh.restart()
