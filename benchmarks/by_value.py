"""What it costs that a by-value function is pickled again at every call (README, "How functions
reach the workers").

    python benchmarks/by_value.py             # 5 rounds of 3,000 calls each, 2 workers

Each row submits one call at a time and waits for it (a warm round trip, the cost a notebook user
sees), on one pool: a module-level function (by reference: the baseline); a closure over an int
that does not change (immutable state: recognised unchanged, not pickled again); a closure over a
dict that does not change (mutable state: pickled per call, same bytes, so no DEFINE); and a
closure whose captured value changes at every call (pickled per call and sent to the worker as a
DEFINE every time). Medians over rounds; microseconds per call.
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

from parallelize import Pool

CALLS = 3000
ROUNDS = 5


def by_reference(x: int) -> int:
    return x


def _per_call(pool: Pool, make: Callable[[int], tuple[Callable[..., Any], int]]) -> float:
    started = time.perf_counter()
    for i in range(CALLS):
        function, argument = make(i)
        pool.submit(function, argument).result(timeout=30)
    return (time.perf_counter() - started) / CALLS * 1e6


def main() -> None:
    state = {"k": 1}
    k = 1

    def immutable(x: int) -> int:
        return x * k

    def unchanged(x: int) -> int:
        return x * state["k"]

    def changing(x: int) -> int:
        return x * state["k"]

    def bump(i: int) -> tuple[Callable[..., Any], int]:
        state["k"] = i
        return changing, i

    rows: dict[str, Callable[[int], tuple[Callable[..., Any], int]]] = {
        "by reference (module-level function)": lambda i: (by_reference, i),
        "by value, unchanged, immutable state (closure over an int)": lambda i: (immutable, i),
        "by value, unchanged, mutable state (closure over a dict)": lambda i: (unchanged, i),
        "by value, changed before every call": bump,
    }
    results: dict[str, list[float]] = {name: [] for name in rows}
    with Pool(2) as pool:
        for make in rows.values():
            _per_call(pool, make)  # warm: workers up, functions defined
        for _ in range(ROUNDS):
            for name, make in rows.items():
                results[name].append(_per_call(pool, make))
    python = sys.version.split()[0]
    print(f"| call ({CALLS} calls, median of {ROUNDS} rounds, Python {python}) | µs per call |")
    print("|---|---:|")
    for name, values in results.items():
        print(f"| {name} | {statistics.median(values):.0f} |")


if __name__ == "__main__":
    main()
