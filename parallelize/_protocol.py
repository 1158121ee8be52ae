"""The wire protocol between a pool's dispatcher and one worker.

Each worker has two one-way pipes of its own, both owned by the parent, so the parent always knows
which task each worker holds (a shared queue cannot say, and that is why one crash breaks
``ProcessPoolExecutor`` for good)::

    dispatcher --[RUN / RUN_MANY / RUN_EACH / DEFINE / LEVELS / STOP]--> worker
    dispatcher <--[READY / RESULT / ERROR / ITEM / INIT_FAILED / OUTPUT / LOG]-- worker

A message is one ``Connection.send_bytes`` frame: a fixed header (kind, task id, attempt) and a
payload. Payloads are pickles made by ``_serialize``; arguments are pickled in the caller's thread,
so the dispatcher only prepends a header and never runs user code.

Workers are pipelined: while a worker runs one task, the dispatcher may already have written the
next few small ones into its pipe, so it never idles for a round trip between tiny tasks. The
dispatcher must still know which task is running (a crash or a cancel costs that task only), so
the worker decides, and says: before it reports a result it reads everything waiting in its pipe,
drops the tasks a SKIP asked it to drop (answering SKIPPED), and names in the result's header the
task it starts next (0: none waiting; it then runs whatever arrives next without asking). So a
prefetched task that is cancelled in time never runs, and one cancelled too late is known to be
running and is stopped like any running task.

A map chunk travels as RUN_MANY (one RESULT for the whole chunk: cheap) or, when each item needs
its own deadline or the chunk must be re-run to find the item that killed its worker, as RUN_EACH
(one ITEM message per item, so the dispatcher always knows which item is running).

What a task prints and logs crosses as OUTPUT and LOG frames, written before the frame that
reports the task (see _forward and _logs), so the parent replays them before it settles the
task's future; LEVELS tells a worker the parent's logging levels when they have changed.

Imported by every worker: standard library only.
"""

from __future__ import annotations

import struct

# parent -> worker
RUN = 1  # payload: pickle of (function key, args, kwargs, retries, retry_on)
# RUN_MANY payload: pickle of (function key, items, bare, retries, retry_on): one chunk of a map,
# whose items are argument tuples, or single arguments when ``bare`` (a one-iterable map)
RUN_MANY = 2
RUN_EACH = 5  # as RUN_MANY, but the worker reports each item as it finishes (ITEM messages)
# DEFINE payload: pickle of (function key, pickled function, keys to forget): before the first
# task of a by-value function's pickle that the worker does not have (see _channel.WorkerHandle)
DEFINE = 3
STOP = 4  # no payload: finish and exit
SKIP = 6  # no payload: drop this prefetched task if it has not started (it was cancelled)
BATCH = 7  # payload: several messages, each preceded by its length (4 bytes): one write for many
# LEVELS payload: pickle of (root level, logging.disable level, {logger name: level}), sent
# before a task when the parent's levels changed since this worker last heard (see _logs)
LEVELS = 8

# worker -> parent
READY = 10  # booted and the initializer ran; payload empty
RESULT = 11  # payload: pickled value (for RUN_MANY a ChunkOutcome)
ERROR = 12  # payload: pickled ErrorEnvelope
INIT_FAILED = 13  # payload: pickled ErrorEnvelope of the initializer's exception
ITEM = 14  # payload: pickled ItemOutcome, one per item of a RUN_EACH chunk, in order
SKIPPED = 15  # no payload: the task a SKIP named was dropped unstarted
# OUTPUT and LOG name the running task (0: none, e.g. an initializer's print). They are the
# highest kinds, so the parent tells them from the rest with one comparison.
OUTPUT = 16  # payload: pickle of [(1 for stdout or 2 for stderr, text), ...] in the order written
LOG = 17  # payload: pickle of a LogRecord's __dict__, message formatted, exc_info as exc_text
STDOUT, STDERR = 1, 2  # the stream numbers in OUTPUT

# kind, task id, attempt (1 for the first run; the worker retries `retry_on` errors within the
# budget that is left, so a task's attempts are counted across crashes and exceptions alike), and
# in RESULT and ERROR the id of the task the worker starts next (0: none is waiting)
_HEADER = struct.Struct("<BQHQ")
HEADER_SIZE = _HEADER.size

# An error crosses as a plain tuple so that a broken exception cannot break the message itself:
# (pickled exception, or why it could not be sent; "module.TypeName"; str(exception); traceback)
ErrorEnvelope = tuple[bytes | str, str, str, str]

# A RUN_MANY chunk comes back as (values, {index: error}, seconds spent); a failed item's value
# is None. Items after a failed one still run: each item has its own outcome.
ChunkOutcome = tuple[list[object], dict[int, ErrorEnvelope], float]

# One RUN_EACH item: (True, value) or (False, ErrorEnvelope).
ItemOutcome = tuple[bool, object]


def pack(kind: int, task_id: int = 0, payload: bytes = b"", attempt: int = 1, next_id: int = 0) -> bytes:
    return _HEADER.pack(kind, task_id, attempt, next_id) + payload


def pack_batch(messages: list[bytes]) -> bytes:
    """One message carrying several: the dispatcher writes a busy worker's new tasks at once,
    because every write is a system call that also hands the GIL to another thread."""
    parts = []
    for message in messages:
        parts.append(_LENGTH.pack(len(message)))
        parts.append(message)
    return pack(BATCH, 0, b"".join(parts))


def unpack_batch(payload: memoryview) -> list[memoryview]:
    messages = []
    position = 0
    while position < len(payload):
        (size,) = _LENGTH.unpack_from(payload, position)
        position += _LENGTH.size
        messages.append(payload[position : position + size])
        position += size
    return messages


_LENGTH = struct.Struct("<I")


def unpack(message: bytes | bytearray | memoryview) -> tuple[int, int, int, int, memoryview]:
    """(kind, task id, attempt, next task id, payload)"""
    kind, task_id, attempt, next_id = _HEADER.unpack_from(message)
    return kind, task_id, attempt, next_id, memoryview(message)[HEADER_SIZE:]
