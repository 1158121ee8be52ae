"""Large buffers through shared memory: contents and types, zero copy, and no segment left behind.

Each test runs real workers under each start method. Leaks are checked in /dev/shm itself, by the
creator pid that every segment name carries (conftest also checks this process's segments after
every test).
"""

from __future__ import annotations

import concurrent.futures
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from parallelize import (
    Pool,
    TaskTimeout,
    WorkerCrashed,
    _buffers,
    _encode,
    _functions,
    _serialize,
    _shm,
    parallel,
)

from . import lifecycle_tasks, shm_tasks, workers
from .conftest import wait_until

pytestmark = [
    pytest.mark.timeout(60),
    pytest.mark.skipif(not _shm.AVAILABLE, reason="POSIX shared memory is Linux-only here"),
]

WAIT = 30
KINDS = ["bytes", "bytearray", "memoryview", "numpy", "float64"]
VIEWS = {"memoryview", "numpy", "float64"}  # arrive as views on the mapping; bytes types copy out


def _needs(kind: str) -> None:
    if kind in ("numpy", "float64"):
        pytest.importorskip("numpy")


def _expected(kind: str, seed: int = 0) -> tuple[str, int, int]:
    data = shm_tasks.make(kind, seed=seed)
    return type(data).__name__, int(getattr(data, "nbytes", None) or len(data)), shm_tasks.checksum(data)


def _no_segments_of(pid: int) -> bool:
    return not _shm.segments_of(pid)


def _in_use_here() -> int:
    """Segments of this process some message still uses (free spares are dropped first)."""
    _shm.drop_spares()
    return len(_shm.segments_of(os.getpid()))


# -- what arrives --------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_argument_arrives_intact(pool: Pool, kind: str) -> None:
    _needs(kind)
    name, size, crc, view = pool.submit(shm_tasks.describe, shm_tasks.make(kind)).result(WAIT)
    assert (name, size, crc) == _expected(kind)
    assert view is (kind in VIEWS)  # a view on the segment in the worker: no copy made there


@pytest.mark.parametrize("kind", KINDS)
def test_result_arrives_intact(pool: Pool, kind: str) -> None:
    _needs(kind)
    value = pool.submit(shm_tasks.make, kind, shm_tasks.SIZE, 5).result(WAIT)
    assert shm_tasks.describe(value)[:3] == _expected(kind, seed=5)
    assert shm_tasks.maps_shared_memory(value) is (kind in VIEWS)
    if kind in ("numpy", "float64"):
        assert not value.flags.owndata  # numpy result arrives without a copy
        assert value.flags.writeable
        value[0] = 1  # ours to change, as any unpickled array


def test_numpy_keeps_dtype_and_shape(pool: Pool) -> None:
    np = pytest.importorskip("numpy")
    value = pool.submit(shm_tasks.make, "float64", shm_tasks.SIZE, 2).result(WAIT)
    expected = shm_tasks.make("float64", shm_tasks.SIZE, 2)
    assert value.dtype == np.float64
    assert value.shape == expected.shape
    assert np.array_equal(value, expected)


def test_memoryview_keeps_format_and_shape(pool: Pool) -> None:
    view = memoryview(bytearray(shm_tasks.make("bytes"))[: 2**21]).cast("I", (2**17, 4))
    value = pool.submit(workers.identity, view).result(WAIT)
    assert (value.format, value.shape, value.readonly) == ("I", (2**17, 4), False)
    assert value.tobytes() == view.tobytes()
    small = pool.submit(workers.identity, memoryview(b"abc")).result(WAIT)  # small: in the pipe
    assert (type(small), small.readonly, small.tobytes()) == (memoryview, True, b"abc")


def test_buffers_inside_containers_and_keywords(pool: Pool) -> None:
    items = [shm_tasks.make("bytes", seed=1), b"small", shm_tasks.make("bytearray", seed=2)]
    table = {"a": shm_tasks.make("bytes", seed=3), "b": bytearray(b"tiny")}
    seen = pool.submit(shm_tasks.describe_nested, items, table).result(WAIT)
    assert [s[:3] for s in seen] == [shm_tasks.describe(v)[:3] for v in [*items, *table.values()]]
    seen = pool.submit(shm_tasks.describe_all, data=shm_tasks.make("bytes", seed=4)).result(WAIT)
    assert seen[0][:3] == _expected("bytes", seed=4)


def test_map_with_large_items(pool: Pool) -> None:
    payloads = [shm_tasks.make("bytes", seed=s) for s in range(4)]
    seen = list(pool.map(shm_tasks.describe, payloads, chunksize=2))
    assert [s[:3] for s in seen] == [_expected("bytes", seed=s) for s in range(4)]
    values = list(pool.map(shm_tasks.make, ["bytes", "bytearray"], [shm_tasks.SIZE] * 2, [7, 8]))
    assert [shm_tasks.describe(v)[:3] for v in values] == [_expected("bytes", 7), _expected("bytearray", 8)]


