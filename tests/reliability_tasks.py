"""Task functions for the reliability probes: decorated, so the probes take the default pool and a
plain ``@parallel`` like most code does. Workers import them by name."""

from __future__ import annotations

import os
import signal

from parallelize import _serialize, parallel

BIG = 2 * 2**20 + 4321  # over the shared-memory threshold


@parallel
def tiny(x: int) -> int:
    return 2 * x + 1


@parallel
def whose(x: int) -> tuple[int, int]:
    """The value and the worker that computed it (the probes collect the pids they must check)."""
    return 2 * x + 1, os.getpid()


@parallel
def big(data: bytes) -> bytes:
    """A large argument in and a large result out: both through shared memory."""
    return data[::-1]


@parallel
def crash(how: str, log: str) -> None:
    """Die as ``how`` says, after appending this worker's pid to ``log`` (one short write: atomic)."""
    with open(log, "a") as f:
        f.write(f"{os.getpid()}\n")
    if how == "exit":
        os._exit(3)
    if how == "segment":
        # a result segment made and never sent: the dispatcher must sweep it
        _serialize.dumps_shared(b"x" * BIG, 1)
    os.kill(os.getpid(), signal.SIGKILL)
