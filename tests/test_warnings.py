"""Warnings that say a fast path or a limit is off: once, with the right cause (issue 9, #8 and #9).

Shared memory that cannot be used is made to fail for real: each script runs in a private mount
namespace (``unshare --mount``, as root) where /dev/shm is a tiny tmpfs, a read-only one, or
absent; the machine's /dev/shm is never touched. Workers inherit the namespace, so the parent, the
forkserver, the resource tracker and every worker see the same small /dev/shm; it vanishes with
the namespace. Every warning, the parent's and (forwarded, issue 11) the workers', is collected
by a handler the script installs on the parent's ``parallelize`` logger; the script's stderr is
searched too.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from parallelize import _encode, _fallback, _functions, _serialize, _shm, parallel

from . import lifecycle_tasks, shm_tasks, workers
from .conftest import pid_alive, wait_until

WAIT = 120

pytestmark = [
    pytest.mark.timeout(180),
    pytest.mark.skipif(not _shm.AVAILABLE, reason="POSIX shared memory is Linux-only here"),
]

needs_namespace = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("unshare") is None,
    reason="making /dev/shm small for one process needs root and util-linux's unshare",
)

# 45 calls, each with a 3 MiB argument and a 3 MiB result; even calls send bytes (which use the
# spare segments), odd ones memoryviews (a one-off segment each): both ways into _shm._create.
SCRIPT = """
import json, logging, os, sys, time, zlib

from parallelize import parallel, shutdown

SIZE = 3 * 2**20 + 12345


