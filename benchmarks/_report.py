"""The report of benchmarks/run.py: the header, the Markdown tables and the notes.

Tables hold medians over rounds; a pool that failed in some rounds gets a "*", one that never
produced a value "n/a", and a row that does not apply to a column "-".
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import shlex
import statistics
import sys
from typing import NamedTuple

import _growth
import _peers
from _measure import Plan
from _stream import API as STREAM_API

COLUMNS = ["parallelize", "ppe", "mp", "loky", "pebble", "mpire", "bare"]
LABELS = {
    "parallelize": "parallelize",
    "ppe": "ProcessPoolExecutor",
    "mp": "multiprocessing.Pool",
    "loky": "loky",
    "pebble": "pebble",
    "mpire": "mpire",
    "bare": "bare pipe",
}
PEERS = ["ppe", "mp", "loky", "pebble", "mpire"]


class Row(NamedTuple):
    key: str
    group: str
    label: str
    higher_is_better: bool
    digits: int
    columns: frozenset[str] = frozenset(COLUMNS)
    versus: str = ""  # another parallelize row this one is compared with (the same work, another form)


class Results:
    def __init__(self) -> None:
        self.values: dict[tuple[str, str], list[float]] = {}
        self.failures: dict[tuple[str, str], str] = {}
        self.unavailable: dict[str, str] = {}  # column -> why (not installed)
        self.given_up: dict[tuple[str, str], str] = {}  # (group, column) -> why
        self.row_failed: set[tuple[str, str]] = set()  # (row, column) failed alone: not tried again
        self.notes: list[str] = []
        self.interrupted = False

    def add(self, row: str, column: str, value: float) -> None:
        self.values.setdefault((row, column), []).append(value)

    def fail(self, row: str, column: str, why: str) -> None:
        self.failures.setdefault((row, column), why)

    def median(self, row: str, column: str) -> float | None:
        values = self.values.get((row, column))
        return statistics.median(values) if values else None


def _fmt(value: float, digits: int) -> str:
    return f"{value:,.{digits}f}"


def brief(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"


def _rounds(count: int) -> str:
    return f"{count} round{'' if count == 1 else 's'}"


def _version(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def header(plan: Plan, columns: list[str], groups: list[str]) -> list[str]:
    cpus = os.cpu_count()
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else cpus
    methods = []
    for column in columns:
        if column == "bare":
            methods.append("bare pipe: forkserver")
            continue
        adapter = _peers.make_for_rows(column)
        own = _peers.make(column).start_method
        method = adapter.start_method + (
            "" if own == adapter.start_method else f" (its own default here: {own})"
        )
        methods.append(f"{LABELS[column]}: {method}")
    versions = [f"{name} {_version(name)}" for name in ("parallelize", "loky", "pebble", "mpire", "numpy")]
    return [
        "# parallelize benchmarks",
        "",
        f"- command: `{shlex.join(sys.orig_argv)}` (in `{os.getcwd()}`)",
        f"- Python {platform.python_version()} ({platform.python_implementation()}) on "
        f"{platform.platform()}; {cpus} CPUs, {usable} usable",
        f"- {plan.mode} mode: {_rounds(plan.rounds)}, interleaved; {_peers.WORKERS} workers per pool; "
        f"rows: {', '.join(groups)}",
        f"- start methods (rows measured in this process): {'; '.join(methods)}",
        f"- multiprocessing's default start method here: {_peers.mp_default_method()}",
        f"- versions: {', '.join(versions)}",
    ]


def table(rows: list[Row], columns: list[str], results: Results) -> list[str]:
    peers = [c for c in columns if c in PEERS]
    head = ["row", *(LABELS[c] for c in columns), "best peer", "parallelize / best peer"]
    body = []
    for row in rows:
        cells = [row.label]
        for column in columns:
            cells.append(_cell(row, column, results))
        best = _best_peer(row, peers, results)
        ours = results.median(row.key, "parallelize")
        if best is None or ours is None:
            cells += ["-", "-"]
        else:
            ratio = ours / best[1]
            better = ratio > 1 if row.higher_is_better else ratio < 1
            cells += [LABELS[best[0]], f"{ratio:.2f} ({'better' if better else 'worse'})"]
        body.append(cells)
    return _markdown(head, body)


def ratios(rows: list[Row], columns: list[str], results: Results) -> list[str]:
    peers = [c for c in columns if c in PEERS and any(col == c for _, col in results.values)]
    head = ["row", *(f"vs {LABELS[c]}" for c in peers)]
    body = []
    for row in rows:
        ours = results.median(row.key, "parallelize")
        if ours is None or not any(p in row.columns for p in peers):
            continue
        cells = [row.label]
        for peer in peers:
            theirs = results.median(row.key, peer)
            cells.append("-" if theirs is None or not theirs else f"{ours / theirs:.2f}")
        body.append(cells)
    return _markdown(head, body) if body else []


def side_by_side(rows: list[Row], results: Results) -> list[str]:
    """parallelize's own forms of one operation, each against the form it should match.

    The cost ratio is the median of the rounds' own ratios: both forms run in the same session of
    each round, so a round the machine was busy in slows both and cancels out.
    """
    labels = {row.key: row.label for row in rows}
    head = ["row", "parallelize", "compared with", "parallelize there", "cost ratio"]
    body = []
    for row in rows:
        ours = results.values.get((row.key, "parallelize"), [])
        theirs = results.values.get((row.versus, "parallelize"), [])
        pairs = [(a, b) for a, b in zip(ours, theirs, strict=False) if a > 0 and b > 0]
        if not row.versus or not pairs or len(ours) != len(theirs):
            continue
        cost = statistics.median(b / a if row.higher_is_better else a / b for a, b in pairs)
        cells = [row.label, _fmt(statistics.median(ours), row.digits), labels.get(row.versus, row.versus)]
        body.append([*cells, _fmt(statistics.median(theirs), row.digits), f"{cost:.2f}"])
    return _markdown(head, body) if body else []


def _cell(row: Row, column: str, results: Results) -> str:
    if column not in row.columns:
        return "-"
    values = results.values.get((row.key, column))
    if not values:
        return "n/a"
    text = _fmt(statistics.median(values), row.digits)
    return text if (row.key, column) not in results.failures else text + " *"


def _best_peer(row: Row, peers: list[str], results: Results) -> tuple[str, float] | None:
    found = [(p, v) for p in peers if (v := results.median(row.key, p)) is not None and v > 0]
    if not found:
        return None
    return (max if row.higher_is_better else min)(found, key=lambda pv: pv[1])


def _markdown(head: list[str], body: list[list[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in [head, *body]) for i in range(len(head))]

    def line(cells: list[str]) -> str:
        padded = [
            c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ]
        return "| " + " | ".join(padded) + " |"

    rule = "|" + "|".join("-" * (w + 1) + (":" if i else "-") for i, w in enumerate(widths)) + "|"
    return [line(head), rule, *(line(cells) for cells in body)]


def verdict(rows: list[Row], columns: list[str], results: Results) -> list[str]:
    peers = [c for c in columns if c in PEERS]
    behind = []
    for row in rows:
        best, ours = _best_peer(row, peers, results), results.median(row.key, "parallelize")
        if best is None or ours is None:
            continue
        factor = ours / best[1] if not row.higher_is_better else best[1] / ours
        if factor > 1:
            behind.append((factor, f"{row.label}: {factor:.2f}x behind {LABELS[best[0]]}"))
    if not behind:
        return ["parallelize is at least as good as the best peer on every row measured."]
    return [
        "parallelize trails the best peer on:",
        *(f"- {text}" for _, text in sorted(behind, reverse=True)),
    ]


def notes(rows: list[Row], columns: list[str], plan: Plan, results: Results) -> list[str]:
    groups = {row.group for row in rows}
    lines = [
        f"Medians over {_rounds(plan.rounds)}; `-` means the row does not apply. Ratios are parallelize "
        "/ peer in the row's unit: below 1 is better for times and memory, above 1 for rates.",
    ]
    if any(row.versus for row in rows):
        lines.append(
            "Side by side: the cost per call of one form over the other's (1.10 = 10% slower), the "
            "median of the rounds' ratios; both forms run in the same session, taking turns (round trips "
            "call by call, submits a quarter of the calls at a time in the order A B B A B A A B, "
            "maps with and without progress= whole, in that same order, the bar drawn on os.devnull), "
            "2 workers each."
        )
    if "transfer" in groups:
        lines.append(
            f"MB/s counts 10^6 bytes; the payload is {plan.payload // 2**20} MiB. Result rows return a "
            "payload the worker made before the clock started."
        )
    if "map" in groups:
        apis = "; ".join(
            f"{LABELS[c]}: {_peers.make(c).map_api(plan.map_items)}" for c in columns if c in _peers.ADAPTERS
        )
        lines.append(f"Map APIs: {apis}; bare pipe: pickled batches of the same size as multiprocessing's.")
    lines += _growth_notes(groups, plan)
    if "cold" in groups:
        defaults = ", ".join(
            f"{LABELS[c]} {_peers.make(c).start_method}" for c in columns if c in _peers.ADAPTERS
        )
        lines.append(
            f"Cold rows: each run is a fresh `python -c` script that imports the pool, starts it and waits "
            f"for one no-op; shutdown is not timed. Default start methods: {defaults}; bare pipe: "
            "`os.fork` + `os.pipe` (default row), one forkserver child (forkserver row)."
        )
    if "rss" in groups:
        lines.append(
            "Memory rows: a fresh interpreter starts the pool on forkserver, runs a task on every worker, "
            "then reads /proc/<pid>/status (VmRSS) and /proc/<pid>/smaps_rollup (USS = private pages); "
            "mean of the 2 workers."
        )
    if "cold" in groups:
        lines.append(
            "Cold decorated row: `from parallelize import parallel`, a function of a module decorated with "
            "a plain `@parallel` (benchmarks/_decorated_tasks.py), its first result on the default pool "
            f"(PARALLELIZE_WORKERS={_peers.WORKERS}); a peer's figure there is its forkserver row."
        )
    if "pending" in groups:
        lines.append(
            "Pending rows: a fresh interpreter keeps every worker busy, then submits the no-ops one by one; "
            "the growth of its own VmRSS and USS over that loop, divided by the count (the list of "
            "handles, 8 bytes each, included for every pool)."
        )
    lines += results.notes
    for column, why in results.unavailable.items():
        lines.append(f"n/a: {LABELS[column]}: {why}.")
    reasons: dict[tuple[str, str], list[str]] = {}
    for (row, column), why in results.failures.items():
        if column not in results.unavailable:
            reasons.setdefault((column, why), []).append(row)
    for (column, why), keys in reasons.items():
        partial = any(results.values.get((key, column)) for key in keys)
        mark = "* (failed in some rounds)" if partial else "n/a"
        lines.append(f"{mark}: {LABELS[column]}, {', '.join(keys)}: {why}")
    if results.interrupted:
        lines.append("Interrupted: the medians cover the rounds that finished.")
    return [f"- {line}" for line in lines]


def _growth_notes(groups: set[str], plan: Plan) -> list[str]:
    grow, lines = _growth.growth(plan), []
    capped = [
        f"{group} {min(plan.rounds, most)}"
        for group, most in _growth.ROUNDS.items()
        if group in groups and most < plan.rounds
    ]
    if capped:
        lines.append(f"Heavy groups run fewer rounds (their medians are over those): {', '.join(capped)}.")
    if "map" in groups:
        lines.append(
            f"The {_growth.map_few_items(plan):,}-item map row is measured as the map row (the same APIs, "
            "chunk sizes computed the same way for its length), in a pool of its own."
        )
    if "threads" in groups:
        lines.append(
            "Threads rows: one warm pool shared by the threads. Submit: each thread submits its share one "
            "by one, then waits for its own; tasks/s from the release of all threads to the last result. "
            f"p99: each thread calls `submit(noop, x).result()` one call at a time ({grow.thread_trips:,} "
            "calls in all, shared among the threads), the 99th percentile over every call: the latency a "
            "caller sees while the others use the pool too (a batch submitted at once would time the queue)."
        )
    if "stream" in groups:
        apis = "; ".join(f"{LABELS[c]}: {api}" for c, api in STREAM_API.items())
        lines.append(
            f"Stream rows: a fresh interpreter per pool maps `x * 2` over a generator of "
            f"{grow.stream_items:,} ints, results consumed one by one; peak RSS growth over the map (VmHWM, "
            f"reset before it). APIs: {apis}; C = {_growth.STREAM_CHUNK:,} (their default of 1 sends a "
            f"message per item). A pool whose RSS grows past {_growth.STREAM_CAP:,} MiB is stopped (n/a); "
            f"one still mapping after {grow.stream_seconds:g} s is stopped and reported for the items it "
            "mapped (*); neither is run again in later rounds."
        )
    if "big" in groups:
        lines.append(
            "Big rows: a fresh interpreter per pool sends `bytes` arguments of each size once, smallest "
            "first, to a warm pool (a function returning their length); the copy rows are one "
            "`bytearray(payload)` of that size, the reference the transfer rows are measured against."
        )
    if "pool" in groups:
        lines.append(
            "Whole-pool memory: a fresh interpreter starts the pool and runs a task on every worker, then "
            "sums USS over every process descended from it (/proc), and counts them; parallelize as a "
            "program using it does (`from parallelize import parallel`, a `@parallel` function of a module, "
            f"the default pool, PARALLELIZE_WORKERS={_peers.WORKERS}), the peers on forkserver."
        )
    return lines


def report(plan: Plan, rows: list[Row], columns: list[str], results: Results) -> list[str]:
    lines = ["", "## Results", "", *table(rows, columns, results), ""]
    relative = ratios(rows, columns, results)
    if relative:
        lines += ["### parallelize / each peer", "", *relative, ""]
    if "parallelize" in columns:
        lines += [*verdict(rows, columns, results), ""]
        pairs = side_by_side(rows, results)
        if pairs:
            lines += ["### parallelize's forms side by side", "", *pairs, ""]
    lines += ["### Notes", "", *notes(rows, columns, plan, results)]
    return lines
