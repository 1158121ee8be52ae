"""The first large payload of a fresh pool: its argument and its result rows.

The warm transfer rows send 64 MiB through a pool that has moved such payloads before; a program
that sends one big array and exits only ever pays the first transfer, whatever a pool creates on
first use included (segments, buffers, imports). Each figure here comes from a fresh interpreter:
it starts the pool, warms every worker with a no-op, has every worker make its payload (result
row), and then times one payload, the only one that pool and that interpreter ever move.
"""

from __future__ import annotations

from typing import Any

WAIT = 60.0  # seconds for the payload's answer

_BODY = """\
from _first import first_transfer
report(first_transfer({column!r}, {direction!r}, {size}))
"""


def measure_first(column: str, s: Any, out: dict[str, float]) -> None:
    """The ``first_arg`` and ``first_res`` rows of ``column`` (MB/s), each in a fresh interpreter,
    and each against one copy into fresh memory in that interpreter (``first_*_ratio``)."""
    from _measure import _row_failure, _script, run_python

    mb = s.plan.payload / 1e6
    for direction in ("arg", "res"):
        key = f"first_{direction}"
        if key in s.skip:
            continue
        body = _BODY.format(column=column, direction=direction, size=s.plan.payload)
        with _row_failure(s, key, limit=150):
            seconds, copy = run_python(_script(body), timeout=120)
            out[key] = mb / seconds
            out[f"{key}_ratio"] = copy / seconds


def first_transfer(column: str, direction: str, size: int) -> tuple[float, float]:
    """Seconds for the first ``size``-byte bytes argument ("arg") or result ("res") of a fresh
    pool of ``column``, and for one copy of as much into fresh memory before it, in the same fresh
    interpreter (on a shared machine, a ratio of two figures taken apart wanders with the load)."""
    import time

    from _bench_tasks import make, produce, size_of

    source = bytearray(make("bytes", size))
    started = time.perf_counter()
    bytes(source)
    copy = time.perf_counter() - started
    del source

    if column == "bare":
        from _baseline import BarePipes

        pipes = BarePipes(1)  # its child has answered a small message: warm
        try:
            if direction == "arg":
                payload = make("bytes", size)
                started = time.perf_counter()
                got = pipes.send_payload(payload, WAIT)
            else:
                pipes.make_payload(size, WAIT)
                started = time.perf_counter()
                got = len(pipes.fetch_payload(size, WAIT))
            elapsed = time.perf_counter() - started
        finally:
            pipes.close()
    else:
        import _peers

        adapter = _peers.make_for_rows(column)
        payload = make("bytes", size) if direction == "arg" else None
        adapter.open()
        try:
            adapter.warm(WAIT)
            if direction == "arg":
                started = time.perf_counter()
                got = adapter.wait(adapter.submit(size_of, payload), WAIT)
            else:
                _hold_everywhere(adapter, size)
                started = time.perf_counter()
                got = size_of(adapter.wait(adapter.submit(produce, "bytes", size), WAIT))
            elapsed = time.perf_counter() - started
        finally:
            adapter.close()
    if got != size:
        raise AssertionError(f"the first payload came back as {got!r} bytes, not {size}")
    return elapsed, copy


def _hold_everywhere(adapter: Any, size: int) -> None:
    """Every worker makes (and keeps) its bytes payload, so the timed result moves it only."""
    import time

    import _peers
    from _bench_tasks import hold_payload

    deadline = time.monotonic() + WAIT
    seen: set[int] = set()
    while len(seen) < _peers.WORKERS:
        handles = [adapter.submit(hold_payload, size, 0.05) for _ in range(_peers.WORKERS)]
        seen.update(adapter.wait(h, WAIT) for h in handles)
        if time.monotonic() > deadline:
            raise TimeoutError(f"only {len(seen)} workers made their payload in {WAIT:g} s")