def test_small_messages_stay_in_the_pipe() -> None:
    handle = _functions.handle_for(shm_tasks.describe)
    segments: list[str] = []
    data = _encode.encode_call(handle, (b"x" * (_buffers.MIN_BUFFER - 1),), {}, 0, (), segments)
    assert segments == []
    assert len(data) > _buffers.MIN_BUFFER  # in the pickle itself
    big = shm_tasks.make("bytes")
    data = _encode.encode_call(handle, (big,), {}, 0, (), segments)
    try:
        assert len(segments) == 1
        assert len(data) < 4096  # only a reference travels
        assert _serialize.loads(data)[1][0] == big
    finally:
        _shm.release(segments)
    _shm.drop_spares()
    assert _shm.segments_of(os.getpid()) == []


def test_spare_segments_are_reused_and_never_mixed_up(pool1: Pool) -> None:
    """bytes are copied out on arrival, so their segments are reused: each message must still
    arrive with its own contents, and the segments stay few."""
    worker = pool1.submit(os.getpid).result(WAIT)
    for seed in range(4):
        name, size, crc, view = pool1.submit(shm_tasks.describe, shm_tasks.make("bytes", seed=seed)).result(
            WAIT
        )
        assert ((name, size, crc), view) == (_expected("bytes", seed), False)
        value = pool1.submit(shm_tasks.make, "bytearray", shm_tasks.SIZE, 10 + seed).result(WAIT)
        assert shm_tasks.describe(value)[:3] == _expected("bytearray", 10 + seed)
    # One spare for the arguments, two if a done-callback had not freed it before the next call.
    assert 1 <= len(_shm.segments_of(os.getpid())) <= _shm.MAX_SPARES
    wait_until(lambda: _in_use_here() == 0, WAIT, "the arguments' spares to be free")
    assert len(_shm.segments_of(worker)) == 1  # the worker's spare, for its next result
    # An array arrives as a view, so its message never goes into a spare: it would be overwritten.
    array = pool1.submit(shm_tasks.make, "numpy", shm_tasks.SIZE, 3).result(WAIT)
    again = pool1.submit(shm_tasks.make, "bytes", shm_tasks.SIZE, 4).result(WAIT)
    assert shm_tasks.describe(array)[:3] == _expected("numpy", 3)
    assert shm_tasks.describe(again)[:3] == _expected("bytes", 4)


def test_bytes_are_read_into_their_own_object_and_free_the_spare(pool1: Pool) -> None:
    """A bytes buffer is read straight into the bytes the receiver gets (no mapping): each result
    is a plain bytes with its own contents, and the worker's spare is marked free every time."""
    worker = pool1.submit(os.getpid).result(WAIT)
    for seed in range(3):  # a spare left busy would make the worker create another, then one-offs
        value = pool1.submit(shm_tasks.make, "bytes", shm_tasks.SIZE, 20 + seed).result(WAIT)
        assert type(value) is bytes
        assert shm_tasks.describe(value) == (*_expected("bytes", 20 + seed), False)
        assert len(_shm.segments_of(worker)) == 1
    # bytes and a bytearray in one message (that fits the spare): one is read, the other copied
    # out of a mapping.
    mixed = (shm_tasks.make("bytes", 2**20, seed=5), shm_tasks.make("bytearray", 2**20, seed=6))
    back = pool1.submit(workers.identity, mixed).result(WAIT)
    assert [type(v) for v in back] == [bytes, bytearray]
    assert back == mixed
    assert len(_shm.segments_of(worker)) == 1


def test_a_segment_read_past_its_end_raises() -> None:
    data = shm_tasks.make("bytes")
    segments: list[str] = []
    encoded = _serialize.dumps_shared(data, 1, segments)
    try:
        assert _serialize.loads(encoded) == data
        fd = _shm._posixshmem.shm_open(segments[0], os.O_RDONLY, 0)
        try:
            size = os.fstat(fd).st_size
            assert _shm._read(fd, 0, size) == os.pread(fd, size, 0)
            with pytest.raises(OSError, match="ended 100 bytes early"):
                _shm._read(fd, size, 100)
        finally:
            os.close(fd)
    finally:
        _shm.release(segments)
        _shm.drop_spares()


