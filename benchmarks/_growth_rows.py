"""The report rows of the how-cost-grows groups (run.py's rows_for places them among the others)."""

from __future__ import annotations

from _growth import growth
from _measure import Plan
from _report import COLUMNS, Row

NO_BARE = frozenset(COLUMNS) - {"bare"}
BARE = frozenset({"bare"})


def threads_rows(plan: Plan) -> list[Row]:
    g, rows = growth(plan), []
    for threads in g.threads:
        callers = f"{threads} thread{'s' if threads > 1 else ''}"
        submitted = g.thread_submits // threads * threads
        rows += [
            Row(
                f"threads_submit_{threads}",
                "threads",
                f"submit {submitted:,} no-ops from {callers} (shared out), one by one, then wait (tasks/s)",
                True,
                0,
                NO_BARE,
            ),
            Row(
                f"threads_p99_{threads}",
                "threads",
                f"p99 round trip, {callers} calling `submit(noop, x).result()` one call at a time (µs)",
                False,
                0,
                NO_BARE,
            ),
        ]
    return rows


def stream_rows(plan: Plan) -> list[Row]:
    items = growth(plan).stream_items
    return [
        Row(
            "stream_rss",
            "stream",
            f"map over a {items:,}-item generator: peak growth of the parent's RSS (MiB)",
            False,
            1,
            NO_BARE,
        ),
        Row("stream_rate", "stream", "the same map over a generator (items/s)", True, 0, NO_BARE),
    ]


def big_rows(plan: Plan) -> list[Row]:
    rows = []
    for size in growth(plan).big:
        mib = size >> 20
        big = f"{mib} MiB" if size < 2**30 else f"{size >> 30} GiB"
        rows += [
            Row(f"big_{mib}", "big", f"{big} bytes argument, sizes in turn, one pool (MB/s)", True, 0),
            Row(
                f"bigcopy_{mib}",
                "big",
                f"copy {big} into fresh memory, `bytearray(payload)`, one process (MB/s)",
                True,
                0,
                BARE,
            ),
        ]
    return rows


def pool_rows() -> list[Row]:
    return [
        Row(
            "pool_uss",
            "pool",
            "USS of every process the pool started (workers, forkserver, tracker); parallelize: "
            "plain `@parallel`, peers: forkserver (MiB)",
            False,
            1,
        ),
        Row("pool_procs", "pool", "processes the pool started", False, 0),
    ]
