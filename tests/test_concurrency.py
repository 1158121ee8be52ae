"""Many threads at once: submitting, creating pools lazily, awaiting; and when nothing starts.

Threads meet at a ``threading.Barrier`` before they touch the pool, so they really do arrive
together; every join and wait has a timeout.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import parallelize
from parallelize import Pool, _config

from . import lifecycle_tasks, workers
from .conftest import wait_until

RESULT_TIMEOUT = 30
THREADS = 8

pytestmark = pytest.mark.timeout(60)


def _dispatcher_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "parallelize-dispatcher" and t.is_alive()]


def _together(count: int, job: Callable[[int], Any]) -> list[Any]:
    """Run ``job(i)`` in ``count`` threads released at the same moment; return results in order.

    An exception in any thread fails the test with that exception.
    """
    barrier = threading.Barrier(count, timeout=RESULT_TIMEOUT)
    results: list[Any] = [None] * count
    errors: list[BaseException] = []

    def run(index: int) -> None:
        try:
            barrier.wait()
            results[index] = job(index)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the test's thread below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,), name=f"submitter-{i}") for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=RESULT_TIMEOUT * 2)
    assert not any(t.is_alive() for t in threads), "a submitting thread did not finish"
    if errors:
        raise errors[0]
    return results


def test_eight_threads_submit_a_thousand_tasks_each() -> None:
    parallelize.configure(workers=2)
    per_thread = 1000

    def submit_all(index: int) -> list[int]:
        numbers = range(index * per_thread, (index + 1) * per_thread)
        futures = [workers.decorated_square(n) for n in numbers]
        return [f.result(timeout=RESULT_TIMEOUT) for f in futures]

    results = _together(THREADS, submit_all)

    for index, squares in enumerate(results):
        assert squares == [n * n for n in range(index * per_thread, (index + 1) * per_thread)]
    assert sum(len(r) for r in results) == THREADS * per_thread
    assert len(_dispatcher_threads()) == 1


@pytest.mark.parametrize("round_", range(3))
def test_a_fresh_default_pool_is_created_once_under_a_stampede(round_: int) -> None:
    parallelize.configure(workers=2)
    assert _config._default_pool is None  # the leak check shut the last one down

    def first_call(_: int) -> tuple[object, int]:
        future = lifecycle_tasks.decorated_pid()
        return _config._default_pool, future.result(timeout=RESULT_TIMEOUT)

    results = _together(THREADS, first_call)

    pool = _config._default_pool
    assert pool is not None
    assert all(seen is pool for seen, _ in results)
    # A second pool created in the race would have its own dispatcher and its own workers.
    assert len(_dispatcher_threads()) == 1
    ran_on = {pid for _, pid in results}
    assert ran_on <= set(pool.worker_pids())
    assert len(pool.worker_pids()) <= 2


@pytest.mark.parametrize("backend", ["process", "thread"])
def test_sixteen_first_calls_at_once_resolve_one_default_backend(backend: str) -> None:
    # The default backend is resolved by the first call and then read without a lock: threads
    # racing through the first call must all end up with the one backend the winner built.
    parallelize.configure(workers=2, backend=backend)
    assert _config._resolved is None

    def first_call(_: int) -> tuple[object, object]:
        square = workers.decorated_square(3).result(timeout=RESULT_TIMEOUT)
        return _config.default_backend(), square

    results = _together(16, first_call)

    chosen = {id(seen) for seen, _ in results}
    assert len(chosen) == 1
    assert all(square == 9 for _, square in results)
    pool = _config._default_pool
    # A Pool has a backend (the seam's implementation); the default is that backend.
    expected = pool._backend if backend == "process" and pool is not None else _config._thread_backend
    assert results[0][0] is expected is _config._resolved
    assert len(_dispatcher_threads()) == (1 if backend == "process" else 0)


@pytest.mark.parametrize("round_", range(3))
def test_a_fresh_explicit_pool_starts_once_under_a_stampede(round_: int) -> None:
    with Pool(2) as pool:
        results = _together(
            THREADS, lambda i: (i, pool.submit(workers.getpid).result(timeout=RESULT_TIMEOUT))
        )
        assert len(_dispatcher_threads()) == 1
        assert {pid for _, pid in results} <= set(pool.worker_pids())
        assert len(pool.worker_pids()) <= 2
        assert pool.state is parallelize.PoolState.RUNNING


def test_asyncio_gather_of_500_futures() -> None:
    parallelize.configure(workers=2)

    async def main() -> list[int]:
        return await asyncio.gather(*(workers.decorated_square(i) for i in range(500)))

    assert asyncio.run(asyncio.wait_for(main(), timeout=RESULT_TIMEOUT)) == [i * i for i in range(500)]


NOTHING_STARTS = """
import json
import os
import threading

import parallelize
from parallelize import in_process, parallel


def children():
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    stat = f.read()
            except OSError:
                continue
            if int(stat[stat.rindex(")") + 2 :].split()[1]) == os.getpid():
                found.append(int(entry))
    return found


def snapshot():
    from parallelize import _config

    return {
        "children": children(),
        "threads": sorted(t.name for t in threading.enumerate() if t.name.startswith("parallelize-")),
        "default_pool": _config._default_pool is not None,
    }


@parallel
def bare(x):
    return x + 1


@parallel(workers=2)
def limited(x):
    return x


@in_process
def blocking(x):
    return x


pool = parallelize.Pool(2)
report = {"after_decoration": snapshot()}
report["result"] = bare(1).result(timeout=30)
report["after_first_call"] = snapshot()
pool.shutdown()
print(json.dumps(report))
"""


def test_nothing_starts_at_import_or_decoration(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", NOTHING_STARTS],
        env=lifecycle_tasks.script_env("forkserver"),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=RESULT_TIMEOUT,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["after_decoration"] == {"children": [], "threads": [], "default_pool": False}
    # The check can see a pool when there is one: after the first call there is.
    assert report["result"] == 2
    assert report["after_first_call"]["default_pool"] is True
    assert "parallelize-dispatcher" in report["after_first_call"]["threads"]
    assert report["after_first_call"]["children"] != []


def test_the_first_task_runs_while_another_worker_is_still_booting(start_method: str, tmp_path: Path) -> None:
    # The initializer lets the first worker through and holds the second until we say so: a pool
    # that waited for all its workers before running anything would never return the first result.
    release = tmp_path / "release"
    try:
        with Pool(
            2,
            start_method=start_method,
            initializer=lifecycle_tasks.gate_initializer,
            initargs=(str(tmp_path),),
        ) as pool:
            futures = [pool.submit(workers.getpid) for _ in range(2)]
            first = futures[0].result(timeout=RESULT_TIMEOUT)
            assert not release.exists()  # so the held worker is provably not ready yet

            wait_until(lambda: list(tmp_path.glob("held-*")), RESULT_TIMEOUT, "the second worker to be held")
            (held,) = [int(p.name.removeprefix("held-")) for p in tmp_path.glob("held-*")]
            assert held != first
            assert held in pool.worker_pids()

            release.touch()
            assert futures[1].result(timeout=RESULT_TIMEOUT) in pool.worker_pids()
    finally:
        release.touch()
