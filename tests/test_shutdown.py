"""The lifecycle: shutdown in all its forms, interpreter exit, a killed parent, fork, and leaks.

Tasks that must still be running when the test looks block on a file the test creates
(``lifecycle_tasks.wait_for_file``), so no assertion depends on how long anything takes. The only
time bounds are the promises themselves: a script exits promptly, and no worker outlives a
killed parent by more than 2 s.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import subprocess
import sys
import threading
import time
import traceback
from pathlib import Path

import pytest

import parallelize
from parallelize import Pool, PoolClosed, PoolState, WorkerCrashed, _config

from . import lifecycle_tasks, workers
from .conftest import child_pids, infrastructure_pids, is_pool_thread, pid_alive, proc_stat, wait_until

RESULT_TIMEOUT = 30
# "A script exits promptly": generous, since a loaded 2-core machine starts Pythons slowly.
SCRIPT_TIMEOUT = 30
# The promise for a parent killed by SIGKILL.
ORPHAN_DEADLINE = 2.0

pytestmark = pytest.mark.timeout(60)


def _parallelize_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if is_pool_thread(t.name) and t.is_alive()]


def _state_of(pid: int) -> str | None:
    """The one-letter state of ``pid`` from /proc ('Z' for a zombie), or None if it is gone."""
    fields = proc_stat(pid)
    return None if fields is None else fields[0]


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def _release(path: Path, text: str) -> None:
    """Create ``path`` holding ``text`` in one step (a task polling for it never reads it half-written)."""
    partial = path.with_name(path.name + ".partial")
    partial.write_text(text)
    partial.replace(path)


def _all_workers_busy(pool: Pool, directory: Path) -> set[int]:
    """Run one rendezvous task per worker: returns only once every worker is up and has taken one."""
    directory.mkdir()
    futures = [
        pool.submit(lifecycle_tasks.rendezvous, str(directory), pool.workers) for _ in range(pool.workers)
    ]
    pids = {f.result(timeout=RESULT_TIMEOUT) for f in futures}
    assert len(pids) == pool.workers
    return pids


# -- Pool.shutdown ----------------------------------------------------------------------------------


def test_shutdown_waits_for_submitted_work_then_stops_the_workers(pool: Pool) -> None:
    futures = [pool.submit(lifecycle_tasks.sleep_pid, 0.2) for _ in range(5)]
    pool.shutdown(wait=True)
    # Nobody asked for a result: shutdown itself waited for every task.
    assert all(f.done() for f in futures)
    pids = {f.result(timeout=0) for f in futures}
    assert pids
    assert pool.state is PoolState.CLOSED
    assert pool.worker_pids() == []
    # shutdown(wait=True) joined the workers, so they are gone already, not merely on their way out.
    assert [pid for pid in pids if pid_alive(pid)] == []
    with pytest.raises(PoolClosed):
        pool.submit(workers.square, 2)


def test_shutdown_without_waiting_returns_while_a_task_runs(pool: Pool, tmp_path: Path) -> None:
    go = tmp_path / "go"
    future = pool.submit(lifecycle_tasks.wait_for_file, str(go))
    wait_until(future.running, RESULT_TIMEOUT, "the task to reach a worker")
    pids = set(pool.worker_pids())

    pool.shutdown(wait=False)

    # The task cannot have finished: it waits for a file that does not exist yet.
    assert not future.done()
    assert pool.state is PoolState.CLOSING
    with pytest.raises(PoolClosed):
        pool.submit(workers.square, 2)
    _release(go, "finished")
    text, _, pid = future.result(timeout=RESULT_TIMEOUT).partition(":")
    assert text == "finished"
    assert int(pid) in pids
    wait_until(lambda: pool.state is PoolState.CLOSED, RESULT_TIMEOUT, "the pool to close")
    wait_until(lambda: not any(pid_alive(p) for p in pids), RESULT_TIMEOUT, "the workers to exit")


def test_shutdown_cancel_pending_cancels_queued_tasks_and_stops_running_ones(
    pool: Pool, tmp_path: Path
) -> None:
    go = tmp_path / "go"
    running = [pool.submit(lifecycle_tasks.wait_for_file, str(go)) for _ in range(pool.workers)]
    queued = [pool.submit(workers.square, i) for i in range(5)]
    wait_until(lambda: all(f.running() for f in running), RESULT_TIMEOUT, "both workers to take a task")
    # Every worker holds a task that cannot finish yet, so the squares are still in the queue.
    assert not any(f.running() or f.done() for f in queued)
    busy_pids = pool.worker_pids()

    # The running tasks would wait for `go` forever: shutdown can only return by stopping them.
    pool.shutdown(wait=True, cancel_pending=True)

    assert all(f.cancelled() for f in queued)
    assert all(f.cancelled() for f in running)
    assert pool.state is PoolState.CLOSED
    wait_until(
        lambda: not any(pid_alive(pid) for pid in busy_pids), RESULT_TIMEOUT, "the stopped workers to exit"
    )


def test_shutdown_twice_is_harmless(pool: Pool) -> None:
    assert pool.submit(workers.square, 3).result(timeout=RESULT_TIMEOUT) == 9
    pool.shutdown(wait=False)
    pool.shutdown(wait=True)
    pool.shutdown(wait=True, cancel_pending=True)
    assert pool.state is PoolState.CLOSED
    assert pool.worker_pids() == []
    with pytest.raises(PoolClosed):
        pool.submit(workers.square, 3)


def test_shutdown_of_a_never_used_pool_starts_nothing(start_method: str) -> None:
    children_before = child_pids() - infrastructure_pids()
    pool = Pool(2, start_method=start_method)
    assert pool.state is PoolState.NEW
    pool.shutdown(wait=True)
    assert pool.state is PoolState.CLOSED
    assert pool.worker_pids() == []
    assert _parallelize_threads() == []
    assert child_pids() - infrastructure_pids() == children_before
    with pytest.raises(PoolClosed):
        pool.submit(workers.square, 3)
    pool.shutdown()  # and again: still nothing to do


# -- parallelize.shutdown ---------------------------------------------------------------------------


def test_shutdown_of_the_default_pool_then_next_use_builds_a_fresh_one(default_start_method: str) -> None:
    assert workers.decorated_square(3).result(timeout=RESULT_TIMEOUT) == 9
    first_pool = _config._default_pool
    assert first_pool is not None
    first_pids = set(first_pool.worker_pids())
    assert first_pids

    parallelize.shutdown()

    assert first_pool.state is PoolState.CLOSED
    assert _config._default_pool is None
    assert not any(pid_alive(pid) for pid in first_pids)

    ran_on = lifecycle_tasks.decorated_pid().result(timeout=RESULT_TIMEOUT)
    assert workers.decorated_square(4).result(timeout=RESULT_TIMEOUT) == 16
    second_pool = _config._default_pool
    assert second_pool is not None
    assert second_pool is not first_pool
    assert second_pool.state is PoolState.RUNNING
    second_pids = set(second_pool.worker_pids())
    assert ran_on in second_pids
    assert second_pids.isdisjoint(first_pids)


# -- scripts: interpreter exit and a killed parent --------------------------------------------------

EXIT_WITHOUT_SHUTDOWN = """
import multiprocessing
import os
import sys
import time
from multiprocessing import forkserver, resource_tracker

