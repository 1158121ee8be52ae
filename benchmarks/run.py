"""parallelize beside the pools people use instead, measured in one run on this machine.

    python benchmarks/run.py                  # 7 rounds, the issue's sizes (about 15 minutes on 2 cores)
    python benchmarks/run.py --quick          # 3 rounds, smaller sizes (about 5 minutes)
    python benchmarks/run.py --rows roundtrip,map --pools parallelize,ppe --rounds 5
    python benchmarks/run.py --smoke          # 1 round, tiny sizes: does every row still run?

The peers come with the bench extra (`pip install -e '.[bench]'`); without them their columns say n/a.

Pools (2 workers each): parallelize, concurrent.futures.ProcessPoolExecutor (forkserver),
multiprocessing.Pool, loky (get_reusable_executor), pebble (ProcessPool) and mpire (WorkerPool),
each on its own default start method unless a row says otherwise, and a "bare pipe" column: hand-made
worker processes on bare pipes, the physical limit (see _baseline.py).

Rows (the performance issue's table):
  roundtrip  warm round trip of a no-op, one call at a time (and parallelize's @parallel forms:
             pool=p, and the plain decorator on the default pool, taking turns call by call)
  submit     submit many no-ops one by one, then wait for all (and the same two @parallel forms)
  threads    submit throughput and p99 round trip with 1, 4 and 16 submitting threads (_threads.py)
  map        map a cheap function over many small items with each pool's own map API (and
             parallelize's with progress=True against without, taking turns); the same map over a
             tenth of the items (20,000), where chunking has the least time to adapt
  stream     a map over a 10,000,000-item generator: peak parent RSS growth and items/s (_stream.py)
  transfer   a 64 MiB bytes / bytearray / memoryview / numpy argument, and result; memory copy;
             the first 64 MiB bytes argument and result of a fresh pool, each in a fresh interpreter
  big        64 MiB, 256 MiB and 1 GiB bytes arguments in one pool; a copy of each size (_big.py)
  cold       first result in a fresh interpreter: default start methods, then forkserver for all
  cpu        parallel efficiency of 50 ms pure-Python tasks: serial / (2 x parallel)
  rss        idle worker memory (VmRSS and private USS), forkserver for every pool
  pool       USS summed over every process the pool started: workers, forkserver, tracker (_tree.py)
  import     import time in a fresh interpreter, byte code cached
  pending    parent memory per future submitted and not yet run (how cost grows)

Rounds are interleaved: round 1 measures every pool once for a row, round 2 again, and so on, each
round starting with a different pool, so that machine noise hits all of them alike. The report shows
medians over rounds. The heavy groups run fewer rounds (_growth.ROUNDS: stream, big and pending 2,
threads and pool 3), which keeps a full run near 15 minutes; the stream and big rows run each pool in a
fresh interpreter of its own process group, the streaming map under a memory cap. In-process rows
use a fresh pool each time, warmed until every worker has run a task; its start-up is not timed. A
pool that is not installed or fails shows "n/a" (the notes say why). Progress goes to stderr; the
report (Markdown) to stdout.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))  # workers import task modules by name

import _big
import _growth
import _growth_rows
import _measure
import _peers
import _threads
import _tree
from _bench_tasks import KINDS
from _measure import PLANS, Overrun, Plan, Session
from _report import COLUMNS, LABELS, Results, Row, brief, header, report

MODULES = {"loky": "loky", "pebble": "pebble", "mpire": "mpire"}  # optional peers
GROUPS = [
    *("roundtrip", "submit", "threads", "map", "stream", "transfer", "big"),
    *("cold", "cpu", "rss", "pool", "import", "pending"),
]
OWNERS = {"pending": _growth, "stream": _growth, "big": _big, "threads": _threads, "pool": _tree}
MEASURE: dict[str, Callable[[str, Session, dict[str, float]], None]] = {
    group: getattr(OWNERS.get(group, _measure), f"measure_{group}") for group in GROUPS
}
MEASURE["map"] = _growth.measure_maps  # the map row, and the same on a tenth of the items
ONLY_OURS = {"parallelize"}


def rows_for(plan: Plan) -> list[Row]:
    mib = plan.payload // 2**20
    ours = frozenset(ONLY_OURS)
    no_bare = frozenset(COLUMNS) - {"bare"}
    calls = f"{plan.submits // 4 * 4:,} times"
    rows = [
        Row("rt", "roundtrip", "warm round trip, `submit(noop, x).result()` (µs)", False, 0),
        Row("rt_dec", "roundtrip", "warm round trip, `@parallel(pool=p)` function (µs)", False, 0, ours),
        Row(
            "rt_default",
            "roundtrip",
            "warm round trip, plain `@parallel` function, default pool (µs)",
            False,
            0,
            ours,
            "rt_dec",
        ),
        Row(
            "submit_few",
            "submit",
            f"submit {plan.submits // 10:,} no-ops one by one, then wait (tasks/s)",
            True,
            0,
        ),
        Row("submit", "submit", f"submit {plan.submits:,} no-ops one by one, then wait (tasks/s)", True, 0),
        Row(
            "submit_dec",
            "submit",
            f"call a `@parallel(pool=p)` no-op {calls}, then wait (calls/s)",
            True,
            0,
            ours,
        ),
        Row(
            "submit_default",
            "submit",
            f"call a plain `@parallel` no-op {calls} on the default pool, then wait (calls/s)",
            True,
            0,
            ours,
            "submit_dec",
        ),
        *_growth_rows.threads_rows(plan),
        Row("map_few", "map", f"map `x * 2` over {_growth.map_few_items(plan):,} ints (items/s)", True, 0),
        Row("map", "map", f"map `x * 2` over {plan.map_items:,} ints (items/s)", True, 0),
        Row("map_plain", "map", "the same map, no progress, taking turns (items/s)", True, 0, ours),
        Row(
            "map_progress",
            "map",
            "the same map with `progress=True`, a tqdm bar (items/s)",
            True,
            0,
            ours,
            "map_plain",
        ),
        *_growth_rows.stream_rows(plan),
    ]
    for direction, what in (("arg", "argument, returns its length"), ("res", "result")):
        for kind in KINDS:
            label = f"{mib} MiB {kind} {what} (MB/s)"
            rows.append(Row(f"{direction}_{kind}", "transfer", label, True, 0))
    rows += [
        Row("copy", "transfer", f"copy {mib} MiB into fresh memory, one process (MB/s)", True, 0, {"bare"}),
        Row("first_arg", "transfer", f"first {mib} MiB bytes argument in a fresh pool (MB/s)", True, 0),
        Row("first_res", "transfer", f"first {mib} MiB bytes result in a fresh pool (MB/s)", True, 0),
        Row("first_arg_ratio", "transfer", "the same first argument / one copy in its interpreter", True, 2),
        Row("first_res_ratio", "transfer", "the same first result / one copy in its interpreter", True, 2),
        *_growth_rows.big_rows(plan),
        Row(
            "cold_default",
            "cold",
            "cold: first result, fresh interpreter, default start method (ms)",
            False,
            0,
        ),
        Row("cold_fs", "cold", "cold: first result, fresh interpreter, forkserver (ms)", False, 0),
        Row(
            "cold_dec",
            "cold",
            "cold: `from parallelize import parallel`, first result of a plain `@parallel` call "
            "(peers: their forkserver row) (ms)",
            False,
            0,
            no_bare,
        ),
        Row(
            "cpu",
            "cpu",
            f"CPU-bound efficiency, {plan.cpu_tasks} x {plan.cpu_seconds * 1000:.0f} ms tasks, 2 workers (%)",
            True,
            0,
        ),
        Row("rss", "rss", "idle worker RSS, forkserver (MiB)", False, 1),
        Row("uss", "rss", "idle worker private memory (USS), forkserver (MiB)", False, 1),
        Row("rss_dec", "rss", "idle worker RSS when the program imports `parallel` (MiB)", False, 1, ours),
        Row("uss_dec", "rss", "idle worker USS when the program imports `parallel` (MiB)", False, 1, ours),
        *_growth_rows.pool_rows(),
        Row("import", "import", "import time (ms)", False, 1, no_bare),
        Row("import_dec", "import", "import time, `from parallelize import parallel` (ms)", False, 1, ours),
        Row(
            "pending_rss",
            "pending",
            f"parent memory per pending future, {plan.pending:,} submitted, none run (RSS, bytes)",
            False,
            0,
            no_bare,
        ),
        Row("pending_uss", "pending", "the same, private memory (USS, bytes)", False, 0, no_bare),
    ]
    return [row._replace(columns=frozenset(row.columns)) for row in rows]


# -- running ----------------------------------------------------------------------------------------


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def run_group(group: str, rows: list[Row], columns: list[str], plan: Plan, results: Results) -> None:
    """Every round of one group: each pool once per round, each round starting with another pool."""
    started = time.monotonic()
    shared = setup_group(group, columns, plan, results)
    group_rows = [row for row in rows if row.group == group]
    rounds = min(plan.rounds, _growth.ROUNDS.get(group, plan.rounds))
    for index in range(rounds):
        if group == "cpu":
            shared["serials"].append(_measure.serial_seconds(shared["turns"], plan.cpu_tasks))
        shift = index % len(columns)
        said = []
        for column in columns[shift:] + columns[:shift]:
            if column in results.unavailable or (group, column) in results.given_up:
                continue
            out = measure_one(group, column, index, group_rows, plan, shared, results)
            first = group_rows[0].key
            said.append(f"{LABELS[column]} {brief(out[first]) if first in out else 'n/a'}")
        progress(f"[{group}] round {index + 1}/{rounds}: {', '.join(said)}")
    if group == "cpu":
        # Efficiency against the median serial time: one slow serial run must not skew its round.
        serial = statistics.median(shared["serials"])
        for column in columns:
            seconds = results.values.get(("cpu", column))
            if seconds:
                results.values["cpu", column] = [100 * serial / (_peers.WORKERS * t) for t in seconds]
        results.notes.append(
            f"CPU row: {shared['turns']:,} loop turns per task (about {plan.cpu_seconds * 1000:.0f} ms "
            f"here); serial time for {plan.cpu_tasks} tasks, median {serial:.2f} s, timed on "
            f"{max(1, plan.cpu_tasks // 4)} of them run one by one in one bare-pipe child at the start "
            "of every round; the bare pipe column shows what two processes achieve on this machine."
        )
    progress(f"[{group}] done in {time.monotonic() - started:.0f} s")


def setup_group(group: str, columns: list[str], plan: Plan, results: Results) -> dict[str, Any]:
    """What every measurement of the group shares, made once, untimed."""
    shared: dict[str, Any] = {}
    if group == "transfer":
        shared["payloads"] = _measure.payloads(plan.payload)
        if "numpy" not in shared["payloads"]:
            for column in columns:
                for direction in ("arg", "res"):
                    results.fail(f"{direction}_numpy", column, "numpy is not installed")
    elif group == "cpu":
        shared["turns"] = _measure.calibrate(plan.cpu_seconds)
        shared["serials"] = []
    elif group == "import":
        _measure.warm_imports()
    return shared


def measure_one(
    group: str,
    column: str,
    index: int,
    group_rows: list[Row],
    plan: Plan,
    shared: dict[str, Any],
    results: Results,
) -> dict[str, float]:
    """One pool, one round of one group; whatever fails becomes that pool's n/a."""
    session = Session(plan, shared, results.notes)
    session.skip = {row for row, col in results.row_failed if col == column}
    out: dict[str, float] = {}
    error = None
    try:
        MEASURE[group](column, session, out)
    except Overrun:
        error = f"ran past its deadline in round {index + 1}; not tried again"
        results.given_up[group, column] = error
    except ImportError as exc:
        results.unavailable[column] = f"not installed ({exc})"
        return out
    except Exception as exc:  # noqa: BLE001 - one pool's failure is its n/a, not the end of the run
        error = f"{type(exc).__name__}: {exc}"
    for key, value in out.items():
        results.add(key, column, value)
    for key, why in session.failures.items():
        results.fail(key, column, why)
        results.row_failed.add((key, column))
    if error is not None:
        for row in group_rows:
            if column in row.columns and row.key not in out:
                results.fail(row.key, column, error)
    return out


