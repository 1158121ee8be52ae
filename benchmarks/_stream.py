"""The stream row's child: one pool maps over a generator while a watcher thread reads its RSS.

Run in a fresh interpreter that leads a process group of its own (_growth.run_group_child kills the
group afterwards), so a pool stopped half-way leaves nothing behind. It prints one ``RESULT`` line:
``status`` ("done", "cap" when the RSS grew past the cap, "time" when the time ran out), the items
consumed, the seconds, and the peak growth of the parent's RSS in MiB.

Every pool gets the same generator of ints and is consumed as a user would: one result at a time,
in order. The peers get an explicit chunksize (``_growth.STREAM_CHUNK``): their default of 1 sends
a message per item, and a generator has no length to divide; parallelize chunks by itself.

Besides the watcher's cap, the address space is limited to what the pool used before the map plus
``2 x cap`` (``RLIMIT_AS``), so that no peer can take more than that even if the watcher were late:
RSS never exceeds the address space.
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import resource
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from typing import Any, NoReturn

import _peers
from _bench_tasks import double


def _status(field: str) -> float:
    """A ``Vm*`` field of /proc/self/status, in MiB."""
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field + ":")) / 1024


def _reset_peak() -> bool:
    """Reset VmHWM (the kernel's peak RSS) to the current RSS; False where that is not allowed."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return False
    return True


def stream(adapter: _peers.Adapter, items: Iterable[int], chunk: int) -> Iterator[int]:
    """``double`` over ``items`` with each pool's own lazy-looking map API, results in order."""
    pool: Any = adapter.pool
    if adapter.key == "parallelize":
        return iter(pool.map(double, items))
    if adapter.key in ("ppe", "loky"):
        return iter(pool.map(double, items, chunksize=chunk))
    if adapter.key == "mp":
        return iter(pool.imap(double, items, chunksize=chunk))
    if adapter.key == "pebble":
        return iter(pool.map(double, items, chunksize=chunk).result())
    if adapter.key == "mpire":
        return iter(pool.imap(double, items, chunk_size=chunk))
    raise ValueError(f"no streaming map for {adapter.key!r}")


API = {
    "parallelize": "`Pool.map(fn, gen)`",
    "ppe": "`map(fn, gen, chunksize=C)`",
    "mp": "`imap(fn, gen, chunksize=C)`",
    "loky": "`map(fn, gen, chunksize=C)`",
    "pebble": "`map(fn, gen, chunksize=C).result()`",
    "mpire": "`imap(fn, gen, chunk_size=C)`",
}


def _say(result: dict[str, Any]) -> None:
    print("RESULT", json.dumps(result), flush=True)


def main(column: str, count: int, seconds: float, cap_mib: float, chunk: int) -> None:
    adapter = _peers.make_for_rows(column)
    adapter.open()
    adapter.warm()
    _expect(sum(stream(adapter, iter(range(100)), chunk)), 100)  # whatever a first map sets up is set up
    gc.collect()
    hwm = _reset_peak()
    base = _status("VmRSS")
    limit = int((_status("VmSize") + 2 * cap_mib) * 2**20)
    resource.setrlimit(resource.RLIMIT_AS, (limit, resource.getrlimit(resource.RLIMIT_AS)[1]))
    done = threading.Event()
    consumed = [0]
    peak = [base]
    started = time.perf_counter()

    def stop(status: str) -> NoReturn:
        """From the watcher: say how far the map got and end the process at once."""
        _say({"status": status, "items": consumed[0], "seconds": time.perf_counter() - started,
              "peak": _peak(peak[0], base, hwm)})  # fmt: skip
        os._exit(0)

    def watch() -> None:
        while not done.wait(0.01):
            rss = _status("VmRSS")
            peak[0] = max(peak[0], rss)
            if rss - base > cap_mib:
                stop("cap")
            if time.perf_counter() - started > seconds:
                stop("time")

    watcher = threading.Thread(target=watch, name="rss-watcher", daemon=True)
    watcher.start()
    total = 0
    for consumed[0], value in enumerate(stream(adapter, (i for i in range(count)), chunk), 1):
        total += value
    elapsed = time.perf_counter() - started
    done.set()
    watcher.join(10)
    _expect(total, count)
    _say({"status": "done", "items": consumed[0], "seconds": elapsed, "peak": _peak(peak[0], base, hwm)})
    with contextlib.suppress(Exception):
        adapter.close()


def _peak(sampled: float, base: float, hwm: bool) -> float:
    """Peak RSS growth over the map in MiB: the kernel's high-water mark where it could be reset,
    else the watcher's samples (every 10 ms)."""
    return max(sampled, _status("VmHWM") if hwm else sampled) - base


def _expect(total: int, count: int) -> None:
    if total != count * (count - 1):
        sys.exit(f"the map returned wrong results (sum {total:,} for {count:,} items)")