from parallelize import _config, parallel


@parallel
def record(directory, index):
    # Wait for the main program to reach its end, so this work is provably unfinished when the
    # interpreter starts to exit.
    while not os.path.exists(os.path.join(directory, "main-finished")):
        time.sleep(0.01)
    with open(os.path.join(directory, f"task-{index}"), "w") as f:
        f.write(str(os.getpid()))
    return index


if __name__ == "__main__":
    directory = sys.argv[1]
    futures = [record(directory, index) for index in range(6)]
    pool = _config._default_pool
    deadline = time.monotonic() + 20
    while len(pool.worker_pids()) < pool.workers:
        if time.monotonic() > deadline:
            sys.exit("the workers never started")
        time.sleep(0.01)
    print("WORKERS", *pool.worker_pids())
    helpers = [
        getattr(forkserver._forkserver, "_forkserver_pid", None),
        getattr(resource_tracker._resource_tracker, "_pid", None),
    ]
    print("HELPERS", *[pid for pid in helpers if pid])
    print("DONE-AT-EXIT", sum(f.done() for f in futures))
    open(os.path.join(directory, "main-finished"), "w").close()
    # No shutdown(), no result(): the end of the program.
"""


def _pids_on(stdout: str, label: str) -> list[int]:
    for line in stdout.splitlines():
        if line.startswith(label + " ") or line == label:
            return [int(word) for word in line.split()[1:]]
    raise AssertionError(f"the script printed no {label} line; its output was:\n{stdout}")


@pytest.mark.timeout(SCRIPT_TIMEOUT + 15)
def test_script_that_exits_without_shutdown_still_gets_its_work_done(
    start_method: str, tmp_path: Path
) -> None:
    script = tmp_path / "fire_and_forget.py"
    script.write_text(EXIT_WITHOUT_SHUTDOWN)
    out = tmp_path / "out"
    out.mkdir()

    # The timeout is the promise "the script exits promptly": subprocess.run raises past it.
    done = subprocess.run(
        [sys.executable, str(script), str(out)],
        env=lifecycle_tasks.script_env(start_method),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=SCRIPT_TIMEOUT,
        check=False,
    )

    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    assert _pids_on(done.stdout, "DONE-AT-EXIT") == [0]
    task_files = sorted(p.name for p in out.glob("task-*"))
    assert task_files == [f"task-{i}" for i in range(6)]
    worker_pids = set(_pids_on(done.stdout, "WORKERS"))
    assert len(worker_pids) == 2
    assert {int((out / name).read_text()) for name in task_files} <= worker_pids
    # Nothing the script started outlives it: its workers, nor multiprocessing's helpers.
    leftovers = worker_pids | set(_pids_on(done.stdout, "HELPERS"))
    wait_until(
        lambda: not any(pid_alive(pid) for pid in leftovers),
        5.0,
        f"the script's processes {sorted(leftovers)} to exit",
    )


KILLED_PARENT = """
import os
import sys
import time
from multiprocessing import forkserver, resource_tracker

