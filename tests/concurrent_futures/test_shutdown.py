"""shutdown(): waiting, not waiting, cancel_futures (Executor's) and cancel_pending (ours), calling
it twice, and what an interpreter exit does with work still pending."""

from __future__ import annotations

import concurrent.futures
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

import parallelize
from tests.concurrent_futures import tasks
from tests.concurrent_futures.util import WAIT, Gate, Kind
from tests.conftest import wait_until

Executor = concurrent.futures.Executor
REPO = Path(__file__).resolve().parent.parent.parent


def test_shutdown_waits_for_the_submitted_work(make: Callable[..., Executor]) -> None:
    executor = make()
    futures = [executor.submit(tasks.sleep_then, 0.05, i) for i in range(6)]
    executor.shutdown(wait=True)
    assert all(f.done() for f in futures)
    assert [f.result() for f in futures] == list(range(6))


def test_shutdown_without_waiting_lets_the_work_finish(gate: Gate, make: Callable[..., Executor]) -> None:
    executor = make(**gate.initargs())
    futures = [executor.submit(tasks.gated, i) for i in range(4)]
    started = gate.wait_started(1)
    executor.shutdown(wait=False)
    assert not futures[started[0]].done()  # held by the gate: shutdown did not wait for it
    with pytest.raises(RuntimeError):
        executor.submit(tasks.square, 1)
    gate.open()
    assert [f.result(timeout=WAIT) for f in futures] == list(range(4))


def test_cancel_futures_cancels_only_what_has_not_started(gate: Gate, make: Callable[..., Executor]) -> None:
    executor = make(**gate.initargs())
    futures = [executor.submit(tasks.gated, i) for i in range(12)]
    started = gate.wait_started(1)
    executor.shutdown(wait=False, cancel_futures=True)
    # ProcessPoolExecutor cancels in its manager thread, after shutdown() returns; Pool at once.
    wait_until(futures[-1].cancelled, WAIT, "the last future to be cancelled")
    gate.open()
    executor.shutdown(wait=True)
    for i in started:
        assert futures[i].result(timeout=WAIT) == i
    # What each executor had already handed to a worker's queue also runs; the rest is cancelled.
    for i, future in enumerate(futures):
        assert future.cancelled() or future.result(timeout=WAIT) == i
    assert futures[-1].cancelled()


def test_shutdown_twice_and_before_any_work_is_harmless(make: Callable[..., Executor]) -> None:
    unused = make()
    unused.shutdown()
    unused.shutdown(wait=False)
    with pytest.raises(RuntimeError):
        unused.submit(tasks.square, 1)
    used = make()
    assert used.submit(tasks.square, 2).result(timeout=WAIT) == 4
    used.shutdown()
    used.shutdown()
    with pytest.raises(RuntimeError):
        used.map(tasks.square, range(3))


def test_work_pending_at_interpreter_exit_still_runs(kind: Kind, tmp_path: Path) -> None:
    script = tmp_path / "pending_at_exit.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import sys
            sys.path.insert(0, {str(REPO)!r})
            from tests.concurrent_futures import tasks
            from tests.concurrent_futures.util import Kind

            if __name__ == "__main__":
                executor = Kind({kind.control!r}, {kind.method!r}).make()
                executor.submit(tasks.sleep_and_print, 0.2, "apple")
            """
        )
    )
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=WAIT * 2, check=False
    )
    assert done.returncode == 0, done.stderr
    assert "apple" in done.stdout


# -- ours beside Executor's: cancel_pending also stops what runs ---------------------------------


def test_cancel_pending_also_stops_running_work(start_method: str) -> None:
    gate = Gate(start_method)
    try:
        pool = parallelize.Pool(1, start_method=start_method, **gate.initargs())
        running = pool.submit(tasks.gated, 0)
        gate.wait_started(1)
        queued = pool.submit(tasks.square, 2)
        pool.shutdown(wait=True, cancel_pending=True)
        assert running.cancelled()
        assert queued.cancelled()
    finally:
        gate.close()
