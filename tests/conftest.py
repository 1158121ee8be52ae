"""Shared fixtures: start methods, pools, and the leak check every test gets.

After each test the default pool is shut down and the test must leave no child process (other
than multiprocessing's own forkserver and resource tracker, which live as long as the session) and
no ``parallelize-*`` thread behind (but ``parallelize-ctrl-c``, which lives as long as the process
once a pool has started, like the forkserver: see ``_interrupts.catch_lost_ctrl_c``).
"""

from __future__ import annotations

import faulthandler
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator

import pytest

import parallelize
from parallelize import _config, _shm

START_METHODS = ["forkserver", "spawn"] if sys.platform.startswith("linux") else ["spawn"]

# How long leftovers may take to disappear after shutdown() before the test counts as leaking.
LEAK_DEADLINE = 10.0


def proc_stat(pid: int | str) -> list[str] | None:
    """The fields of /proc/<pid>/stat after the command name (state first), or None if gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return None
    # the command name is in parentheses and may hold spaces: split after the last ')'
    return stat[stat.rindex(")") + 2 :].split()


def all_processes() -> Iterator[tuple[int, list[str]]]:
    """(pid, stat fields) of every process on the machine."""
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = proc_stat(entry)
            if fields is not None:
                yield int(entry), fields


def child_pids() -> set[int]:
    """Children of this process (zombies included), from /proc."""
    me = os.getpid()
    return {pid for pid, fields in all_processes() if int(fields[1]) == me}


def infrastructure_pids() -> set[int]:
    """multiprocessing's long-lived helpers: the forkserver and the resource tracker."""
    pids = set()
    from multiprocessing import forkserver, resource_tracker

    fs_pid = getattr(forkserver._forkserver, "_forkserver_pid", None)
    rt_pid = getattr(resource_tracker._resource_tracker, "_pid", None)
    for pid in (fs_pid, rt_pid):
        if pid:
            pids.add(pid)
    return pids


def pid_alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    fields = proc_stat(pid)
    return fields is not None and fields[0] != "Z"


def wait_until(predicate: object, timeout: float, what: str) -> None:
    """Poll ``predicate`` until true; fail naming ``what`` after ``timeout`` seconds.

    For conditions no event announces (a process disappearing from /proc); never a bare sleep.
    """
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.02)


def _reap_children() -> None:
    # multiprocessing reaps its Process objects lazily; active_children() joins the finished ones.
    multiprocessing.active_children()


# pytest-timeout's one timer per test is spent once it has failed the test body, so the teardown's
# shutdown (which waits for work left running, say by a task that hung) gets a bound of its own.
TEARDOWN_LIMIT = 120.0


def shut_down_within_limit() -> None:
    """``parallelize.shutdown(wait=True)``, or a dump of every thread and the end of the test run
    (a hang must fail fast: CI would otherwise wait for it until its own limit)."""
    faulthandler.dump_traceback_later(TEARDOWN_LIMIT, exit=True)
    try:
        parallelize.shutdown(wait=True)
    finally:
        faulthandler.cancel_dump_traceback_later()


@pytest.fixture(autouse=True)
def _no_leaks() -> Iterator[None]:
    yield
    check_no_leaks()


def _nothing_spared() -> tuple[frozenset[int], frozenset[int]]:
    return frozenset(), frozenset()


def check_no_leaks(spared: Callable[[], tuple[frozenset[int], frozenset[int]]] = _nothing_spared) -> None:
    """The check after every test. A module that keeps a pool across its tests (see
    tests/concurrent_futures/conftest.py) spares that pool's workers and threads: ``spared`` gives
    their pids and thread idents, asked again at every look (a worker stopped by the test is
    replaced meanwhile, by a new process the pool owns)."""
    shut_down_within_limit()
    _config.reset_for_tests()

    def left() -> set[int]:
        return child_pids() - infrastructure_pids() - spared()[0]

    def clean() -> bool:
        _reap_children()
        return not left()

    wait_until(clean, LEAK_DEADLINE, f"child processes to exit (left: {left()})")

    def no_threads() -> bool:
        threads = spared()[1]
        alive = [t for t in threading.enumerate() if is_pool_thread(t.name) and t.is_alive()]
        return not [t for t in alive if t.ident not in threads]

    wait_until(no_threads, LEAK_DEADLINE, "parallelize threads to end")

    _shm.drop_spares()  # the free spares are a cache; a spare still in use is a leak

    def no_segments() -> bool:
        return not _shm.segments_of(os.getpid())

    # Argument segments are unlinked by a done-callback, which may run just after result() returns.
    wait_until(
        no_segments, LEAK_DEADLINE, f"shared memory to be unlinked (left: {_shm.segments_of(os.getpid())})"
    )


def is_pool_thread(thread_name: str) -> bool:
    """A thread that must end with its pool (the Ctrl-C re-delivery thread lives on)."""
    return thread_name.startswith("parallelize-") and thread_name != "parallelize-ctrl-c"


@pytest.fixture(params=START_METHODS)
def start_method(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def pool(start_method: str) -> Iterator[parallelize.Pool]:
    with parallelize.Pool(2, start_method=start_method) as p:
        yield p


@pytest.fixture
def pool1() -> Iterator[parallelize.Pool]:
    """A one-worker pool on the default start method."""
    with parallelize.Pool(1) as p:
        yield p


@pytest.fixture
def default_start_method(start_method: str) -> str:
    """Make the shared default pool use ``start_method`` (for decorated functions)."""
    parallelize.configure(start_method=start_method, workers=2)
    return start_method


def ctrl_c_once_blocked(thread_id: int, native_id: int, fired: list[str] | None = None) -> threading.Thread:
    """A thread that sends SIGINT to the thread ``thread_id`` once it sleeps in ``result()``, as
    the kernel delivers a Ctrl-C to the main thread. With ``fired``, it sends nothing if
    something is put there first, and puts "asleep" there before it sends."""

    def send() -> None:
        def asleep() -> bool:
            frame = sys._current_frames().get(thread_id)
            names = set()
            while frame is not None:
                names.add(frame.f_code.co_name)
                frame = frame.f_back
            fields = proc_stat(f"{os.getpid()}/task/{native_id}")
            return "result" in names and fields is not None and fields[0] == "S"

        wait_until(lambda: bool(fired) or asleep(), 30, "the main thread to wait in result()")
        if fired is None or not fired:
            if fired is not None:
                fired.append("asleep")
            signal.pthread_kill(thread_id, signal.SIGINT)

    sender = threading.Thread(target=send, name="ctrl-c")
    sender.start()
    return sender