from parallelize import Pool


def rendezvous(directory, count):
    open(os.path.join(directory, f"{os.getpid()}.pid"), "w").close()
    deadline = time.monotonic() + 20
    while len([n for n in os.listdir(directory) if n.endswith(".pid")]) < count:
        if time.monotonic() > deadline:
            raise TimeoutError("not every worker checked in")
        time.sleep(0.01)
    return os.getpid()


if __name__ == "__main__":
    directory = sys.argv[1]
    pool = Pool(3)
    # Each worker takes one rendezvous task, so all three are up and ready; then one of them
    # starts a long sleep and the other two sit idle.
    checked_in = {f.result(timeout=20) for f in [pool.submit(rendezvous, directory, 3) for _ in range(3)]}
    sleeper = pool.submit(time.sleep, 600)
    deadline = time.monotonic() + 20
    while not sleeper.running():
        if time.monotonic() > deadline:
            sys.exit("the long task never started")
        time.sleep(0.01)
    helpers = [
        getattr(forkserver._forkserver, "_forkserver_pid", None),
        getattr(resource_tracker._resource_tracker, "_pid", None),
    ]
    print("WORKERS", *sorted(checked_in | set(pool.worker_pids())), flush=True)
    print("HELPERS", *[pid for pid in helpers if pid], flush=True)
    sys.stdin.read()  # until the test kills us (or closes the pipe, if the test itself died)
"""


def _printed(path: Path, label: str) -> list[int] | None:
    """The pids on the line ``label`` of a script's output file, once that line is complete."""
    for line in path.read_text().splitlines(keepends=True):
        if line.startswith(label + " ") and line.endswith("\n"):
            return [int(word) for word in line.split()[1:]]
    return None


