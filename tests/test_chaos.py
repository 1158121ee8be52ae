"""Chaos: thousands of cheap tasks on two workers, with crashes and hangs sprinkled among them.

Every future must end with the right outcome (a value, WorkerCrashed for a task that killed its
worker, TaskTimeout for one that hung past its limit), none may be left hanging, and the pool must
end at its configured size. A one-line summary goes to stderr (``pytest -s`` shows it).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import pytest

from parallelize import Future, Pool, TaskTimeout, WorkerCrashed, parallel
from tests import fault_tasks as ft
from tests.conftest import wait_until

WORKERS = 2
DEADLINE = 150.0  # seconds for all the chaos to resolve; it takes far less


def _modes(n: int, crash_every: int, hangers: list[int]) -> list[int]:
    """The mode of each task: a crash every ``crash_every`` tasks, hangs at ``hangers``."""
    modes = [ft.CRASH if i % crash_every == crash_every // 2 else ft.NORMAL for i in range(n)]
    for i in hangers:
        assert modes[i] == ft.NORMAL
        modes[i] = ft.HANG
    return modes


def _check(i: int, mode: int, outcome: Any) -> None:
    """The right outcome for task ``i``: its value, or the error its mode must cause."""
    if mode == ft.NORMAL:
        assert outcome == 2 * i + 1, f"task {i}"
    elif mode == ft.CRASH:
        assert type(outcome) is WorkerCrashed, f"task {i}: {outcome!r}"
        assert f"chaos({i}, 1)" in str(outcome)
        assert "exited with code 3" in str(outcome)
    else:
        assert type(outcome) is TaskTimeout, f"task {i}: {outcome!r}"
        assert f"chaos({i}, 2) ran past its time limit of 0.5 s" in str(outcome)


def _outcome(future: Future[Any], deadline: float) -> Any:
    """A future's value or exception, waiting no later than ``deadline`` (a hang fails the test)."""
    error = future.exception(timeout=max(0.0, deadline - time.monotonic()))
    return future.result() if error is None else error


def _regains_full_size(pool: Pool, tmp_path: Path) -> None:
    """A burst of normal tasks brings the pool back to exactly its size."""
    release = tmp_path / "release"
    burst = [pool.submit(ft.blocked_until, str(release), str(tmp_path / f"b{i}"), i) for i in range(4)]
    wait_until(lambda: len(pool.worker_pids()) == WORKERS, 30, f"the pool to regain {WORKERS} workers")
    release.touch()
    assert [f.result(timeout=30) for f in burst] == list(range(4))
    assert len(pool.worker_pids()) == WORKERS


def _report(kind: str, tasks: int, modes: list[int], resolved: int, wall: float) -> None:
    print(
        f"\nchaos ({kind}): {tasks} tasks on Pool({WORKERS}), {modes.count(ft.CRASH)} crashes and "
        f"{modes.count(ft.HANG)} hangs injected, {resolved} futures resolved, wall time {wall:.1f} s",
        file=sys.stderr,
    )


@pytest.mark.timeout(180)
def test_chaos_submit(tmp_path: Path) -> None:
    n = 20_000
    modes = _modes(n, crash_every=100, hangers=[1_234, 5_678, 9_012, 13_456, 17_890])
    started = time.monotonic()
    with Pool(WORKERS) as pool:
        futures = [
            pool.submit(ft.chaos, i, mode, timeout=0.5) if mode == ft.HANG else pool.submit(ft.chaos, i, mode)
            for i, mode in enumerate(modes)
        ]
        deadline = time.monotonic() + DEADLINE
        sizes = set()
        for i, (future, mode) in enumerate(zip(futures, modes, strict=True)):
            if i % 50 == 0:
                sizes.add(len(pool.worker_pids()))
            _check(i, mode, _outcome(future, deadline))
        wall = time.monotonic() - started
        resolved = sum(f.done() for f in futures)
        assert resolved == n
        assert max(sizes) <= WORKERS
        _regains_full_size(pool, tmp_path)
    _report("submit", n, modes, resolved, wall)


@pytest.mark.timeout(180)
def test_chaos_map(tmp_path: Path) -> None:
    n = 5_000
    modes = _modes(n, crash_every=100, hangers=[321, 1_234, 2_345, 3_456, 4_567])
    started = time.monotonic()
    # Every item has a 0.5 s limit, and a worker replacing a crashed one imports the tasks:
    # the initializer does that before the worker takes its first item.
    with Pool(WORKERS, initializer=ft.warm) as pool:
        chaos = parallel(pool=pool)(ft.chaos)
        it = chaos.map(range(n), modes, timeout=0.5)
        resolved = 0
        for i, mode in enumerate(modes):
            outcome: Any
            try:
                outcome = next(it)
            except (WorkerCrashed, TaskTimeout) as exc:
                outcome = exc
            _check(i, mode, outcome)
            resolved += 1
        with pytest.raises(StopIteration):
            next(it)
        wall = time.monotonic() - started
        _regains_full_size(pool, tmp_path)
    _report("map", n, modes, resolved, wall)
