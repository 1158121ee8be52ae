"""The pool's lifecycle: a pool that broke says so, a dropped pool winds down, exit is bounded,
and the shape that keeps it so (one at-fork hook, no import cycle).

Exit is tested with real scripts in sessions of their own (as in test_interrupt): "no process
left" is then exact, and a hang is caught by a bound that only a hang exceeds.
"""

from __future__ import annotations

import ast
import contextlib
import gc
import os
import pickle
import signal
import subprocess
import sys
import textwrap
import threading
import weakref
from collections.abc import Iterator
from pathlib import Path

import pytest

import parallelize
from parallelize import Pool, PoolBroken, PoolClosed, PoolState, _config, _fork
from tests import lifecycle_tasks as lt
from tests import workers
from tests.conftest import pid_alive, wait_until
from tests.test_interrupt import main_thread_blocked, session_members

RESULT_TIMEOUT = 30.0
# A script must be gone this long after it ends its work (or after Ctrl-C). Only a hang exceeds it:
# the slowest honest path is a stop grace of a few seconds on a loaded machine.
EXIT_LIMIT = 30.0
ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "parallelize"


def _dispatcher_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name == "parallelize-dispatcher"}


@contextlib.contextmanager
def _broken_dispatcher(pool: Pool) -> Iterator[None]:
    """Make the pool's dispatcher thread fail for real, from outside.

    No hook in the library: the fault is injected through a documented internal, the inbox's
    wake-up pipe (``_inbox``), the way a descriptor bug would break it. The read end is replaced
    (``dup2``) by a write-only descriptor on /dev/null, then the dispatcher is poked: its poll
    wakes, and its read of the wake-up descriptor raises OSError (EBADF) in the dispatcher
    thread. ``dup2`` rather than ``close`` keeps the descriptor number taken, so nothing else
    can reuse it while the dispatcher still reads it. A duplicate of the real read end stays open
    until the dispatcher thread has ended, so that wake-ups (a shutdown's) still find a reader.
    """
    dispatcher = pool._backend._dispatcher
    assert dispatcher is not None
    reader = os.dup(dispatcher.inbox.wake_reader)
    sink = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(sink, dispatcher.inbox.wake_reader)
        dispatcher.inbox.poke()
        wait_until(lambda: pool.state is PoolState.BROKEN, RESULT_TIMEOUT, "the dispatcher to fail")
        os.close(sink)
        yield
    finally:
        dispatcher.join(timeout=EXIT_LIMIT)
        os.close(reader)


# -- fault 7: a pool that broke says so --------------------------------------------------------------


def test_a_pool_whose_dispatcher_fails_is_broken_and_says_why(start_method: str, tmp_path: Path) -> None:
    release = tmp_path / "release"
    with Pool(1, start_method=start_method) as pool:
        running = pool.submit(lt.wait_for_file, str(release))
        queued = pool.submit(workers.square, 3)
        wait_until(running.running, RESULT_TIMEOUT, "the first task to run")

        with _broken_dispatcher(pool):
            for future in (running, queued):
                error = future.exception(timeout=RESULT_TIMEOUT)
                assert isinstance(error, PoolBroken)
                assert not isinstance(error, PoolClosed)  # *it* broke; nobody closed it
                assert isinstance(error.__cause__, OSError)
                assert "dispatcher failed" in str(error)
                assert "OSError" in str(error)
            release.write_text("go")  # the running task may end; its worker is stopped either way
            assert pool.state is PoolState.BROKEN

            with pytest.raises(PoolBroken, match=r"tests\.workers\.square\(4\) was not submitted") as info:
                pool.submit(workers.square, 4)
            assert isinstance(info.value.__cause__, OSError)
            with pytest.raises(PoolBroken):
                list(pool.map(workers.square, range(3)))
            with pytest.raises(PoolBroken, match="not restarted"):
                pool.restart()
            pool.shutdown()
    assert pool.state is PoolState.BROKEN  # shutdown() of a broken pool is harmless, and it stays so


def test_a_broken_default_pool_is_replaced_by_the_next_call(default_start_method: str) -> None:
    assert workers.decorated_square(2).result(timeout=RESULT_TIMEOUT) == 4
    broken = _config._default_pool
    assert broken is not None
    with _broken_dispatcher(broken):
        assert _config._default_pool is None  # forgotten as it broke

    assert workers.decorated_square(5).result(timeout=RESULT_TIMEOUT) == 25
    assert _config._default_pool is not None
    assert _config._default_pool is not broken
    assert broken.state is PoolState.BROKEN


def test_pool_broken_is_an_exported_runtime_error_that_survives_a_pickle_round_trip() -> None:
    assert issubclass(PoolBroken, parallelize.ParallelizeError)
    assert issubclass(PoolBroken, RuntimeError)
    assert not issubclass(PoolBroken, PoolClosed)
    assert parallelize.PoolBroken is PoolBroken
    assert "PoolBroken" in parallelize.__all__
    assert PoolBroken.__module__ == "parallelize"
    error = pickle.loads(pickle.dumps(PoolBroken("the pool is broken")))
    assert type(error) is PoolBroken
    assert str(error) == "the pool is broken"


