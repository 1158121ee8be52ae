"""parallelize's dask backend against plain dask.distributed, on one LocalCluster in one run.

    python benchmarks/dask_bench.py       # 3 rounds; --rounds N, --items N, --dask-items N to change

Rows (each round runs every row once, ours then dask's, so machine noise hits both alike):

* map: ``f.map`` over 200,000 tiny items (``x * 2``), chunked by measured time, against
  ``client.map`` of the same function (one dask task per item), items per second. client.map
  runs at a few hundred tasks per second on a 2-core machine, so 200,000 of them take over ten
  minutes a round: it maps ``--dask-items`` (20,000 by default) instead, and the throughputs
  are compared (one task per item: its rate does not depend on the length);
* calls: 1,000 calls of a 10 ms task, submitted one by one and then waited for, against
  ``client.submit(..., pure=False)``, wall seconds;
* round trip: one call and its result, against ``client.submit(...).result()``, medians of 50,
  milliseconds.

The cluster is parallelize's embedded default (``available_cpus()`` process workers, one thread
each); dask's rows use a client of their own on the same scheduler.
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

import parallelize
from parallelize import _config, parallel

WAIT = 600.0


def double(x: int) -> int:
    return x * 2


def ten_ms(x: int) -> int:
    time.sleep(0.01)
    return x


def noop(x: int) -> int:
    return x


def measure(rounds: int, items: int, dask_items: int) -> dict[str, list[float]]:
    import distributed

    parallelize.configure(backend="dask")
    backend: Any = _config.backend_named("dask")
    client = distributed.Client(backend.client.scheduler.address, set_as_default=False)
    ours_double, ours_ten, ours_noop = (parallel(backend="dask")(f) for f in (double, ten_ms, noop))
    ours_noop(0).result(timeout=WAIT)
    client.submit(noop, 0, pure=False).result(timeout=WAIT)
    rows: dict[str, list[float]] = {}

    def add(name: str, value: float) -> None:
        rows.setdefault(name, []).append(value)

    for round_ in range(rounds):
        started = time.perf_counter()
        assert sum(ours_double.map(range(items))) == items * (items - 1)
        add("map ours (items/s)", items / (time.perf_counter() - started))
        started = time.perf_counter()
        futures = client.map(double, range(dask_items), pure=False)
        assert sum(client.gather(futures)) == dask_items * (dask_items - 1)
        add("map client.map (items/s)", dask_items / (time.perf_counter() - started))
        del futures

        started = time.perf_counter()
        calls = [ours_ten(i) for i in range(1000)]
        assert [call.result(timeout=WAIT) for call in calls] == list(range(1000))
        add("1,000 x 10 ms calls ours (s)", time.perf_counter() - started)
        started = time.perf_counter()
        dask_calls = [client.submit(ten_ms, i, pure=False) for i in range(1000)]
        assert client.gather(dask_calls) == list(range(1000))
        add("1,000 x 10 ms calls client.submit (s)", time.perf_counter() - started)
        del dask_calls

        trips, dask_trips = [], []
        for i in range(50):
            started = time.perf_counter()
            ours_noop(i).result(timeout=WAIT)
            trips.append(time.perf_counter() - started)
            started = time.perf_counter()
            client.submit(noop, i, pure=False).result(timeout=WAIT)
            dask_trips.append(time.perf_counter() - started)
        add("round trip ours (ms)", 1000 * statistics.median(trips))
        add("round trip client.submit (ms)", 1000 * statistics.median(dask_trips))
        print(f"round {round_ + 1} of {rounds} done", flush=True)
    client.close()
    parallelize.shutdown()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--items", type=int, default=200_000)
    parser.add_argument("--dask-items", type=int, default=20_000)
    options = parser.parse_args()
    rows = measure(options.rounds, options.items, options.dask_items)
    medians = {name: statistics.median(values) for name, values in rows.items()}
    print(
        f"\n{parallelize.available_cpus()} workers, {options.rounds} rounds, map of {options.items:,} "
        f"items (client.map: {options.dask_items:,}), medians:"
    )
    for name, value in medians.items():
        print(f"  {name:40} {value:14,.2f}")
    print("ratios:")
    speed = medians["map ours (items/s)"] / medians["map client.map (items/s)"]
    print(f"  map, ours / client.map (throughput):        {speed:.1f}x")
    calls = medians["1,000 x 10 ms calls ours (s)"] / medians["1,000 x 10 ms calls client.submit (s)"]
    print(f"  1,000 calls, ours / client.submit (time):   {calls:.2f}x")
    trip = medians["round trip ours (ms)"] / medians["round trip client.submit (ms)"]
    print(f"  round trip, ours / client.submit (time):    {trip:.2f}x")


if __name__ == "__main__":
    main()
