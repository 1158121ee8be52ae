"""Why a large message took the pipe instead of shared memory: said once per process per cause.

When a segment cannot be made (see ``_shm._create``), the message still arrives, through the pipe,
only slower. That is worth one warning, not one per message: a small /dev/shm (Docker's default is
64 MiB) used to print a warning for nearly every large argument and result, from the parent and
from every worker. So each process says it once for each cause, and names the cause rightly:

==================  ======================================  =============================
cause               errno from shm_open / posix_fallocate   what the user can do
==================  ======================================  =============================
no room             ENOSPC, ENOMEM                          a larger /dev/shm
no /dev/shm         ENOENT (shm_open with O_CREAT)          mount a tmpfs on /dev/shm
name collision      EEXIST after every fresh name tried     nothing: it says what happened
anything else       named as it is (EROFS, EACCES, ...)     what the error says
==================  ======================================  =============================

A name collision is normally not a fallback at all: ``_shm._create`` tries fresh names first.

"Per process": a fork child starts with nothing said (``after_in_child`` below), as spawn and
forkserver workers do, so every worker speaks for itself once. Imported by workers: standard
library only; logging is imported only when there is something to say.
"""

from __future__ import annotations

import errno
import os
import threading

__all__ = ["cause_of", "warn_once"]

_said: set[str] = set()  # the causes this process has warned about; guarded by _lock
_lock = threading.Lock()

_ADVICE = {
    "no room": "shared memory (/dev/shm) is full",
    "no /dev/shm": "there is no /dev/shm to make shared memory in",
    "name collision": "every fresh name tried for a shared-memory segment was taken in /dev/shm",
}
_REMEDY = {
    "no room": "; a larger /dev/shm (for a container, e.g. `docker run --shm-size=1g`) restores the speed",
    "no /dev/shm": "; mounting a tmpfs on /dev/shm restores the speed",
    "name collision": "",
}


def cause_of(exc: OSError) -> str:
    """The cause a failed segment is reported under: one of ``_ADVICE``'s, or the error's name."""
    if exc.errno in (errno.ENOSPC, errno.ENOMEM):
        return "no room"
    if exc.errno == errno.ENOENT:
        return "no /dev/shm"
    if exc.errno == errno.EEXIST:
        return "name collision"
    name = errno.errorcode.get(exc.errno, type(exc).__name__) if exc.errno else type(exc).__name__
    return name


def warn_once(exc: OSError) -> bool:
    """Log why shared memory failed, unless this process said so already; True if it logged."""
    cause = cause_of(exc)
    with _lock:
        if cause in _said:
            return False
        _said.add(cause)
    what = _ADVICE.get(cause, "shared memory could not be used")
    import logging

    # The error as text, not the exception: a handler that keeps records (pytest's caplog) kept
    # its traceback, whose frames held views of the message's buffers, and on 3.10 collecting
    # that cycle later crashed the interpreter (a segfault in memoryview's release).
    logging.getLogger("parallelize").warning(
        "%s (%s), so large arguments and results of process %d go through the pipe instead, "
        "which is slower%s; said once per process for this cause",
        what,
        f"{type(exc).__name__}: {exc}",
        os.getpid(),
        _REMEDY.get(cause, ""),
    )
    return True


def _after_fork_in_child() -> None:
    global _lock
    _lock = threading.Lock()  # the parent may have held it in another thread
    _said.clear()
