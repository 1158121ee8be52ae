"""What a worker cannot import as it is: scripts' __main__, ``python -c`` and stdin code, closures.

Each script runs in a fresh interpreter, as users run them, under each start method. spawn and
forkserver run a script's main module again in every worker (hence the ``if __name__ ==
"__main__":`` guard), so what it defines at top level exists there; what it defines under the
guard does not, and neither does anything from ``-c`` code or stdin, which have no file at all
(like a notebook cell). Those, closures and lambdas must travel by value.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from parallelize import Pool, parallel

from . import lifecycle_tasks, workers

RESULT_TIMEOUT = 30
SCRIPT_TIMEOUT = 30

pytestmark = pytest.mark.timeout(SCRIPT_TIMEOUT + 15)


def _run(args: list[str], start_method: str, cwd: Path, stdin: str | None = None) -> str:
    done = lifecycle_tasks.run_script(args, start_method, cwd, timeout=SCRIPT_TIMEOUT, stdin=stdin)
    assert done.returncode == 0, f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    assert done.stderr == ""
    return done.stdout


# What a script's __main__ may define and hand to workers.
MAIN_SCRIPT = """
import os

from parallelize import Pool, parallel


class Point:
    def __init__(self, x, y):
        self.x, self.y = x, y


@parallel
def double(x):
    return 2 * x


@parallel
def mirror(point):
    return Point(point.y, point.x), os.getpid()


def make_scaler(factor):
    @parallel
    def scale(x):
        return x * factor

    return scale


def make_adder(n):
    def add(v):
        return v + n

    return add


if __name__ == "__main__":
    print("double", double(21).result(timeout=20))
    print("map", *double.map(range(5)))
    point, pid = mirror(Point(1, 2)).result(timeout=20)
    print("mirror", isinstance(point, Point), point.x, point.y, pid != os.getpid())
    print("scale", make_scaler(10)(4).result(timeout=20))
    offset = 100
    with Pool(2) as pool:
        print("lambda", pool.submit(lambda v: v + offset, 1).result(timeout=20))

        print("closure", pool.submit(make_adder(5), 1).result(timeout=20))
        print("pool-map", *pool.map(lambda v: v * v, range(4)))
"""

MAIN_EXPECTED = """\
double 42
map 0 2 4 6 8
mirror True 2 1 True
scale 40
lambda 101
closure 6
pool-map 0 1 4 9
"""


def test_script_main_functions_classes_closures_and_lambdas(start_method: str, tmp_path: Path) -> None:
    script = tmp_path / "main_script.py"
    script.write_text(MAIN_SCRIPT)
    assert _run([str(script)], start_method, tmp_path) == MAIN_EXPECTED


# Defined under the guard, so the workers' re-imported __main__ lacks them: by value or not at all.
GUARDED_SCRIPT = """
from parallelize import Pool

if __name__ == "__main__":

    class Tag:
        def __init__(self, name):
            self.name = name

    def shout(tag):
        return Tag(tag.name.upper())

    def plain(v):
        return v - 1

    with Pool(2) as pool:
        print("function", pool.submit(plain, 1).result(timeout=20))
        tag = pool.submit(shout, Tag("hi")).result(timeout=20)
        print("class", isinstance(tag, Tag), tag.name)
"""


def test_script_function_and_class_defined_under_the_guard(start_method: str, tmp_path: Path) -> None:
    script = tmp_path / "guarded_script.py"
    script.write_text(GUARDED_SCRIPT)
    assert _run([str(script)], start_method, tmp_path) == "function 0\nclass True HI\n"


# A __main__ function that uses another decorated __main__ function: its __wrapped__ is the plain
# function (run right there in the worker), and calling it decorated runs inline in the worker.
CALLS_SCRIPT = """
from parallelize import parallel


@parallel
def double(x):
    return 2 * x


@parallel
def quadruple(x):
    return double.__wrapped__(double.__wrapped__(x))


@parallel
def double_plus_one(x):
    return double(x).result(timeout=20) + 1


if __name__ == "__main__":
    print("quadruple", quadruple(3).result(timeout=20))
    print("double-plus-one", double_plus_one(5).result(timeout=20))
"""


def test_script_main_function_calls_another_decorated_main_function(
    start_method: str, tmp_path: Path
) -> None:
    script = tmp_path / "calls_script.py"
    script.write_text(CALLS_SCRIPT)
    assert _run([str(script)], start_method, tmp_path) == "quadruple 12\ndouble-plus-one 11\n"


# Notebook cells: no file and no __main__ guard. A worker cannot import anything defined here, so
# it must all travel by value.
CELL_FUNCTIONS = """
import os
from parallelize import Pool, parallel

PARENT = os.getpid()


@parallel
def triple(x):
    return 3 * x


@parallel
def elsewhere():
    return os.getpid() != PARENT


print("triple", triple(14).result(timeout=20))
print("map", *triple.map(range(4)))
print("elsewhere", elsewhere().result(timeout=20))
with Pool(1) as pool:
    print("lambda", pool.submit(lambda v: v + 1, 1).result(timeout=20))
"""

CELL_FUNCTIONS_EXPECTED = "triple 42\nmap 0 3 6 9\nelsewhere True\nlambda 2\n"

CELL_CLASSES = """
from parallelize import parallel


class Box:
    def __init__(self, value):
        self.value = value


@parallel
def doubled(box):
    return Box(box.value * 2)


result = doubled(Box(21)).result(timeout=20)
print("box", isinstance(result, Box), result.value)
"""

HOW = {
    "dash-c": lambda code: (["-c", code], None),
    "stdin": lambda code: (["-"], code),
}


@pytest.mark.parametrize("how", sorted(HOW))
def test_cell_functions_travel_by_value(how: str, start_method: str, tmp_path: Path) -> None:
    args, stdin = HOW[how](CELL_FUNCTIONS)
    assert _run(args, start_method, tmp_path, stdin) == CELL_FUNCTIONS_EXPECTED


@pytest.mark.parametrize("how", sorted(HOW))
def test_cell_class_as_argument_and_result(how: str, start_method: str, tmp_path: Path) -> None:
    args, stdin = HOW[how](CELL_CLASSES)
    assert _run(args, start_method, tmp_path, stdin) == "box True 42\n"


# -- the same in this process ----------------------------------------------------------------------


def test_lambdas_and_closures_submitted_to_a_pool(pool: Pool) -> None:
    offset = 7

    def add_offset(x: int) -> int:
        return x + offset

    assert pool.submit(lambda x: x * 3, 5).result(timeout=RESULT_TIMEOUT) == 15
    assert pool.submit(add_offset, 1).result(timeout=RESULT_TIMEOUT) == 8
    assert list(pool.map(add_offset, range(3))) == [7, 8, 9]
    # Twice more: the by-value definition is sent once per worker and then reused.
    assert [pool.submit(add_offset, i).result(timeout=RESULT_TIMEOUT) for i in range(2)] == [7, 8]


def test_a_decorated_closure(default_start_method: str) -> None:
    factor = 6

    @parallel
    def scale(x: int) -> tuple[int, int]:
        return x * factor, os.getpid()

    value, pid = scale(7).result(timeout=RESULT_TIMEOUT)
    assert value == 42
    assert pid in workers.default_pool_pids()
    assert [v for v, _ in scale.map(range(4))] == [0, 6, 12, 18]
    assert scale.__wrapped__(2)[0] == 12