@pytest.mark.timeout(45)
def test_parent_killed_by_sigkill_leaves_no_worker_after_2_seconds(start_method: str, tmp_path: Path) -> None:
    script = tmp_path / "killed_parent.py"
    script.write_text(KILLED_PARENT)
    out = tmp_path / "checkins"
    out.mkdir()
    # Output goes to files, not pipes: a worker that outlived the script would hold a pipe open
    # and turn this failure into a hang.
    stdout_path, stderr_path = tmp_path / "stdout", tmp_path / "stderr"
    with (
        stdout_path.open("w") as stdout,
        stderr_path.open("w") as stderr,
        subprocess.Popen(
            [sys.executable, str(script), str(out)],
            env=lifecycle_tasks.script_env(start_method),
            cwd=tmp_path,
            stdin=subprocess.PIPE,  # the script waits on it; if this test dies, the script follows
            stdout=stdout,
            stderr=stderr,
        ) as proc,
    ):
        try:
            wait_until(
                lambda: proc.poll() is not None or _printed(stdout_path, "HELPERS") is not None,
                RESULT_TIMEOUT,
                "the script to report its workers",
            )
            assert proc.poll() is None, f"the script failed early:\n{stderr_path.read_text()}"
            pids = _printed(stdout_path, "WORKERS") or []
            helpers = _printed(stdout_path, "HELPERS") or []
            assert len(pids) == 3
            assert all(pid_alive(pid) for pid in pids)

            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=RESULT_TIMEOUT)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=RESULT_TIMEOUT)

    assert proc.returncode == -signal.SIGKILL
    try:
        # The workers were the script's (or its forkserver's) children: they are reparented
        # now, and a zombie nobody reaps counts as gone.
        wait_until(
            lambda: not any(pid_alive(pid) for pid in pids),
            ORPHAN_DEADLINE,
            f"the workers {pids} of the killed script to die",
        )
    finally:
        for pid in pids:  # if the engine failed us, do not leave its orphans to the next tests
            if pid_alive(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
    # multiprocessing's own helpers follow (the forkserver, the resource tracker): not part of
    # the 2-second promise, but nothing of the script's may linger.
    wait_until(
        lambda: not any(pid_alive(pid) for pid in helpers),
        RESULT_TIMEOUT,
        f"the helpers {helpers} of the killed script to exit",
    )


# -- fork after use ---------------------------------------------------------------------------------


def _read_report(fd: int, deadline: float) -> bytes:
    data = b""
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            pytest.fail("the forked child did not report in time")
        readable, _, _ = select.select([fd], [], [], remaining)
        if not readable:
            continue
        chunk = os.read(fd, 65536)
        if not chunk:
            return data
        data += chunk


def _reap(pid: int, deadline: float) -> int:
    """The exit status of child ``pid``; kills it if it has not exited by ``deadline``."""
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return status
        time.sleep(0.02)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    pytest.fail(f"the forked child {pid} did not exit in time")


def _in_forked_child(explicit: Pool) -> dict[str, object]:
    """Runs in the child of os.fork(): use both pools, report what ran where."""
    report: dict[str, object] = {
        "square": workers.decorated_square(7).result(timeout=RESULT_TIMEOUT),
        "default_ran_on": lifecycle_tasks.decorated_pid().result(timeout=RESULT_TIMEOUT),
        "default_pids": workers.default_pool_pids(),
        "explicit_square": explicit.submit(workers.square, 8).result(timeout=RESULT_TIMEOUT),
        "explicit_ran_on": explicit.submit(workers.getpid).result(timeout=RESULT_TIMEOUT),
        "explicit_pids": explicit.worker_pids(),
    }
    explicit.shutdown(wait=True)
    parallelize.shutdown(wait=True)
    return report


def test_forked_child_gets_fresh_workers(default_start_method: str) -> None:
    with Pool(2, start_method=default_start_method) as explicit:
        assert workers.decorated_square(3).result(timeout=RESULT_TIMEOUT) == 9
        assert explicit.submit(workers.square, 4).result(timeout=RESULT_TIMEOUT) == 16
        parent_default = set(workers.default_pool_pids())
        parent_explicit = set(explicit.worker_pids())
        parent_pids = parent_default | parent_explicit

        read_fd, write_fd = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: never return into pytest
            code = 1
            try:
                os.close(read_fd)
                try:
                    report = _in_forked_child(explicit)
                except BaseException:  # noqa: BLE001 - the parent turns this into a failure
                    report = {"error": traceback.format_exc()}
                os.write(write_fd, json.dumps(report).encode())
                code = 0
            finally:
                os._exit(code)

        os.close(write_fd)
        deadline = time.monotonic() + RESULT_TIMEOUT
        try:
            raw = _read_report(read_fd, deadline)
        finally:
            os.close(read_fd)
            status = _reap(pid, deadline + 5)
        assert os.waitstatus_to_exitcode(status) == 0
        report = json.loads(raw)
        assert "error" not in report, report["error"]

        assert report["square"] == 49
        assert report["explicit_square"] == 64
        child_default = set(report["default_pids"])
        child_explicit = set(report["explicit_pids"])
        assert report["default_ran_on"] in child_default
        assert report["explicit_ran_on"] in child_explicit
        assert child_default.isdisjoint(parent_pids)
        assert child_explicit.isdisjoint(parent_pids)

        # The parent's pools were not disturbed by the child's fresh start and its shutdown.
        assert lifecycle_tasks.decorated_pid().result(timeout=RESULT_TIMEOUT) in parent_default
        assert explicit.submit(workers.getpid).result(timeout=RESULT_TIMEOUT) in parent_explicit
        assert set(workers.default_pool_pids()) == parent_default
        assert set(explicit.worker_pids()) == parent_explicit


# -- leaks ------------------------------------------------------------------------------------------

# Descriptors the interpreter or pytest may open for themselves between two counts (a lazily
# opened log or random source): a constant, not a rate. A leak per task would show up as
# thousands, and one per replaced worker as 20 or more.
FD_SLACK = 2


@pytest.mark.timeout(60)
def test_no_descriptor_leak_and_no_zombie_after_thousands_of_tasks_and_crashes(
    pool: Pool, tmp_path: Path
) -> None:
    _all_workers_busy(pool, tmp_path / "warm-up")
    baseline = _open_fds()

    for start in range(0, 3000, 500):
        futures = [pool.submit(workers.square, i) for i in range(start, start + 500)]
        assert [f.result(timeout=RESULT_TIMEOUT) for f in futures] == [
            i * i for i in range(start, start + 500)
        ]
    _all_workers_busy(pool, tmp_path / "after-tasks")
    after_tasks = _open_fds()
    assert after_tasks <= baseline + FD_SLACK, (baseline, after_tasks)

    crashes = [pool.submit(workers.exit_with, 3) for _ in range(20)]
    dead: set[int] = set()
    for future in crashes:
        with pytest.raises(WorkerCrashed) as caught:
            future.result(timeout=RESULT_TIMEOUT)
        dead.add(caught.value.pid)
    assert len(dead) == 20  # each task killed its own worker
    _all_workers_busy(pool, tmp_path / "after-crashes")
    after_crashes = _open_fds()
    assert after_crashes <= baseline + FD_SLACK, (baseline, after_crashes)

    assert len(pool.worker_pids()) == 2
    assert not any(pid_alive(pid) for pid in dead)
    zombies = [pid for pid in child_pids() if _state_of(pid) == "Z"]
    assert zombies == []
    assert not any(_state_of(pid) == "Z" for pid in dead)


# -- the fork start method --------------------------------------------------------------------------


def test_fork_start_method_stays_available() -> None:
    with Pool(2, start_method="fork") as pool:
        assert pool.submit(workers.add, 2, 3).result(timeout=RESULT_TIMEOUT) == 5
        assert list(pool.map(workers.square, range(20))) == [i * i for i in range(20)]
        ran_on = pool.submit(workers.getpid).result(timeout=RESULT_TIMEOUT)
        assert ran_on != os.getpid()
        assert ran_on in pool.worker_pids()
        # fork makes the workers our own children (spawn does too; forkserver does not).
        assert set(pool.worker_pids()) <= child_pids()
    assert pool.state is PoolState.CLOSED
