"""Task functions for the shared-memory tests: they make, inspect and hold large buffers.

numpy is imported inside the functions that need it: it is optional, and the other tasks must work
without it.
"""

from __future__ import annotations

import mmap
import os
import signal
import time
import zlib
from typing import Any

from parallelize import _serialize, _shm

SIZE = 3 * 2**20  # over the threshold, and not a multiple of anything in particular
SIZE += 12345


def make(kind: str, size: int = SIZE, seed: int = 0) -> Any:
    """A ``size``-byte buffer of ``kind`` whose contents depend on ``seed`` (never all zeros)."""
    block = bytes((i * 7 + seed) % 251 for i in range(251))
    data = (block * (size // len(block) + 1))[:size]
    if kind == "bytes":
        return data
    if kind == "bytearray":
        return bytearray(data)
    if kind == "memoryview":
        return memoryview(bytearray(data))
    if kind == "numpy":
        import numpy as np

        return np.frombuffer(data, dtype=np.uint8).copy()
    if kind == "float64":
        import numpy as np

        return np.arange(size // 64 * 8, dtype=np.float64).reshape(-1, 8) + seed
    raise ValueError(kind)


def checksum(data: Any) -> int:
    return zlib.crc32(memoryview(data).cast("B") if isinstance(data, memoryview) else data)


def maps_shared_memory(data: Any) -> bool:
    """True if ``data`` is a view whose memory is an mmap (a segment), not a copy."""
    while True:
        if isinstance(data, mmap.mmap):
            return True
        if isinstance(data, memoryview):
            data = data.obj
        elif getattr(data, "base", None) is not None:
            data = data.base
        else:
            return False


def describe(data: Any) -> tuple[str, int, int, bool]:
    """What a worker received: type, size, checksum, and whether it is a view on shared memory."""
    return (
        type(data).__name__,
        int(getattr(data, "nbytes", None) or len(data)),
        checksum(data),
        maps_shared_memory(data),
    )


def describe_all(*args: Any, **kwargs: Any) -> list[tuple[str, int, int, bool]]:
    values = [*args, *(kwargs[key] for key in sorted(kwargs))]
    return [describe(v) for v in values]


def describe_nested(items: list[Any], table: dict[str, Any]) -> list[tuple[str, int, int, bool]]:
    return [describe(v) for v in items] + [describe(table[key]) for key in sorted(table)]


def sleep_with(data: Any, seconds: float) -> int:
    time.sleep(seconds)
    return len(data)


def pid_with_segment(size: int) -> int:
    """Make a result segment as a worker does (and keep it unread); return this worker's pid."""
    _serialize.dumps_shared(make("bytes", size), 1)
    return os.getpid()


def hold_segment(size: int, path: str) -> None:
    """Make a result segment as a worker does, say so in ``path``, and wait to be killed."""
    _serialize.dumps_shared(make("bytes", size), 1)
    with open(path + ".tmp", "w") as f:
        f.write(str(os.getpid()))
    os.replace(path + ".tmp", path)
    time.sleep(60)


def die_holding_segment(size: int, marker: str) -> None:
    """Make a result segment as a worker does, then die by SIGKILL before sending it."""
    _serialize.dumps_shared(make("bytes", size), 1)
    assert _shm.segments_of(os.getpid()), "the segment should exist before the worker dies"
    with open(marker, "w") as f:
        f.write(str(os.getpid()))
    os.kill(os.getpid(), signal.SIGKILL)


def scribble_then_crash(data: Any, marker: str) -> int:
    """First attempt: write zeros over the argument (a numpy array) and crash. Second attempt (in
    another worker): return the checksum of what it received, which must be the original."""
    seen = checksum(data)
    if not os.path.exists(marker):
        with open(marker, "w"):
            pass
        data[:] = 0
        os._exit(3)
    return seen
