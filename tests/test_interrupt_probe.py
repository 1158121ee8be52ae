"""Ctrl-C at random moments: every one gives KeyboardInterrupt, none stalls the pool (issue 9 #2).

A real script in a session of its own runs one workload per round on the default pool, through a
plain ``@parallel`` function (the path users take): a map of tiny tasks, a map of tasks that
sleep for seconds, or single calls waited on with ``Future.result()``. The test sends SIGINT at
a seeded random moment of each round, to the script alone or to its whole process group as a
terminal does; the script catches the KeyboardInterrupt, prints when it did, then runs a fresh
map to completion before the next round. So each round checks that the Ctrl-C was not lost
(before the fix, the dispatcher thread could take it while the main thread slept), and that the
pool is usable at once (before, an interrupted hand-off could leave workers out of service for
good, and the pool stalled).

The deadlines only turn a hang into a failure; the latencies are printed, never asserted (run
with ``-s`` to see them).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import random
import select
import signal
import statistics
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType

import pytest

import parallelize
from tests import fault_tasks, workers
from tests.conftest import all_processes, ctrl_c_once_blocked, wait_until

ROOT = Path(__file__).resolve().parents[1]

# A lost Ctrl-C shows as no KeyboardInterrupt at all: its "long" tasks sleep 2 s a round and its
# "short" workload never ends, so nothing else would end the round.
INTERRUPT_DEADLINE = 15.0
# The fresh map after a Ctrl-C; it may need new workers (a Ctrl-C stops the running tasks').
USABLE_DEADLINE = 30.0

SCRIPT = textwrap.dedent(
    """
    import signal
    import sys
    import time

    import parallelize
    from parallelize import parallel
    from tests import workers


    @parallel
    def nap(x):
        time.sleep(2.0)
        return x


    def say(*words):
        print(*words, flush=True)


    def workload(mode):
        while True:
            if mode == "short":
                for _ in workers.decorated_square.map(range(5000)):
                    pass
            elif mode == "long":
                for _ in nap.map(range(4)):
                    pass
            else:
                workers.decorated_square(3).result()


    def main(start_method, *modes):
        parallelize.configure(workers=2, start_method=start_method)
        expected = [x * x for x in range(300)]
        for number, mode in enumerate(modes):
            say("go", number)
            try:
                workload(mode)
            except KeyboardInterrupt:
                say("interrupted", number, repr(time.monotonic()))
            assert list(workers.decorated_square.map(range(300))) == expected
            say("usable", number)


    if __name__ == "__main__":
        # As a terminal starts it (a background job of a shell starts with SIGINT ignored).
        signal.signal(signal.SIGINT, signal.default_int_handler)
        main(*sys.argv[1:])
    """
)


class Script:
    """The script above in a session of its own, read line by line."""

    def __init__(self, tmp_path: Path, *args: str) -> None:
        path = tmp_path / "probe.py"
        path.write_text(SCRIPT)
        self.proc = subprocess.Popen(
            [sys.executable, str(path), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=tmp_path,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            start_new_session=True,
        )
        self._buffer = b""

    def read_line(self, timeout: float, waiting_for: str) -> str:
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                pytest.fail(f"{waiting_for}: nothing in {timeout:.0f} s (so far: {self._buffer!r})")
            if select.select([fd], [], [], remaining)[0]:
                chunk = os.read(fd, 4096)
                if not chunk:
                    _, err = self.proc.communicate(timeout=30)
                    pytest.fail(f"{waiting_for}: the script ended early:\n{err.decode()}")
                self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        return line.decode()

    def expect(self, words: str, timeout: float) -> list[str]:
        line = self.read_line(timeout, f"waiting for {words!r}")
        assert line.startswith(words), f"expected {words!r}, got {line!r}"
        return line.split()

    def members(self) -> list[int]:
        """Live processes of the script's session (its workers, forkserver, resource tracker)."""
        return [pid for pid, f in all_processes() if int(f[3]) == self.proc.pid and f[0] != "Z"]

    def kill(self) -> None:
        for pid in [self.proc.pid, *self.members()]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.proc.communicate(timeout=30)