# -- the report -------------------------------------------------------------------------------------

# -- command line -----------------------------------------------------------------------------------


def _choose(raw: str | None, allowed: list[str], aliases: dict[str, str], what: str) -> list[str]:
    if not raw:
        return list(allowed)
    chosen = []
    for name in (n.strip() for n in raw.split(",") if n.strip()):
        key = aliases.get(name.lower(), name.lower())
        if key not in allowed:
            raise SystemExit(f"unknown {what} {name!r}; choose from {', '.join(allowed)}")
        chosen.append(key)
    return [k for k in allowed if k in chosen]


def parse(argv: list[str] | None = None) -> tuple[Plan, list[str], list[str], str | None]:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="3 rounds and smaller sizes")
    size.add_argument("--smoke", action="store_true", help="1 round and tiny sizes (a check that rows run)")
    parser.add_argument("--rounds", type=int, help="rounds (default 7; --quick 3; --smoke 1)")
    parser.add_argument("--rows", help=f"comma-separated, from: {', '.join(GROUPS)} (default all)")
    parser.add_argument("--pools", help=f"comma-separated, from: {', '.join(COLUMNS)} (default all)")
    parser.add_argument("--json", metavar="PATH", help="also write every measurement to PATH")
    args = parser.parse_args(argv)
    plan = PLANS["smoke" if args.smoke else "quick" if args.quick else "full"]
    if args.rounds is not None:
        if args.rounds < 1:
            parser.error("--rounds must be at least 1")
        plan = plan._replace(rounds=args.rounds)
    aliases = {label.lower(): key for key, label in LABELS.items()}
    aliases.update({"multiprocessing": "mp", "bare pipe": "bare", "concurrent.futures": "ppe"})
    groups = _choose(args.rows, GROUPS, {}, "row")
    columns = _choose(args.pools, COLUMNS, aliases, "pool")
    return plan, groups, columns, args.json