# -- fault 12: a dropped pool winds down ---------------------------------------------------------------


def test_a_dropped_pool_lets_its_workers_and_dispatcher_go(start_method: str) -> None:
    before = _dispatcher_threads()
    pool = Pool(2, start_method=start_method)
    assert pool.submit(workers.square, 3).result(timeout=RESULT_TIMEOUT) == 9
    pids = pool.worker_pids()
    (thread,) = _dispatcher_threads() - before
    collected = weakref.ref(pool)

    del pool
    gc.collect()
    assert collected() is None  # the dispatcher thread does not keep its pool alive

    thread.join(timeout=EXIT_LIMIT)
    assert not thread.is_alive()
    wait_until(lambda: not any(pid_alive(pid) for pid in pids), EXIT_LIMIT, "the workers to exit")


def test_a_dropped_pool_finishes_its_work_without_blocking_the_collector(tmp_path: Path) -> None:
    # The task cannot finish before the file exists, and the file is written only after
    # gc.collect() returned: a collector that waited for the pool's work would never return.
    release = tmp_path / "release"
    before = _dispatcher_threads()
    pool = Pool(1)
    future = pool.submit(lt.wait_for_file, str(release))
    (thread,) = _dispatcher_threads() - before
    del pool
    gc.collect()
    assert not future.done()
    release.write_text("done")
    assert future.result(timeout=RESULT_TIMEOUT).startswith("done:")  # submitted work completes
    thread.join(timeout=EXIT_LIMIT)
    assert not thread.is_alive()


def test_collecting_a_dropped_pool_takes_no_lock_the_collecting_thread_may_hold() -> None:
    # A collection can run in any thread, at any allocation, even in one that holds the pool's
    # inbox lock (the dispatcher itself, or a caller in submit). A wake-up that took that lock
    # would deadlock here instead of returning.
    before = _dispatcher_threads()
    pool = Pool(1)
    assert pool.submit(workers.square, 2).result(timeout=RESULT_TIMEOUT) == 4
    (thread,) = _dispatcher_threads() - before
    dispatcher = pool._backend._dispatcher
    assert dispatcher is not None
    collected = weakref.ref(pool)
    with dispatcher.inbox.lock:
        del pool
        gc.collect()
        assert collected() is None
    thread.join(timeout=EXIT_LIMIT)
    assert not thread.is_alive()


def test_a_map_keeps_its_dropped_pool_running_until_it_is_consumed() -> None:
    pool = Pool(2)
    results = pool.map(workers.square, range(40), chunksize=1)
    collected = weakref.ref(pool)
    del pool
    gc.collect()
    assert collected() is None  # the Pool object went; its backend lives on in the map
    assert list(results) == [x * x for x in range(40)]


# -- fault 11: interpreter exit is bounded -------------------------------------------------------------

EXIT_SCRIPT = textwrap.dedent(
    """
    import os
    import signal
    import sys
    import threading
    import time

    import parallelize
    from parallelize import Pool, parallel
    from tests import death_tasks as dt
    from tests import workers


    KEPT = []


    def main(case, start_method, directory):
        parallelize.configure(workers=2, start_method=start_method)
        pool = Pool(2, start_method=start_method)  # never shut down, in every case
        KEPT.append(pool)  # still referenced at exit (a dropped one is below)
        if case == "crashed":
            errors = [pool.submit(workers.kill_self).exception(timeout=30) for _ in range(3)]
            print("errors", *sorted({type(e).__name__ for e in errors}))
            print("value", pool.submit(workers.square, 3).result(timeout=30))
        elif case == "crashed_default":
            crash = parallel(workers.kill_self)
            print("errors", type(crash().exception(timeout=30)).__name__)
            print("value", workers.decorated_square(3).result(timeout=30))
        elif case == "unpicklable":
            for submit in (lambda: pool.submit(workers.identity, threading.Lock()),
                           lambda: workers.decorated_square(threading.Lock())):
                try:
                    submit()
                except parallelize.SerializationError as exc:
                    print("errors", type(exc).__name__)
            print("errors", type(pool.submit(workers.return_lock).exception(timeout=30)).__name__)
            print("value", pool.submit(workers.square, 3).result(timeout=30))
        elif case == "pending":
            # Never waited for: exit runs them (documented), then ends.
            dropped = Pool(1, start_method=start_method)  # unreachable once main() returns
            for i in range(4):
                pool.submit(dt.mark, directory, f"pool{i}")
                parallel(dt.mark)(directory, f"default{i}")
                dropped.submit(dt.mark, directory, f"dropped{i}")
        elif case == "gil_cancelled":
            future = pool.submit(dt.hold_the_gil_marked, directory)
            while not os.listdir(directory):
                time.sleep(0.01)
            future.cancel()
        elif case == "gil_at_exit":
            # Still running at exit, and it never ends: exit waits for it (documented), and Ctrl-C
            # during that wait must end the program, bounded.
            pool.submit(dt.hold_the_gil_marked, directory)
            parallel(dt.hold_the_gil_marked)(directory)
            while len(os.listdir(directory)) < 2:
                time.sleep(0.01)
        print("end", flush=True)


    if __name__ == "__main__":
        signal.signal(signal.SIGINT, signal.default_int_handler)  # as from a terminal
        main(*sys.argv[1:])
    """
)