@pytest.fixture
def scripts() -> Iterator[list[Script]]:
    started: list[Script] = []
    yield started
    for script in started:  # a failed test must not leave its script or its workers running
        if script.proc.poll() is None or script.members():
            script.kill()


def probe(
    scripts: list[Script], tmp_path: Path, start_method: str, rounds: list[tuple[str, bool]], seed: int
) -> None:
    """Run ``rounds`` of (workload, to the whole group?) with SIGINT at seeded random moments."""
    moments = random.Random(seed)
    script = Script(tmp_path, start_method, *(mode for mode, _ in rounds))
    scripts.append(script)
    latencies: dict[str, list[float]] = {}
    for number, (mode, group) in enumerate(rounds):
        script.expect(f"go {number}", USABLE_DEADLINE)
        # The moment: anywhere in the workload, from its first task (or the pool's start) on.
        time.sleep(moments.uniform(0.0, 0.4))
        sent = time.monotonic()
        if group:
            os.killpg(script.proc.pid, signal.SIGINT)
        else:
            os.kill(script.proc.pid, signal.SIGINT)
        words = script.expect(f"interrupted {number}", INTERRUPT_DEADLINE)
        key = f"{mode} to the {'group' if group else 'process'}"
        latencies.setdefault(key, []).append(float(words[2]) - sent)
        script.expect(f"usable {number}", USABLE_DEADLINE)
    err = script.proc.communicate(timeout=30)[1].decode()
    assert script.proc.returncode == 0, err
    # No KeyboardInterrupt anywhere else: not in a worker (they ignore Ctrl-C, even booting), and
    # none dropped by a finaliser ("Exception ignored in ...").
    assert "KeyboardInterrupt" not in err, err
    assert "Exception ignored" not in err, err
    wait_until(lambda: not script.members(), 20, f"the script's processes to be gone ({script.members()})")
    for key, values in sorted(latencies.items()):
        ms = sorted(1000 * v for v in values)
        print(
            f"[{start_method}] Ctrl-C during {key}: KeyboardInterrupt after {statistics.median(ms):.1f} ms "
            f"(median), {ms[-1]:.1f} ms (max) over {len(ms)}: {', '.join(f'{v:.1f}' for v in ms)}"
        )


def test_ctrl_c_at_random_moments_is_never_lost(scripts: list[Script], tmp_path: Path) -> None:
    """Every workload, to the process and to its group, on the default start method."""
    plan = [(mode, group) for group in (False, True) for mode in ("short", "long", "call")] * 4
    probe(scripts, tmp_path, "forkserver" if sys.platform.startswith("linux") else "spawn", plan, seed=9)


@pytest.mark.slow
@pytest.mark.timeout(900)
@pytest.mark.parametrize("mode", ["short", "long", "call"])
def test_thirty_ctrl_c_per_workload_and_target(
    scripts: list[Script], tmp_path: Path, start_method: str, mode: str
) -> None:
    """The issue's probe: 30 SIGINTs to the process and 30 to its group, one workload.

    Its last lost Ctrl-C (one of 360, on spawn, in a map of short tasks) was a SIGINT whose handler
    ran inside a dropped map's ``__del__``: see ``_interrupts.raise_again_later``.
    """
    plan = [(mode, group) for group in (False, True) for _ in range(30)]
    random.Random(mode).shuffle(plan)
    probe(scripts, tmp_path, start_method, plan, seed=sum(map(ord, mode + start_method)))


