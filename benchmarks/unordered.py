"""The unordered map (``f.map(xs, ordered=False)``) against ``multiprocessing.Pool.imap_unordered``
and against what parallelize users did before it: one future per item and ``as_completed``.

    python benchmarks/unordered.py            # 5 rounds; --rounds N, --tiny N, --timed N, --seed N

Rows, each taken with every contender once per round (the order rotating from round to round, so
machine noise hits all alike), medians over the rounds:

* tiny: 200,000 items of ``x * 2``, items per second. parallelize's map chunks by measured time;
  ``imap_unordered`` gets multiprocessing's own ``map`` default chunk size (about four chunks per
  worker: its ``imap_unordered`` default of 1 would make it a round trip per item); the futures
  are one ``submit`` per item. The unordered map is also taken by ``async for`` in ``asyncio.run``.
* timed: 1,000 items that sleep a random 0 to 20 ms (the same durations every round, from
  ``--seed``), wall seconds, and how close that comes to the ideal (the total sleep divided among
  the workers). ``imap_unordered`` uses chunksize 1, right for items this long (and its default).
  parallelize's ordered map is shown too: a long item holds back the results after it there.

Every pool has 2 workers on its own default start method (forkserver for parallelize, fork for
multiprocessing before Python 3.14), and is started and warmed before any timing.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import concurrent.futures
import multiprocessing
import statistics
import sys
import time
from collections.abc import AsyncIterable, Callable, Iterable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))  # workers import the tasks by name

from _bench_tasks import double, sleep_for
from _peers import classic_chunksize

from parallelize import Pool

WORKERS = 2
WAIT = 600.0


def durations(count: int, seed: int) -> list[float]:
    import random

    rng = random.Random(seed)
    return [rng.uniform(0.0, 0.020) for _ in range(count)]


def drain(results: Iterable[object]) -> int:
    """Take every result as it comes, keeping none (what a consumer that stores them elsewhere does)."""
    collections.deque(results, maxlen=0)
    return 0


async def adrain(results: AsyncIterable[object]) -> int:
    """``drain`` in a coroutine: ``async for`` over the results."""
    async for _ in results:
        pass
    return 0


def run_rows(rounds: int, tiny: int, timed: int, seed: int) -> dict[str, list[float]]:
    items = list(range(tiny))
    waits = durations(timed, seed)
    rows: dict[str, list[float]] = collections.defaultdict(list)
    with Pool(WORKERS) as ours, multiprocessing.Pool(WORKERS) as theirs:
        # warm: every worker up and the tasks imported
        assert sum(ours.map(double, range(1000))) == 999_000
        assert sum(theirs.map(double, range(1000))) == 999_000

        def as_completed(function: Callable[[Any], object], xs: list[Any]) -> int:
            futures = [ours.submit(function, x) for x in xs]
            for future in concurrent.futures.as_completed(futures, timeout=WAIT):
                future.result()
            return 0

        tiny_runs: dict[str, Callable[[], object]] = {
            "parallelize `map(f, xs, ordered=False)`": lambda: drain(ours.map(double, items, ordered=False)),
            "parallelize `map(f, xs)` (ordered)": lambda: drain(ours.map(double, items)),
            "parallelize `async for` over `map(f, xs, ordered=False)`": lambda: asyncio.run(
                adrain(ours.map(double, items, ordered=False))
            ),
            "`multiprocessing.Pool.imap_unordered`": lambda: drain(
                theirs.imap_unordered(double, items, chunksize=classic_chunksize(tiny))
            ),
            "parallelize, a future per item + `as_completed`": lambda: as_completed(double, items),
        }
        timed_runs: dict[str, Callable[[], object]] = {
            "parallelize `map(f, xs, ordered=False)`": lambda: drain(
                ours.map(sleep_for, waits, ordered=False)
            ),
            "parallelize `map(f, xs)` (ordered)": lambda: drain(ours.map(sleep_for, waits)),
            "`multiprocessing.Pool.imap_unordered`": lambda: drain(theirs.imap_unordered(sleep_for, waits)),
            "parallelize, a future per item + `as_completed`": lambda: as_completed(sleep_for, waits),
        }
        for round_ in range(rounds):
            for group, runs in (("tiny", tiny_runs), ("timed", timed_runs)):
                names = list(runs)
                shift = round_ % len(names)
                for name in names[shift:] + names[:shift]:
                    started = time.perf_counter()
                    runs[name]()
                    rows[f"{group}|{name}"].append(time.perf_counter() - started)
            print(f"round {round_ + 1} of {rounds} done", file=sys.stderr, flush=True)
    return rows


def report(rows: dict[str, list[float]], tiny: int, timed: int, seed: int, rounds: int) -> None:
    ideal = sum(durations(timed, seed)) / WORKERS
    python = sys.version.split()[0]
    reference = "`multiprocessing.Pool.imap_unordered`"
    print(f"Python {python}, {WORKERS} workers, medians of {rounds} rounds")
    print()
    print(f"| {tiny:,} tiny items (`x * 2`) | items/s | ratio to `imap_unordered` |")
    print("|---|---:|---:|")
    base = tiny / statistics.median(rows[f"tiny|{reference}"])
    for key, values in rows.items():
        group, name = key.split("|", 1)
        if group == "tiny":
            rate = tiny / statistics.median(values)
            print(f"| {name} | {rate:,.0f} | {rate / base:.2f} |")
    print()
    print(
        f"| {timed:,} items of 0-20 ms (seed {seed}; ideal {ideal:.2f} s) | seconds | "
        "ideal / seconds | ratio of `imap_unordered`'s time to this |"
    )
    print("|---|---:|---:|---:|")
    base = statistics.median(rows[f"timed|{reference}"])
    for key, values in rows.items():
        group, name = key.split("|", 1)
        if group == "timed":
            seconds = statistics.median(values)
            print(f"| {name} | {seconds:.2f} | {ideal / seconds:.0%} | {base / seconds:.2f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--tiny", type=int, default=200_000)
    parser.add_argument("--timed", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=12)
    args = parser.parse_args()
    rows = run_rows(args.rounds, args.tiny, args.timed, args.seed)
    report(rows, args.tiny, args.timed, args.seed, args.rounds)


if __name__ == "__main__":
    main()