def data(seed):
    block = bytes((i * 7 + seed) % 251 for i in range(251))
    return (block * (SIZE // 251 + 1))[:SIZE]


@parallel
def echo(payload, seed):
    out = data(seed + 1)
    return zlib.crc32(payload), out if seed % 2 == 0 else memoryview(bytearray(out))


if __name__ == "__main__":
    said = []

    parent = os.getpid()

    class Keep(logging.Handler):
        def emit(self, record):
            if os.getpid() == parent:
                said.append(record.getMessage())
            else:  # a fork worker inherited this handler: say it where the other workers do
                sys.stderr.write(record.getMessage() + "\\n")

    logging.getLogger("parallelize").addHandler(Keep())
    calls = int(sys.argv[1])
    futures = []
    for seed in range(calls):
        payload = data(seed)
        futures.append(echo(payload if seed % 2 == 0 else memoryview(bytearray(payload)), seed))
    right = 0
    for seed, future in enumerate(futures):
        crc, out = future.result(timeout=60)
        right += crc == zlib.crc32(data(seed)) and bytes(out) == data(seed + 1)
    shutdown()
    from parallelize import _shm

    _shm.drop_spares()
    deadline = time.monotonic() + 10
    while os.listdir("/dev/shm") if os.path.isdir("/dev/shm") else []:
        if time.monotonic() > deadline:
            break
        time.sleep(0.05)
    left = os.listdir("/dev/shm") if os.path.isdir("/dev/shm") else []
    print(json.dumps({"pid": os.getpid(), "right": right, "said": said, "left": left}))
"""

# The shell run as root inside the new mount namespace before the script: what /dev/shm is there.
SETUPS = {
    # smaller than one message: every segment fails
    "tiny": "mount -t tmpfs -o size=1m tmpfs /dev/shm",
    # room for one message at a time: some segments fit, some do not
    "small": "mount -t tmpfs -o size=4m tmpfs /dev/shm",
    "read-only": "mount -t tmpfs -o ro,size=64m tmpfs /dev/shm",
    # a /dev without shm: only the two nodes Python and multiprocessing open
    "absent": (
        "mount -t tmpfs -o size=1m,mode=755 tmpfs /dev && mknod -m 666 /dev/null c 1 3 "
        "&& mknod -m 666 /dev/urandom c 1 9"
    ),
}
WARNING = re.compile(
    r"^(?P<what>.*) \((?P<error>[^)]*)\), so large arguments and results of process (?P<pid>\d+)"
)


def _run_script(tmp_path: Path, start_method: str, setup: str, calls: int) -> tuple[dict[str, Any], str]:
    script = tmp_path / "script.py"
    script.write_text(SCRIPT)
    command = ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c"]
    command += [f'{SETUPS[setup]} && exec "$0" "$@"', sys.executable, str(script), str(calls)]
    done = subprocess.run(
        command,
        env=lifecycle_tasks.script_env(start_method),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=WAIT,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout), done.stderr


def _warnings(report: dict[str, Any], stderr: str) -> list[tuple[int, str, str]]:
    """(pid, what, error) of every shared-memory warning: the parent's, then the workers'."""
    lines = report["said"] + [line for line in stderr.splitlines() if "large arguments and results" in line]
    found = []
    for line in lines:
        match = WARNING.match(line)
        assert match, line
        assert line.endswith("said once per process for this cause"), line
        found.append((int(match["pid"]), match["what"], match["error"]))
    return found


@needs_namespace
@pytest.mark.parametrize("setup", ["tiny", "small"])
def test_a_small_dev_shm_warns_once_per_process_and_every_result_is_right(
    tmp_path: Path, start_method: str, setup: str
) -> None:
    report, stderr = _run_script(tmp_path, start_method, setup, calls=45)
    assert report["right"] == 45
    assert report["left"] == []
    said = _warnings(report, stderr)
    per_process = Counter(pid for pid, _, _ in said)
    assert max(per_process.values()) == 1, said
    assert {what for _, what, _ in said} == {"shared memory (/dev/shm) is full"}
    assert all("No space left on device" in error for _, _, error in said)
    parent = report["pid"]
    if setup == "tiny":
        # Nothing fits: the parent fails its first argument, and every worker that returned a
        # result failed too. Two workers (a third only if one had to be replaced).
        assert parent in per_process
        assert 2 <= len(per_process) <= 3, said
    else:
        assert 1 <= len(per_process) <= 3, said


@needs_namespace
@pytest.mark.parametrize(
    ("setup", "what", "error"),
    [
        ("absent", "there is no /dev/shm to make shared memory in", "No such file or directory"),
        ("read-only", "shared memory could not be used", "Read-only file system"),
    ],
)
def test_each_cause_is_named(tmp_path: Path, setup: str, what: str, error: str) -> None:
    report, stderr = _run_script(tmp_path, "forkserver", setup, calls=6)
    assert report["right"] == 6
    said = _warnings(report, stderr)
    assert max(Counter(pid for pid, _, _ in said).values()) == 1, said
    assert (report["pid"], what) in {(pid, w) for pid, w, _ in said}
    assert all(w == what and error in e for _, w, e in said), said


def test_a_fork_child_speaks_for_itself(caplog: pytest.LogCaptureFixture) -> None:
    # A fork worker inherits what its parent has said; spawn and forkserver workers start afresh
    # (the namespace tests above), and a fork one must too.
    full = OSError(errno.ENOSPC, "No space left on device")
    _fallback._said.discard("no room")
    try:
        with caplog.at_level(logging.WARNING, logger="parallelize"):
            assert _fallback.warn_once(full)
            assert not _fallback.warn_once(full)
            pid = os.fork()
            if pid == 0:
                os._exit(0 if _fallback.warn_once(full) and not _fallback.warn_once(full) else 1)
            _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert len([r for r in caplog.records if "is full" in r.getMessage()]) == 1
    finally:
        _fallback._said.discard("no room")


def test_a_fork_child_can_register_a_segment_while_a_parent_thread_held_the_tracker() -> None:
    # Found by the namespace test above under fork: the dispatcher thread forked a worker while
    # the caller's thread was registering its argument's segment, so the worker inherited the
    # resource tracker's lock held, and hung on its first result segment. Here another thread
    # holds that lock across the fork, every time.
    from multiprocessing import resource_tracker

    resource_tracker.ensure_running()
    held, forked = threading.Event(), threading.Event()

    def hold() -> None:
        with resource_tracker._resource_tracker._lock:  # type: ignore[attr-defined]
            held.set()
            forked.wait(timeout=WAIT)

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert held.wait(timeout=WAIT)
        pid = os.fork()
        if pid == 0:
            name, fd = _shm._create(4096)
            os.close(fd)
            _shm.unlink(name)
            os._exit(0)
    finally:
        forked.set()
        holder.join(timeout=WAIT)

    def exited() -> bool:
        return os.waitpid(pid, os.WNOHANG)[0] == pid

    try:
        wait_until(exited, 10, "the fork child to make a segment (it hangs on an inherited lock)")
    finally:
        if pid_alive(pid):
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)


def test_a_name_collision_takes_a_fresh_name(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # The random part of a name cannot be predicted, so the test chooses the next name and makes
    # that segment itself (as a dead process with our pid would have left it); the collision that
    # follows is the kernel's own EEXIST.
    import _posixshmem

    taken = _shm._name(tracked=True)
    fd = _posixshmem.shm_open(taken, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600)
    os.write(fd, b"someone else's")
    names = iter([taken])
    fresh = _shm._name
    monkeypatch.setattr(_shm, "_name", lambda tracked: next(names, None) or fresh(tracked))
    try:
        big = shm_tasks.make("memoryview")
        segments: list[str] = []
        handle = _functions.handle_for(shm_tasks.describe)
        with caplog.at_level(logging.WARNING, logger="parallelize"):
            data = _encode.encode_call(handle, (big,), {}, 0, (), segments)
        assert caplog.records == []
        assert len(segments) == 1
        assert segments[0] != taken
        assert len(data) < 4096  # a reference to a segment, not the 3 MiB
        arrived = _serialize.loads(data)[1][0]
        assert arrived.tobytes() == big.tobytes()
        assert os.pread(fd, 14, 0) == b"someone else's"  # never touched
        _shm.release(segments)
    finally:
        os.close(fd)
        _posixshmem.shm_unlink(taken)


def test_names_all_taken_fall_back_once_naming_the_collision(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import _posixshmem

    taken = _shm._name(tracked=True)
    fd = _posixshmem.shm_open(taken, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600)
    monkeypatch.setattr(_shm, "_name", lambda tracked: taken)
    _fallback._said.discard("name collision")  # this process may have said it in another test
    try:
        big = shm_tasks.make("memoryview")
        handle = _functions.handle_for(shm_tasks.describe)
        with caplog.at_level(logging.WARNING, logger="parallelize"):
            for _ in range(3):
                segments: list[str] = []
                data = _encode.encode_call(handle, (big,), {}, 0, (), segments)
                assert segments == []
                assert _serialize.loads(data)[1][0].tobytes() == big.tobytes()
        (record,) = caplog.records
        # text only: a kept exception would keep frames holding views of `big` (see _fallback)
        assert not any(isinstance(arg, BaseException) for arg in record.args or ())
        message = record.getMessage()
        assert message.startswith("every fresh name tried for a shared-memory segment was taken")
        assert f"{_shm.NAME_ATTEMPTS} fresh segment names were all taken" in message
    finally:
        _fallback._said.discard("name collision")
        os.close(fd)
        _posixshmem.shm_unlink(taken)


# -- a timeout the backend cannot enforce (#9) ------------------------------------------------------


@pytest.mark.parametrize("backend", ["thread", "sync"])
def test_a_timeout_the_backend_cannot_enforce_is_said_once_per_function(
    backend: str, caplog: pytest.LogCaptureFixture
) -> None:
    # Fresh function objects: the warning is once per function, for the life of the process.
    def bounded(x: int) -> int:
        return x + 1

    def other(x: int) -> int:
        return x

    limited = parallel(backend=backend, timeout=5)(bounded)
    free = parallel(backend=backend)(other)
    with caplog.at_level(logging.WARNING, logger="parallelize"):
        assert [limited(i).result(timeout=WAIT) for i in range(5)] == [1, 2, 3, 4, 5]
        assert list(limited.map(range(20))) == list(range(1, 21))
        assert free(3).result(timeout=WAIT) == 3
        assert list(free.map(range(3), timeout=2)) == [0, 1, 2]  # a map's own timeout counts too
    labels = [r.getMessage().split(" has timeout=")[0] for r in caplog.records]
    assert labels == [_functions.handle_for(bounded).label, _functions.handle_for(other).label]
    first = caplog.records[0]
    assert first.name == "parallelize"
    assert first.levelno == logging.WARNING
    assert f"has timeout=5 s, but the {backend} backend cannot stop a running call" in first.getMessage()
    assert "PARALLELIZE_BACKEND" in first.getMessage()
    assert "has timeout=2 s" in caplog.records[1].getMessage()


def test_the_process_backend_says_nothing(caplog: pytest.LogCaptureFixture) -> None:
    limited = parallel(timeout=5)(workers.identity)
    with caplog.at_level(logging.WARNING, logger="parallelize"):
        assert limited(4).result(timeout=WAIT) == 4
    assert caplog.records == []


UNBOUNDED = """
import logging
from parallelize import parallel


@parallel(timeout=30)
def slow(x):
    return x * 2


if __name__ == "__main__":
    logging.basicConfig(format="%(name)s %(levelname)s %(message)s")
    print(sum(slow(i).result(timeout=60) for i in range(10)) + sum(slow.map(range(10))))
"""


@pytest.mark.parametrize("backend", ["thread", "sync", "process"])
def test_the_environment_variable_alone_makes_the_warning(tmp_path: Path, backend: str) -> None:
    script = tmp_path / "script.py"
    script.write_text(UNBOUNDED)
    env = lifecycle_tasks.script_env("forkserver")
    env["PARALLELIZE_BACKEND"] = backend
    done = subprocess.run(
        [sys.executable, str(script)],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=WAIT,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["180"]
    said = [line for line in done.stderr.splitlines() if "has timeout=" in line]
    if backend == "process":
        assert said == []
    else:
        assert said == [
            f"parallelize WARNING __main__.slow has timeout=30 s, but the {backend} backend cannot stop "
            "a running call, so its calls run without a time limit; use the process backend "
            '(backend="process", or unset PARALLELIZE_BACKEND) to enforce it (said once per function)'
        ]
