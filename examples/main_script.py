"""Everything defined in the script itself: decorated functions, a class, a closure and a lambda.

Functions that live in ``__main__`` cannot be imported by name in a worker the way a module's can,
so parallelize sends decorated ones, closures and lambdas by value (cloudpickle). Instances of a
class defined here travel by reference to ``__main__.Rectangle``, which works because spawn and
forkserver re-import this file in each worker as ``__mp_main__``. That re-import is also why the
``if __name__ == "__main__":`` guard at the bottom is required: without it every worker would run
``main()`` again.

Run it with ``python examples/main_script.py``; set ``PARALLELIZE_START_METHOD`` to ``spawn``,
``forkserver`` or ``fork`` to choose how workers start (forkserver is the default on Linux).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from parallelize import Pool, in_process, parallel


@dataclass(frozen=True)
class Rectangle:
    width: float
    height: float

    def area(self) -> float:
        return self.width * self.height


@parallel
def scaled(rectangle: Rectangle, factor: float) -> Rectangle:
    """Takes and returns instances of a class defined in this script."""
    return Rectangle(rectangle.width * factor, rectangle.height * factor)


@parallel
def total_area(rectangles: list[Rectangle]) -> float:
    return sum(rectangle.area() for rectangle in rectangles)


@in_process
def worker_pid() -> int:
    return os.getpid()


def main() -> None:
    rectangles = [Rectangle(1, 2), Rectangle(3, 4), Rectangle(5, 6)]
    bigger = [scaled(rectangle, 2).result(timeout=30) for rectangle in rectangles]
    print("scaled:", [(r.width, r.height) for r in bigger])
    print("total area:", total_area(bigger).result(timeout=30))
    print("in_process ran in a worker:", worker_pid() != os.getpid())

    factor = 3

    @parallel
    def times(x: int) -> int:  # decorated inside main(): a closure over `factor`, sent by value
        return x * factor

    print("decorated closure:", list(times.map(range(5))))

    with Pool(2) as pool:
        offset = 100

        def shifted(x: int) -> int:  # a closure over `offset`: sent by value
            return x + offset

        print("closure:", pool.submit(shifted, 1).result(timeout=30))
        print("lambda:", list(pool.map(lambda x: x * x, range(6))))
        print("method of a script class:", pool.submit(Rectangle(7, 8).area).result(timeout=30))
        print("pool:", pool)


if __name__ == "__main__":
    main()