def main(argv: list[str] | None = None) -> None:
    plan, groups, columns, json_path = parse(argv)
    _measure.install_alarm()
    results = Results()
    for column, module in MODULES.items():
        if column in columns and importlib.util.find_spec(module) is None:
            results.unavailable[column] = f"not installed (no module named {module!r})"
    print("\n".join(header(plan, columns, groups)), flush=True)
    rows = [row for row in rows_for(plan) if row.group in groups]
    started = time.monotonic()
    try:
        for group in groups:
            run_group(group, rows, columns, plan, results)
    except KeyboardInterrupt:
        results.interrupted = True
    progress(f"all rows done in {time.monotonic() - started:.0f} s")
    rows = [row for row in rows if any(c in row.columns for c in columns)]
    print("\n".join(report(plan, rows, columns, results)), flush=True)
    if json_path:
        dump = {
            "plan": plan._asdict(),
            "growth": _growth.growth(plan)._asdict(),
            "values": {f"{r}/{c}": v for (r, c), v in results.values.items()},
            "failures": {f"{r}/{c}": v for (r, c), v in results.failures.items()},
            "unavailable": results.unavailable,
        }
        with contextlib.suppress(OSError), open(json_path, "w") as f:
            json.dump(dump, f, indent=1)


if __name__ == "__main__":
    main()
