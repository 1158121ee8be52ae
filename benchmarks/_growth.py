"""How cost grows: rows that measure what one more pending task costs (the issue's "how cost grows").

* pending: the parent's memory per future submitted and not yet run. A fresh interpreter opens the
  pool, keeps every worker busy with a task that waits for a file, reads its own memory, submits
  ``plan.pending`` no-ops one by one, reads it again, and divides the growth by the count. The
  workers are then killed and the interpreter exits at once (nothing is waited for).
"""

from __future__ import annotations

from _measure import Session, _script, run_python


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