def _run_exit_script(
    tmp_path: Path, case: str, start_method: str, *, interrupt: bool = False
) -> tuple[int, str, str]:
    script = tmp_path / "script.py"
    script.write_text(EXIT_SCRIPT)
    directory = tmp_path / "marks"
    directory.mkdir()
    proc = subprocess.Popen(
        [sys.executable, str(script), case, start_method, str(directory)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        start_new_session=True,
    )
    try:
        if interrupt:
            assert proc.stdout is not None
            assert proc.stdout.readline() == b"end\n"  # the work still runs; exit now waits for it
            wait_until(lambda: main_thread_blocked(proc.pid), EXIT_LIMIT, "the exit hook to wait")
            os.killpg(proc.pid, signal.SIGINT)
        out, err = proc.communicate(timeout=EXIT_LIMIT)
        wait_until(lambda: not session_members(proc.pid), EXIT_LIMIT, "the script's processes to go")
        return proc.returncode, ("end\n" if interrupt else "") + out.decode(), err.decode()
    finally:
        if proc.poll() is None:  # a hang: fail, but leave nothing behind
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate(timeout=EXIT_LIMIT)
        for pid in session_members(proc.pid):
            os.kill(pid, signal.SIGKILL)


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("crashed", ["errors WorkerCrashed", "value 9"]),
        ("crashed_default", ["errors WorkerCrashed", "value 9"]),
        ("unpicklable", ["errors SerializationError"] * 3 + ["value 9"]),
        ("pending", []),
        ("gil_cancelled", []),
    ],
)
def test_exit_is_bounded_after_faults_and_with_pools_never_shut_down(
    tmp_path: Path, start_method: str, case: str, expected: list[str]
) -> None:
    code, out, err = _run_exit_script(tmp_path, case, start_method)
    assert code == 0, err
    assert out.splitlines() == [*expected, "end"], err
    if case == "pending":  # the exit hook ran the work nobody waited for
        marks = {name.split("-")[0] for name in os.listdir(tmp_path / "marks")}
        assert marks == {f"{kind}{i}" for kind in ("pool", "default", "dropped") for i in range(4)}


def test_ctrl_c_ends_an_exit_that_waits_for_work_stuck_holding_the_gil(
    tmp_path: Path, start_method: str
) -> None:
    # Before the fix, Ctrl-C aborted our exit hook and multiprocessing's, next, joined the worker
    # still in its C call without a timeout: the program never ended.
    code, out, err = _run_exit_script(tmp_path, "gil_at_exit", start_method, interrupt=True)
    assert code == 0, err
    assert out.splitlines() == ["end"]
    assert "interrupted at exit" in err


# -- the shape: one at-fork hook, no import cycle ------------------------------------------------------


def _runtime_imports(path: Path) -> set[str]:
    """The parallelize modules ``path`` imports when run, at any level (TYPE_CHECKING aside)."""
    found: set[str] = set()

    class Visitor(ast.NodeVisitor):
        def visit_If(self, node: ast.If) -> None:
            if "TYPE_CHECKING" in ast.unparse(node.test):
                for statement in node.orelse:
                    self.visit(statement)
            else:
                self.generic_visit(node)

        def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
            if node.level == 1:
                if node.module:
                    found.add(node.module.split(".")[0])
                else:
                    found.update(alias.name for alias in node.names)
            elif node.module and node.module.startswith("parallelize."):
                found.add(node.module.split(".")[1])

        def visit_Import(self, node: ast.Import) -> None:
            found.update(a.name.split(".")[1] for a in node.names if a.name.startswith("parallelize."))

    Visitor().visit(ast.parse(path.read_text()))
    return found - {path.stem}


def test_no_import_cycle_not_even_through_a_function_level_import() -> None:
    graph = {path.stem: _runtime_imports(path) for path in PACKAGE.glob("*.py")}
    assert graph["_config"] >= {"_pool"}  # the checker sees function-level imports

    def cycle_from(start: str) -> list[str] | None:
        stack = [(start, [start])]
        while stack:
            node, path = stack.pop()
            for following in sorted(graph.get(node, ())):
                if following == start:
                    return [*path, start]
                if following not in path:
                    stack.append((following, [*path, following]))
        return None

    cycles = [cycle for name in sorted(graph) if (cycle := cycle_from(name))]
    assert not cycles, f"import cycles: {cycles}"


def test_one_at_fork_hook_resets_every_module_with_fork_state() -> None:
    registering = [p.name for p in PACKAGE.glob("*.py") if "register_at_fork(" in p.read_text()]
    assert registering == ["_fork.py"]
    with_state = {
        f"parallelize.{p.stem}"
        for p in PACKAGE.glob("*.py")
        if "def _after_fork_in_child(" in p.read_text() and p.stem != "_fork"
    }
    assert set(_fork.RESET_ORDER) == with_state
    assert _fork.RESET_ORDER[-1] == "parallelize._process"  # pools last, on sane locks below
