"""The pool row: the memory of every process a pool started, summed (workers, forkserver, tracker).

The rss rows read one idle worker; a pool also costs the processes around its workers: the
forkserver every worker is forked from, multiprocessing's resource tracker, a manager or a queue
feeder where a pool has one. A fresh interpreter starts the pool, has every worker run a task, then
walks /proc for every descendant of itself and sums their USS (private pages: what killing the
pool would give back; pages shared with the forkserver count once, in the forkserver), and their
count.

parallelize is run the way a program that uses ``@parallel`` runs it: ``from parallelize import
parallel``, a function of a module decorated with a plain ``@parallel``, called on the default
pool (PARALLELIZE_WORKERS=2), so that the forkserver and the workers import the decorators too.
The peers run their pool on forkserver, as in the rss rows; the bare pipe column is two bare-pipe
children on forkserver.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

from _growth import run_group_child
from _measure import _WORKERS_ENV, Session, _script


def descendants(root: int) -> list[int]:
    """Every process whose chain of parents leads to ``root``, from /proc (Linux)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue  # gone meanwhile
        ppid = int(stat[stat.rindex(")") + 2 :].split()[1])  # the name in parentheses may hold spaces
        children.setdefault(ppid, []).append(int(entry))
    found, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def main(column: str) -> None:
    """The child: start the pool, warm every worker, and print the sum over its process tree."""
    import _peers

    pool: Any = None  # held until the memory is read: a pool let go of may close its pipes
    if column == "parallelize":
        from _decorated_tasks import pid_after

        seen: set[int] = set()
        deadline = time.monotonic() + 60
        while len(seen) < _peers.WORKERS and time.monotonic() < deadline:
            seen.update(f.result(timeout=60) for f in [pid_after(0.02) for _ in range(2 * _peers.WORKERS)])
    elif column == "bare":
        from _baseline import BarePipes

        pool = BarePipes(_peers.WORKERS)
    else:
        pool = _peers.make(column, "forkserver")
        pool.open()
        pool.warm()
    memory = [_peers.memory_of(pid) for pid in descendants(os.getpid())]
    if any(uss is None for _, uss in memory):
        raise RuntimeError("no USS for some process of the pool (/proc/<pid>/smaps_rollup unreadable)")
    print("RESULT", json.dumps([sum(uss or 0 for _, uss in memory), len(memory)]), flush=True)


def measure_pool(column: str, s: Session, out: dict[str, float]) -> None:
    env = _WORKERS_ENV if column == "parallelize" else None
    out["pool_uss"], out["pool_procs"] = run_group_child(
        _script(f"import _tree\n_tree.main({column!r})\n"), 120, env
    )
