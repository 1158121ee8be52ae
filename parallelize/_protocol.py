"""The wire protocol between a pool's dispatcher and one worker.

Each worker has two one-way pipes of its own, both owned by the parent, so the parent always knows
which task each worker holds (a shared queue cannot say, and that is why one crash breaks
``ProcessPoolExecutor`` for good)::

    dispatcher --[RUN / RUN_MANY / DEFINE / STOP]--> worker
    dispatcher <--[READY / RESULT / ERROR / INIT_FAILED]-- worker

A message is one ``Connection.send_bytes`` frame: a fixed header (kind, task id) and a payload.
Payloads are pickles made by ``_serialize``; arguments are pickled in the caller's thread, so the
dispatcher only prepends a header and never runs user code.

Imported by every worker: standard library only.
"""

from __future__ import annotations

import struct

# parent -> worker
RUN = 1  # payload: pickle of (function key, args, kwargs)
RUN_MANY = 2  # payload: pickle of (function key, [args, ...]): one chunk of a map
DEFINE = 3  # payload: pickle of (function key, pickled function): sent once per worker and function
STOP = 4  # no payload: finish and exit

# worker -> parent
READY = 10  # booted and the initializer ran; payload empty
RESULT = 11  # payload: pickled value (for RUN_MANY a ChunkOutcome)
ERROR = 12  # payload: pickled ErrorEnvelope
INIT_FAILED = 13  # payload: pickled ErrorEnvelope of the initializer's exception

_HEADER = struct.Struct("<BQ")
HEADER_SIZE = _HEADER.size

# An error crosses as a plain tuple so that a broken exception cannot break the message itself:
# (pickled exception or None, "module.TypeName", str(exception), formatted traceback)
ErrorEnvelope = tuple[bytes | None, str, str, str]

# A map chunk comes back as (values, error for the first failing item or None, seconds spent).
ChunkOutcome = tuple[list[object], ErrorEnvelope | None, float]


def pack(kind: int, task_id: int = 0, payload: bytes = b"") -> bytes:
    return _HEADER.pack(kind, task_id) + payload


def unpack(message: bytes) -> tuple[int, int, memoryview]:
    kind, task_id = _HEADER.unpack_from(message)
    return kind, task_id, memoryview(message)[HEADER_SIZE:]
