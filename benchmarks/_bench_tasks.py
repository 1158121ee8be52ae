"""Task functions the benchmark runner sends to workers, importable by name from this folder.

Every worker of every pool imports this module, so it imports only the standard library at the
top: anything more would show in the cold-start and memory rows. numpy is imported inside the
functions that need it.
"""

from __future__ import annotations

import os
import time
from typing import Any

# Payloads a worker has made already, by (kind, size): a result row measures the transfer, not
# the making of 64 MiB.
_made: dict[tuple[str, int], Any] = {}

KINDS = ("bytes", "bytearray", "memoryview", "numpy")


def double(x: int) -> int:
    return x * 2


def spin(n: int) -> int:
    """Pure-Python busy loop: about ``n`` loop turns of CPU work, holding the GIL."""
    total = 0
    for i in range(n):
        total += i
    return total


def pid_after(seconds: float) -> int:
    """Sleep, then say which worker ran this (warm-up: every worker gets one)."""
    time.sleep(seconds)
    return os.getpid()


def hold(path: str, limit: float) -> int:
    """Keep a worker busy until ``path`` exists (at most ``limit`` seconds): the tasks submitted
    meanwhile stay pending."""
    deadline = time.monotonic() + limit
    while not os.path.exists(path) and time.monotonic() < deadline:
        time.sleep(0.01)
    return os.getpid()


def echo_once(conn: Any) -> None:
    """Answer one message on a pipe (the bare forkserver cold start)."""
    conn.send_bytes(conn.recv_bytes())


def make(kind: str, size: int, pattern: bytes | None = None) -> Any:
    """A ``size``-byte payload of ``kind``, filled with a non-zero pattern (zero pages are cheating).

    ``pattern`` is a bytes payload of that size made earlier: the other kinds copy it.
    """
    if pattern is None:
        block = bytes(range(256))
        pattern = block * (size // len(block)) + block[: size % len(block)]
    if kind == "bytes":
        return pattern
    if kind == "bytearray":
        return bytearray(pattern)
    if kind == "memoryview":
        return memoryview(bytearray(pattern))
    if kind == "numpy":
        import numpy as np

        return np.frombuffer(pattern, dtype=np.uint8).copy()
    raise ValueError(f"unknown payload kind {kind!r}")


def size_of(data: Any) -> int:
    """Bytes in ``data`` (a bytes, bytearray, memoryview or numpy array)."""
    nbytes = getattr(data, "nbytes", None)
    return int(nbytes) if nbytes is not None else len(data)


def prepare(size: int, seconds: float) -> int:
    """Make (and keep) this worker's payloads of every kind, then linger so that the next call goes
    to another worker."""
    pattern = _made.get(("bytes", size))
    if pattern is None:
        pattern = _made["bytes", size] = make("bytes", size)
    for kind in KINDS:
        if (kind, size) not in _made:
            try:
                _made[kind, size] = make(kind, size, pattern)
            except ImportError:  # numpy is optional
                continue
    time.sleep(seconds)
    return os.getpid()


def hold_payload(size: int, seconds: float) -> int:
    """Make (and keep) this worker's bytes payload only, then linger so that the next call goes to
    another worker (the first-result row: nothing else of the worker is warmed)."""
    if ("bytes", size) not in _made:
        _made["bytes", size] = make("bytes", size)
    time.sleep(seconds)
    return os.getpid()


def produce(kind: str, size: int) -> Any:
    """Return this worker's payload (made by ``prepare``, or now)."""
    payload = _made.get((kind, size))
    if payload is None:
        payload = _made[kind, size] = make(kind, size)
    return payload


def sleep_for(seconds: float) -> float:
    """Sleep ``seconds``: an item of a given length that leaves the CPU to the others."""
    time.sleep(seconds)
    return seconds
