"""The classic ``multiprocessing`` examples, rewritten with parallelize.

Each section shows the ``multiprocessing`` code in a comment, then its parallelize form. Results
come back to the caller instead of being printed by the child, so what a worker computed is a value
the program can use (and the output does not depend on which process prints first).

Run it with ``python examples/seed_multiprocessing.py``.
"""

from __future__ import annotations

from parallelize import Pool, in_process, parallel

# -- 1. One function in one child process -------------------------------------------------------
#
#     from multiprocessing import Process
#
#     def greet(name):
#         print("hello", name)
#
#     if __name__ == "__main__":
#         p = Process(target=greet, args=("bob",))
#         p.start()
#         p.join()


@in_process
def greet(name: str) -> str:
    return f"hello {name}"


# Or, to do something else while the child works: a future instead of start() and join().
@parallel
def greet_later(name: str) -> str:
    return f"hello {name}"


# -- 2. A pool mapping a function over a range --------------------------------------------------
#
#     from multiprocessing import Pool
#
#     def square(x):
#         return x * x
#
#     if __name__ == "__main__":
#         with Pool() as pool:
#             print(pool.map(square, range(10)))
#             print(pool.apply(square, (4,)))


@parallel
def square(x: int) -> int:
    return x * x


# -- 3. A pool whose workers run an initializer first -------------------------------------------
#
#     from multiprocessing import Pool
#
#     def load_prices(currency):
#         global PRICES
#         PRICES = {...}
#
#     def price_of(item):
#         return PRICES[item]
#
#     if __name__ == "__main__":
#         with Pool(2, initializer=load_prices, initargs=("USD",)) as pool:
#             print(pool.map(price_of, ["apple", "pear", "plum"]))
#
# With parallelize.Pool: the same initializer and the same plain functions. They stay undecorated
# on purpose: the initializer fills a global of the worker's ``__main__`` module and a plain function
# of this script reads that module's globals, while a decorated function defined in a script
# travels by value, with its own copy of the globals it uses.

BASE_PRICES = {"apple": 0.4, "pear": 0.6, "plum": 0.2}
PRICES: dict[str, float] = {}


def load_prices(currency: str) -> None:
    rate = {"EUR": 1.0, "USD": 1.25}[currency]
    PRICES.update({item: round(base * rate, 2) for item, base in BASE_PRICES.items()})


def price_of(item: str) -> float:
    return PRICES[item]


def main() -> None:
    # 1. The child's result is the return value.
    print(greet("bob"))

    future = greet_later("alice")  # runs at once; this process is free meanwhile
    print(future.result(timeout=30))

    # 2. pool.map(square, range(10)) and pool.apply(square, (4,)) become:
    print("squares:", list(square.map(range(10))))
    print("apply:", square(4).result(timeout=30))

    # 3. An explicit pool with an initializer.
    with Pool(2, initializer=load_prices, initargs=("USD",)) as pool:
        print("prices in USD:", list(pool.map(price_of, ["apple", "pear", "plum"])))
    print("the initializer ran in the workers only:", PRICES == {})


if __name__ == "__main__":
    main()