def test_full_shared_memory_falls_back_to_the_pipe(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_room(fd: int, offset: int, length: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "posix_fallocate", no_room)
    big = shm_tasks.make("bytearray")
    segments: list[str] = []
    handle = _functions.handle_for(shm_tasks.describe)
    data = _encode.encode_call(handle, (memoryview(big),), {}, 0, (), segments)
    assert segments == []
    assert len(data) > len(big)
    arrived = _serialize.loads(data)[1][0]
    assert type(arrived) is memoryview
    assert arrived.tobytes() == bytes(big)
    assert _shm.segments_of(os.getpid()) == []


# -- the other backends --------------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["sync", "thread"])
@pytest.mark.parametrize("kind", ["bytes", "memoryview", "numpy"])
def test_sync_and_thread_backends(backend: str, kind: str) -> None:
    _needs(kind)
    describe = parallel(backend=backend)(shm_tasks.describe)
    assert describe(shm_tasks.make(kind)).result(WAIT)[:3] == _expected(kind)
    make = parallel(backend=backend)(shm_tasks.make)
    assert shm_tasks.describe(make(kind, shm_tasks.SIZE, 3).result(WAIT))[:3] == _expected(kind, 3)
    _shm.drop_spares()
    assert _shm.segments_of(os.getpid()) == []


# -- nothing left behind -------------------------------------------------------------------------


def test_worker_killed_holding_a_segment_leaves_none(pool: Pool, tmp_path: Path) -> None:
    marker = tmp_path / "pid"
    with pytest.raises(WorkerCrashed):
        pool.submit(shm_tasks.die_holding_segment, shm_tasks.SIZE, str(marker)).result(WAIT)
    pid = int(marker.read_text())
    wait_until(lambda: _no_segments_of(pid), WAIT, f"the segment of dead worker {pid} to be swept")
    assert pool.submit(shm_tasks.describe, shm_tasks.make("bytes")).result(WAIT)[:3] == _expected("bytes")


def test_unread_segment_of_a_retired_worker_is_swept(start_method: str) -> None:
    with Pool(1, start_method=start_method, max_tasks_per_worker=1) as pool:
        pid = pool.submit(shm_tasks.pid_with_segment, shm_tasks.SIZE).result(WAIT)
        wait_until(lambda: _no_segments_of(pid), WAIT, f"the segment of retired worker {pid} to be swept")


def test_timed_out_task_releases_its_argument(pool: Pool) -> None:
    future = pool.submit(shm_tasks.sleep_with, shm_tasks.make("bytes"), 60, timeout=0.5)
    assert _shm.segments_of(os.getpid())  # made at submit time, in this process
    with pytest.raises(TaskTimeout):
        future.result(WAIT)
    wait_until(lambda: _in_use_here() == 0, WAIT, "the argument's segment to be released")


def test_cancelled_tasks_release_their_arguments(start_method: str) -> None:
    with Pool(1, start_method=start_method) as pool:
        running = pool.submit(shm_tasks.sleep_with, shm_tasks.make("bytes"), 60)
        queued = pool.submit(shm_tasks.sleep_with, shm_tasks.make("bytearray"), 60)
        assert _in_use_here() == 2
        assert queued.cancel()
        wait_until(lambda: _in_use_here() == 1, WAIT, "the queued task's segment to be released")
        wait_until(running.running, WAIT, "the first task to start")
        assert running.cancel()
        with pytest.raises(concurrent.futures.CancelledError):
            running.result(WAIT)
        wait_until(lambda: _in_use_here() == 0, WAIT, "the running task's segment to be released")


def test_retry_after_a_crash_sees_the_original_argument(default_start_method: str, tmp_path: Path) -> None:
    np = pytest.importorskip("numpy")
    data = shm_tasks.make("numpy")
    retried = parallel(retries=1)(shm_tasks.scribble_then_crash)
    assert retried(data, str(tmp_path / "crashed")).result(WAIT) == shm_tasks.checksum(data)
    assert np.array_equal(data, shm_tasks.make("numpy"))


KILLED_PARENT = """
import os, sys, time
from parallelize import Pool
from tests import shm_tasks

if __name__ == "__main__":
    pool = Pool(2)
    pool.submit(shm_tasks.sleep_with, shm_tasks.make("bytes"), 60)  # an argument segment, ours
    pool.submit(shm_tasks.hold_segment, shm_tasks.SIZE, sys.argv[1])  # a result segment, a worker's
    print(os.getpid(), flush=True)
    time.sleep(60)
"""


def test_parent_killed_leaves_no_segment(start_method: str, tmp_path: Path) -> None:
    script = tmp_path / "killed.py"
    script.write_text(KILLED_PARENT)
    held = tmp_path / "held"
    env = lifecycle_tasks.script_env(start_method)
    env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).parent.parent), env.get("PYTHONPATH", "")])
    with open(tmp_path / "stderr", "w") as stderr:
        child = subprocess.Popen(
            [sys.executable, str(script), str(held)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
        )
    try:
        assert child.stdout is not None
        line = child.stdout.readline()
        assert line, (tmp_path / "stderr").read_text()
        parent = int(line)
        assert _shm.segments_of(parent)  # made at submit time, before the pid was printed
        wait_until(held.exists, WAIT, "a worker to make its result segment")
        worker = int(held.read_text())
        assert _shm.segments_of(worker)
        child.send_signal(signal.SIGKILL)
        assert child.wait(WAIT) == -signal.SIGKILL
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(WAIT)
        if child.stdout is not None:
            child.stdout.close()
    # The workers die with the parent (PR_SET_PDEATHSIG); the resource tracker they share with
    # it then sees the last of them go and unlinks what is still registered.
    for pid in (parent, worker):
        wait_until(lambda pid=pid: _no_segments_of(pid), WAIT, f"the segments of process {pid} to be removed")
