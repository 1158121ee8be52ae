"""Importable task functions for the lifecycle, script and concurrency tests.

Some of them block until a file appears: the test decides when they finish, so a test can look at
a pool while a task is provably still running, without guessing how long anything takes. Their
deadlines only stop a forgotten task from blocking a worker forever.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from parallelize import parallel

# How long a blocking task waits for its file before giving up (a test forgot to release it).
GIVE_UP = 30.0


def _wait_for(path: Path, what: str) -> None:
    deadline = time.monotonic() + GIVE_UP
    while not path.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} never appeared ({what})")
        time.sleep(0.01)


def wait_for_file(path: str) -> str:
    """Block until ``path`` exists, then return its text and this worker's pid."""
    _wait_for(Path(path), "wait_for_file")
    return f"{Path(path).read_text()}:{os.getpid()}"


def sleep_pid(seconds: float) -> int:
    time.sleep(seconds)
    return os.getpid()


def rendezvous(directory: str, count: int) -> int:
    """Check in under this worker's pid, then wait until ``count`` workers have checked in.

    Submitting ``count`` of these to a pool of ``count`` workers proves every worker is up and
    has taken a task (a worker cannot hold two tasks at once).
    """
    folder = Path(directory)
    (folder / f"{os.getpid()}.pid").touch()
    deadline = time.monotonic() + GIVE_UP
    while len(list(folder.glob("*.pid"))) < count:
        if time.monotonic() > deadline:
            raise TimeoutError(f"only {len(list(folder.glob('*.pid')))} of {count} workers checked in")
        time.sleep(0.01)
    return os.getpid()


def gate_initializer(directory: str) -> None:
    """Let the first worker through; hold every other one until ``directory/release`` exists.

    Each held worker leaves ``held-<pid>`` so the test knows which worker is not ready.
    """
    folder = Path(directory)
    try:
        os.close(os.open(folder / "first", os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        (folder / f"held-{os.getpid()}").touch()
        _wait_for(folder / "release", "gate_initializer")


@parallel
def decorated_pid(_: object = None) -> int:
    return os.getpid()


# -- for the tests that run scripts ---------------------------------------------------------------


def script_env(start_method: str, workers: int = 2) -> dict[str, str]:
    """The environment for a script under test: this Python's environment plus the pool settings.

    The child runs ``sys.executable`` (the venv running pytest, where parallelize is installed
    editable), so it imports parallelize; ``tests`` is not importable there, and scripts must not
    need it.
    """
    env = dict(os.environ)
    env["PARALLELIZE_START_METHOD"] = start_method
    env["PARALLELIZE_WORKERS"] = str(workers)
    env.pop("PARALLELIZE_BACKEND", None)
    return env


def run_script(
    args: list[str], start_method: str, cwd: Path, timeout: float, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``python *args`` in ``cwd`` with ``script_env(start_method)``; text output captured."""
    return subprocess.run(
        [sys.executable, *args],
        input=stdin,
        env=script_env(start_method),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
