"""How cost grows: the rows of the performance issue's "how cost grows" list, and their sizes.

* pending: the parent's memory per future submitted and not yet run. A fresh interpreter opens the
  pool, keeps every worker busy with a task that waits for a file, reads its own memory, submits
  ``plan.pending`` no-ops one by one, reads it again, and divides the growth by the count. The
  workers are then killed and the interpreter exits at once (nothing is waited for).
* stream: a map over a generator of ``stream_items`` ints (10 million in a full run), consumed as
  it comes; the peak growth of the parent's RSS over the map, and items/s. Each pool runs in a
  fresh interpreter of its own process group (see _stream.py): one whose RSS grows past
  ``STREAM_CAP`` is stopped there and reported n/a, and one still mapping after ``stream_seconds``
  is stopped and reported from the items it mapped.
* big (_big.py), threads (_threads.py), pool (_tree.py): bytes arguments of growing size, submitting
  threads, and the memory of the whole process tree a pool starts.
* map_few: the map row on a tenth of its items (20,000 in a full run), where adaptive chunking has
  the least room to ramp up; measured exactly as the map row.

The heavy groups run fewer rounds than the others (``ROUNDS``): a 1 GiB argument or a 10-million
item map per pool and round would double the run's time, and their figures (memory above all) vary
little from round to round.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from typing import Any, NamedTuple

from _measure import HERE, Plan, Session, _script, child_env, measure_map, run_python


class Growth(NamedTuple):
    """The sizes of the growth rows in one mode of the run."""

    stream_items: int
    stream_seconds: float  # a pool still mapping then is stopped (mpire and pebble take minutes)
    big: tuple[int, ...]  # argument sizes, bytes
    threads: tuple[int, ...]  # submitting threads
    thread_submits: int  # no-ops submitted in all, shared among the threads
    thread_trips: int  # round trips in all, shared among the threads


GROWTH = {
    "full": Growth(10_000_000, 20.0, (64 * 2**20, 256 * 2**20, 2**30), (1, 4, 16), 5_000, 2_000),
    "quick": Growth(1_000_000, 10.0, (16 * 2**20, 64 * 2**20, 256 * 2**20), (1, 4, 16), 2_000, 800),
    "smoke": Growth(20_000, 5.0, (2**20, 2 * 2**20, 4 * 2**20), (1, 4, 16), 160, 96),
}
# pending: 1,000,000 futures per pool and round took about 90 s a round, and gave the same bytes
# per future in every round of every run so far.
ROUNDS = {"stream": 2, "big": 2, "pending": 2, "threads": 3, "pool": 3}  # at most; --rounds lower still wins
STREAM_CAP = 1024  # MiB of parent RSS growth at which a pool's streaming map is stopped
STREAM_CHUNK = 1000  # the peers' chunksize over a generator (they have no length to divide)


def growth(plan: Plan) -> Growth:
    return GROWTH[plan.mode]


def map_few_items(plan: Plan) -> int:
    return plan.map_items // 10


# -- fresh interpreters in a process group of their own ---------------------------------------------


def run_group_child(code: str, timeout: float, env: dict[str, str] | None = None) -> Any:
    """Like run_python, but the child leads a process group that is killed whatever happens, so
    the workers, forkserver and tracker of a pool stopped half-way go with it."""
    # Files, not pipes: the pool's processes inherit the child's stdout, and a pipe would stay open
    # (no end of file) while they live on after the child itself has gone.
    with tempfile.TemporaryFile("w+") as stdout_file, tempfile.TemporaryFile("w+") as stderr_file:
        child = subprocess.Popen(
            [sys.executable, "-c", code],
            env={**child_env(), **(env or {})},
            stdout=stdout_file,
            stderr=stderr_file,
            text=True,
            cwd=HERE,
            start_new_session=True,
        )
        late = False
        try:
            child.wait(timeout)
        except subprocess.TimeoutExpired:
            late = True
        finally:
            child.kill()
            child.wait()
            _end_group(child.pid)
        stdout_file.seek(0)
        stderr_file.seek(0)
        stdout, stderr = stdout_file.read(), stderr_file.read()
    for line in reversed(stdout.splitlines()):
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT ") :])
    if late:
        raise RuntimeError(f"the child gave no result within {timeout:g} s")
    tail = (stderr.strip().splitlines() or ["no output"])[-1]
    raise RuntimeError(f"the child exited with {child.returncode}: {tail}")


def _end_group(group: int, grace: float = 2.0) -> None:
    """Give what is left of the group ``grace`` seconds to go by itself (a resource tracker unlinks
    the shared memory of a parent that died), then kill it."""
    deadline = time.monotonic() + grace
    while _running_in(group) and time.monotonic() < deadline:
        time.sleep(0.02)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(group, signal.SIGKILL)


def _running_in(group: int) -> bool:
    """Whether a process of the group is still running (zombies, waiting to be reaped, are not)."""
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    state, _ppid, pgrp = f.read().rsplit(")", 1)[1].split()[:3]
            except (OSError, ValueError):
                continue  # gone meanwhile
            if int(pgrp) == group and state != "Z":
                return True
    return False


# -- pending ----------------------------------------------------------------------------------------


def pending_code(column: str, count: int) -> str:
    return (
        "import gc, os, tempfile\n"
        "import _peers\n"
        "from _bench_tasks import hold\n"
        "from _tasks import noop\n"
        f"pool = _peers.make_for_rows({column!r})\n"
        "pool.open()\n"
        "pool.warm()\n"
        "flag = os.path.join(tempfile.mkdtemp(), 'go')\n"
        "held = [pool.submit(hold, flag, 600) for _ in range(_peers.WORKERS)]\n"
        "gc.collect()\n"
        "before = _peers.memory_of(os.getpid())\n"
        f"handles = [pool.submit(noop, i) for i in range({count})]\n"
        "gc.collect()\n"
        "after = _peers.memory_of(os.getpid())\n"
        "report([before, after])\n"
        "for pid in pool.worker_pids():\n"
        "    os.kill(pid, 9)\n"
        "os._exit(0)\n"  # a million pending futures need no orderly goodbye
    )


def measure_pending(column: str, s: Session, out: dict[str, float]) -> None:
    if column == "bare":
        return
    count = s.plan.pending
    (rss_before, uss_before), (rss_after, uss_after) = run_python(_script(pending_code(column, count)), 600)
    out["pending_rss"] = (rss_after - rss_before) * 2**20 / count
    if uss_before is not None and uss_after is not None:
        out["pending_uss"] = (uss_after - uss_before) * 2**20 / count


# -- stream -----------------------------------------------------------------------------------------


def measure_stream(column: str, s: Session, out: dict[str, float]) -> None:
    if column == "bare" or "stream_rss" in s.skip:
        return  # a pool stopped in an earlier round is not run again: its figures would not change
    g = growth(s.plan)
    args = f"{column!r}, {g.stream_items}, {g.stream_seconds}, {STREAM_CAP}, {STREAM_CHUNK}"
    code = f"import _stream\n_stream.main({args})\n"
    got = run_group_child(_script(code), g.stream_seconds + 120)
    items, seconds = got["items"], got["seconds"]
    if got["status"] == "cap":
        why = (
            f"stopped when its RSS had grown past the {STREAM_CAP:,} MiB cap, {seconds:.1f} s and "
            f"{items:,} results in: its map reads the generator far ahead of the results"
        )
        s.failures["stream_rss"] = s.failures["stream_rate"] = why
        return
    out["stream_rss"] = got["peak"]
    out["stream_rate"] = items / seconds
    if got["status"] == "time":
        why = f"stopped after {seconds:.0f} s at {items:,} of {g.stream_items:,} items; figures for those"
        s.failures["stream_rss"] = s.failures["stream_rate"] = why


# -- map_few ----------------------------------------------------------------------------------------


def measure_maps(column: str, s: Session, out: dict[str, float]) -> None:
    """The map group: the map row on a tenth of the items (map_few), then the map row itself."""
    few: dict[str, float] = {}
    measure_map(column, Session(s.plan._replace(map_items=map_few_items(s.plan)), s.shared, s.notes), few)
    out["map_few"] = few["map"]
    measure_map(column, s, out)
