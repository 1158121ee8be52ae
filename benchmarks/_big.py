"""The big rows: ``bytes`` arguments of growing size (64 MiB, 256 MiB, 1 GiB in a full run), one pool.

MB/s should stay flat as the size grows. Each pool runs in a fresh interpreter of its own process
group (a 1 GiB argument costs a few GiB across the parent and a worker while it moves; they are
all gone when the child is), opens the pool, runs a task on every worker, then sends each size
once, smallest first, to a function that returns its length, as the transfer row does. The
payload is made in the child before its clock starts, and dropped before the next size.

The bare-pipe column writes the raw buffer to one child; beside it, as the reference, one copy of
the same size into fresh memory in one process (``bytearray(payload)``: a fresh allocation and a
memcpy, what the transfer group's copy row does with ``bytes(bytearray)``).

The child prints its results so far after each size, so a pool that stalls on 1 GiB keeps the
smaller sizes.
"""

from __future__ import annotations

import gc
import json
import time
from collections.abc import Callable
from typing import Any

from _growth import growth, run_group_child
from _measure import WAIT, Session, _script


def _timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    got = fn()
    return time.perf_counter() - started, got


def main(column: str, sizes: list[int]) -> None:
    """The child: every size once, printing what it has after each."""
    import _peers
    from _baseline import BarePipes

    got: dict[str, float] = {}
    target: Any
    if column == "bare":
        target = BarePipes(1)
    else:
        target = _peers.make_for_rows(column)
        target.open()
        target.warm()
    for size in sizes:
        _one(target, size, got)
        print("RESULT", json.dumps(got), flush=True)


def _one(target: Any, size: int, got: dict[str, float]) -> None:
    """One size: the payload is made here, and freed on return."""
    from _baseline import BarePipes
    from _bench_tasks import make, size_of

    payload = make("bytes", size)
    gc.collect()
    mb, mib = size / 1e6, size >> 20
    if isinstance(target, BarePipes):
        seconds, length = _timed(lambda: target.send_payload(payload, WAIT))
        copy, _ = _timed(lambda: bytearray(payload))
        got[f"bigcopy_{mib}"] = mb / copy
    else:
        seconds, length = _timed(lambda: target.wait(target.submit(size_of, payload), WAIT))
    if length != size:
        raise AssertionError(f"expected {size:,} bytes, the worker saw {length!r}")
    got[f"big_{mib}"] = mb / seconds


def measure_big(column: str, s: Session, out: dict[str, float]) -> None:
    sizes = list(growth(s.plan).big)
    timeout = 120 + sum(sizes) / 20e6  # 20 MB/s would be ten times slower than the slowest peer
    try:
        got = run_group_child(_script(f"import _big\n_big.main({column!r}, {sizes})\n"), timeout)
    except RuntimeError as exc:
        got, error = {}, str(exc)
    else:
        error = f"no result within {timeout:.0f} s"
    out.update(got)
    for size in sizes:
        mib = size >> 20
        if f"big_{mib}" not in got:
            s.failures[f"big_{mib}"] = error