def test_work_submitted_right_after_ctrl_c_runs(pool: parallelize.Pool, tmp_path: Path) -> None:
    """Ctrl-C stops the work submitted before it, never what the caller submits after catching it.

    Before the fix the dispatcher, acting on the Ctrl-C a moment later, stopped whatever ran by
    then, including new tasks handed straight to the idle worker: CancelledError.
    """
    marker = tmp_path / "hang"
    hanging = pool.submit(fault_tasks.hang, str(marker))
    wait_until(marker.exists, 30, "the hanging task to start")
    main = threading.current_thread()
    assert main.ident is not None
    assert main.native_id is not None
    sender = ctrl_c_once_blocked(main.ident, main.native_id)
    with pytest.raises(KeyboardInterrupt):
        hanging.result(timeout=60)
    fresh = [pool.submit(workers.square, i) for i in range(6)]
    sender.join(timeout=30)
    assert [f.result(timeout=30) for f in fresh] == [i * i for i in range(6)]
    assert hanging.cancelled()


def _ctrl_c_at_step(step: int, fired: list[str]) -> Callable[[FrameType, str, object], None]:
    """A profile function that sends SIGINT to this (the main) thread at the ``step``-th point
    below its caller's frame where CPython runs signal handlers: the start of a Python function,
    and the return from a call into C. The handler runs right there, as a Ctrl-C's does when it
    arrives during the step before."""
    events = itertools.count()
    # Not in the caller, nor before the ``try`` in our result() that acts on a Ctrl-C: one there
    # comes before the wait (it stops nothing, as one a moment before the call would not).
    outside = (sys._getframe(1).f_code, parallelize.Future.result.__code__)

    def hook(frame: FrameType, event: str, arg: object) -> None:
        if event not in ("call", "c_return") or frame.f_code in outside or fired:
            return  # (once the thread was interrupted, by this or by the sender: one Ctrl-C only)
        if next(events) == step:
            fired.append("step")
            signal.pthread_kill(threading.get_ident(), signal.SIGINT)

    return hook


def _result_with_ctrl_c_at(future: parallelize.Future[object], step: int, fired: list[str]) -> None:
    sys.setprofile(_ctrl_c_at_step(step, fired))
    try:
        future.result(timeout=60)
    finally:
        sys.setprofile(None)


def test_ctrl_c_at_each_step_of_result_leaves_the_pool_usable(pool: parallelize.Pool, tmp_path: Path) -> None:
    """A Ctrl-C at each call and return ``result()`` makes before it sleeps, one per round.

    Before the fix, ``threading.Condition.__enter__`` (Python code) took the future's lock, and
    a KeyboardInterrupt raised right after, before the ``with`` was set up, left the main thread
    owning that lock for good: the dispatcher, cancelling the interrupted task, then blocked on
    it for ever, and so did every later submit (seen in the slow probe, under load, as a map
    that never ended after a Ctrl-C during single calls).
    """
    main = threading.current_thread()
    assert main.ident is not None
    assert main.native_id is not None
    step = 0
    fired = ["step"]
    while fired == ["step"]:  # until the round whose Ctrl-C finds result() asleep: no step was left
        marker = tmp_path / f"hang-{step}"
        hanging = pool.submit(fault_tasks.hang, str(marker))
        try:
            wait_until(marker.exists, 30, "the hanging task to start")
            fired = []
            sender = ctrl_c_once_blocked(main.ident, main.native_id, fired)
            with pytest.raises(KeyboardInterrupt):
                _result_with_ctrl_c_at(hanging, step, fired)
            sender.join(timeout=30)
            if hanging._condition._is_owned():
                hanging._condition.release()  # let the dispatcher go on, so that the pool shuts down
                pytest.fail(f"step {step}: KeyboardInterrupt left the future's lock held by this thread")
            assert pool.submit(workers.square, step).result(timeout=30) == step * step
            wait_until(hanging.cancelled, 30, f"step {step}: the interrupted task to be cancelled")
        finally:
            hanging.cancel()  # (a failed round must not leave the pool's shutdown waiting for it)
        step += 1
    assert step > 5  # result() made that many calls before it slept: the hook did fire
