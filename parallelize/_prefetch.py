"""How much work may wait in a busy worker's pipe (see ``_scheduler.Scheduler.feed``).

A worker that has its next task already in its pipe never idles for a round trip between tiny
tasks; one with too much queued makes tasks wait behind a slow one while another worker is free.
The measure is each function's time per call, as the dispatcher sees it from result to result.
Tasks with a time limit and per-item chunks are watched alone, so nothing is queued with them.
"""

from __future__ import annotations

from ._functions import FunctionHandle
from ._task import ChunkTask, Task

# The expected seconds of work, the tasks and the bytes that may wait in one worker's pipe. The
# bytes stay well under a pipe's 64 KiB, so writing to a busy worker never blocks the dispatcher:
# a worker blocked writing its result while the dispatcher blocks writing its task would deadlock.
SECONDS = 0.002
TASKS = 64
BYTES = 32 * 1024
# Weight of a new measurement in a function's running mean of seconds per call.
_NEW_WEIGHT = 0.3


def queueable(task: Task) -> bool:
    """A task that may wait behind another: measured, and not one to be watched alone."""
    return (
        task.function.seconds is not None
        and not (isinstance(task, ChunkTask) and (task.stream or task.done))
        and task.options.timeout is None
    )


def cost(task: Task) -> float:
    """Seconds ``task`` should take by its function's measurements (0 if not measured yet)."""
    seconds = task.function.seconds or 0.0
    return seconds * task.calls()


def room_for(
    running: Task, elapsed: float, queued_bytes: int, queued_seconds: float, seconds: float, size: int
) -> bool:
    """Whether a task of ``seconds`` and ``size`` bytes fits behind ``running`` (under way for
    ``elapsed`` seconds) and what is queued. A running task that has already taken longer than
    its function's measure says is turning out slow: at least ``elapsed`` is what it costs, so
    nothing is queued behind a task that blocks (it would wait there while another worker frees
    up or boots)."""
    if queued_bytes + size > BYTES:
        return False
    return max(cost(running), elapsed) + queued_seconds + seconds <= SECONDS


def measure(handle: FunctionHandle, seconds: float, calls: int) -> None:
    """Fold one task's seconds (``calls`` calls of ``handle``) into its running mean."""
    per_call = seconds / max(1, calls)
    known = handle.seconds
    handle.seconds = per_call if known is None else known + _NEW_WEIGHT * (per_call - known)
