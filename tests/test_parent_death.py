"""A parent killed with SIGKILL leaves nothing behind, whatever its workers are doing.

Each case runs a real script in a session of its own, puts its workers in one state, SIGKILLs
the script alone (not its group) and then requires that nothing of the session is left (workers,
the forkserver, the resource tracker) and that no shared-memory segment of any of those processes
remains in /dev/shm. The states: idle, asleep in a task, stuck in a C call that holds the GIL (the
worker's watchdog thread cannot run), booting (an initializer that never ends), and sending
256 MiB arguments (killed at a random moment of the transfer, several times). On forkserver,
spawn and fork.

The promise is "gone within 2 s"; the bound below only turns a hang into a failure (under load a
fresh interpreter's exit alone can take a second), and the time measured is printed.
"""

from __future__ import annotations

import contextlib
import os
import random
import select
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import all_processes, wait_until

ROOT = Path(__file__).resolve().parents[1]
GONE_LIMIT = 20.0
METHODS = ["forkserver", "spawn", "fork"]
TRANSFER_KILLS = 6

SCRIPT = textwrap.dedent(
    """
    import os
    import sys
    import time

    from parallelize import Pool
    from tests import death_tasks as dt


    def wait_for(directory, prefix, count=1):
        deadline = time.monotonic() + 60
        while len([n for n in os.listdir(directory) if n.startswith(prefix)]) < count:
            if time.monotonic() > deadline:
                sys.exit(f"no {prefix} marker in 60 s")
            time.sleep(0.01)


    def main(state, method, directory):
        if state == "booting":
            pool = Pool(2, start_method=method, initializer=dt.boot_forever, initargs=(directory,))
            pool.submit(dt.pid)
            wait_for(directory, "booting")
            print("ready", flush=True)
            time.sleep(600)
        pool = Pool(2, start_method=method)
        warm = [pool.submit(dt.pid) for _ in range(4)]
        assert all(f.result(timeout=60) for f in warm)
        if state == "sleeping":
            pool.submit(dt.sleep_marked, directory)
            wait_for(directory, "sleeping")
        elif state == "gil":
            pool.submit(dt.hold_the_gil_marked, directory)
            wait_for(directory, "gil")
        if state != "transfer":
            print("ready", flush=True)
            time.sleep(600)
        data = os.urandom(1 << 20) * 256  # 256 MiB, through shared memory
        print("ready", flush=True)
        while True:
            assert pool.submit(dt.length, data).result(timeout=60) == len(data)


    if __name__ == "__main__":
        main(*sys.argv[1:])
    """
)


def session_members(sid: int) -> set[int]:
    return {pid for pid, fields in all_processes() if int(fields[3]) == sid}


def segments_of(pids: set[int]) -> list[str]:
    names = []
    for name in os.listdir("/dev/shm"):
        parts = name.split("-")
        if parts[0] in ("pzt", "pzu") and len(parts) > 1 and parts[1].isdigit() and int(parts[1]) in pids:
            names.append(name)
    return names


class Script:
    def __init__(self, directory: Path, state: str, method: str) -> None:
        path = directory / "parent.py"
        path.write_text(SCRIPT)
        markers = directory / "markers"
        markers.mkdir()
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        self.proc = subprocess.Popen(
            [sys.executable, str(path), state, method, str(markers)],
            cwd=directory,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            start_new_session=True,
        )

    def wait_ready(self, timeout: float = 60) -> None:
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        line = self.proc.stdout.readline() if ready else b""
        if line.strip() != b"ready":
            self.proc.kill()
            _, err = self.proc.communicate(timeout=30)
            pytest.fail(f"the script did not get ready: {line!r}\n{err.decode()}")

    def kill_parent(self) -> tuple[float, set[int]]:
        """SIGKILL the script alone; returns when it was sent and every process of its session."""
        members = session_members(self.proc.pid)
        sent = time.monotonic()
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.communicate(timeout=30)
        return sent, members | session_members(self.proc.pid)


@pytest.fixture
def script(tmp_path: Path) -> Iterator[list[Script]]:
    scripts: list[Script] = []
    yield scripts
    for s in scripts:  # a failed test must not leave anything running
        with contextlib.suppress(ProcessLookupError):
            os.killpg(s.proc.pid, signal.SIGKILL)
        for pid in session_members(s.proc.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if s.proc.poll() is None:
            s.proc.communicate(timeout=30)


def _nothing_left(sid: int, pids: set[int], sent: float, what: str) -> None:
    wait_until(
        lambda: not session_members(sid) and not segments_of(pids),
        GONE_LIMIT,
        f"{what}: the session's processes and segments to be gone "
        f"(left: {session_members(sid)}, {segments_of(pids)})",
    )
    print(f"{what}: nothing left {time.monotonic() - sent:.2f} s after the SIGKILL")


def _run(tmp_path: Path, scripts: list[Script], state: str, method: str, delay: float = 0.0) -> None:
    s = Script(tmp_path, state, method)
    scripts.append(s)
    s.wait_ready()
    if delay:
        time.sleep(delay)  # not synchronisation: a random moment of a transfer that loops forever
    sent, pids = s.kill_parent()
    assert len(pids) >= 2, pids  # the script and its workers (and a forkserver, a tracker if any)
    _nothing_left(s.proc.pid, pids, sent, f"{state} on {method}")


@pytest.mark.timeout(90)
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("state", ["idle", "sleeping", "gil", "booting"])
def test_no_orphan_after_parent_sigkill(
    tmp_path: Path, script: list[Script], state: str, method: str
) -> None:
    _run(tmp_path, script, state, method)


@pytest.mark.timeout(180)
@pytest.mark.parametrize("method", METHODS)
def test_no_orphan_or_segment_after_parent_sigkill_mid_transfer(
    tmp_path: Path, script: list[Script], method: str
) -> None:
    # One turn of the script's loop (pick a segment, reserve 256 MiB, copy, the worker maps and
    # copies out, unlink) takes a few tenths of a second; the kills are spread over it.
    rng = random.Random(f"{method}-transfer")
    for attempt in range(TRANSFER_KILLS):
        directory = tmp_path / str(attempt)
        directory.mkdir()
        delay = (attempt + rng.random()) * 0.5 / TRANSFER_KILLS
        _run(directory, script, "transfer", method, delay=delay)
