"""Large buffers through POSIX shared memory instead of the pipe.

A 64 MiB argument through a pipe is copied about five times (pickle, header, kernel in, kernel out,
unpickle). Here the pickle is made with protocol 5, so buffers (bytes, bytearray, memoryview, numpy
arrays) are handed over *out of band* instead of being copied into it; they are copied once into
one new shared-memory segment, and the message that travels through the pipe is a small pickle
of a reference to that segment::

    sender: obj --pickle 5--> small pickle + [buffers] --copy--> segment /pz?-<pid>-<n>-<random>
                                       |
    pipe:            Reference(name, layout, small pickle)   (a few hundred bytes)
                                       |
    receiver: loads() -> _load(): map the segment (or pread bytes), pickle.loads(small, buffers=...)

Every ``loads`` in the package works unchanged: the reference unpickles itself. numpy arrays and
memoryviews arrive as views on the mapping (no copy; the mapping lives as long as they do), bytes
and bytearray cost one copy out.

Who removes a segment from /dev/shm (it outlives every process unless someone unlinks it):

* an argument's segment belongs to the caller's process, which unlinks it when the task's future
  is done: retries and re-sends after a crash map the same segment again. Workers map arguments
  privately (copy-on-write), so a task that writes into its argument never changes what a retry
  sees.
* a result's segment is handed over: the receiver unlinks it as soon as it has mapped it.
* a worker that dies between creating a result segment and the parent reading it: the dispatcher
  sweeps /dev/shm for the dead worker's pid (segment names carry their creator's pid).
* a parent killed by SIGKILL: every segment is registered with multiprocessing's resource tracker,
  a separate process that spawn and forkserver workers share with the parent (they inherit its
  pipe). It unlinks whatever is still registered once the last of them has exited. A fork worker
  started before the tracker existed has none; its segments are swept by pid instead, and carry
  "u" (untracked) in their names, so nobody unregisters what was never registered (the tracker
  prints a traceback for that).

We use ``_posixshmem`` and ``mmap`` directly rather than ``SharedMemory``: we need the descriptor
for ``posix_fallocate`` (a full /dev/shm then fails here, and the message goes through the pipe,
instead of a SIGBUS on first touch), our own names for the sweep, private mappings for arguments,
and control of tracking (3.10-3.12 register every *attach* too; only 3.13 has ``track=False``).

Imported by workers: standard library only, and nothing heavy at import time.
"""

from __future__ import annotations

import errno
import itertools
import mmap
import os
import pickle
import sys
import threading
from typing import Any

try:
    import _posixshmem
except ImportError:  # not a POSIX system: everything goes through the pipe
    _posixshmem = None  # type: ignore[assignment]

AVAILABLE = _posixshmem is not None and sys.platform.startswith("linux") and hasattr(os, "posix_fallocate")

_ALIGN = 64  # every buffer starts on a cache line (and numpy's alignment needs are met)

_DIR = "/dev/shm"
_counter = itertools.count()
NAME_ATTEMPTS = 8  # fresh names tried when a name is taken, before the message takes the pipe


def _name(tracked: bool) -> str:
    # pid for the sweep, a counter for uniqueness in this process, random bits in case a dead
    # process with our (reused) pid left a segment behind.
    return f"/pz{'t' if tracked else 'u'}-{os.getpid()}-{next(_counter)}-{os.urandom(3).hex()}"


# -- the resource tracker -------------------------------------------------------------------------


def _can_track() -> bool:
    """True if this process shares the parent's resource tracker, or is the parent.

    A worker must never start a tracker of its own: it would die with the worker and unlink the
    results the parent has not read yet.
    """
    from multiprocessing import parent_process, resource_tracker

    return parent_process() is None or resource_tracker._resource_tracker._fd is not None  # type: ignore[attr-defined]


def _track(name: str) -> None:
    from multiprocessing import resource_tracker

    resource_tracker.register(name, "shared_memory")


def _untrack(name: str) -> None:
    if name.startswith("/pzt-"):
        from multiprocessing import resource_tracker

        resource_tracker.unregister(name, "shared_memory")


def unlink(name: str) -> None:
    """Remove a segment (mappings of it stay valid); no error if it is gone already."""
    assert _posixshmem is not None
    try:
        _posixshmem.shm_unlink(name)
    except FileNotFoundError:
        return
    _untrack(name)


def release(names: list[str]) -> None:
    """An argument's task is settled: unlink its segments, or make its spare free again."""
    for name in names:
        with _spares_lock:
            spare = _spares.get(name)
            if spare is not None:
                spare.mapping[0] = _FREE
                continue
        unlink(name)


def sweep(pid: int) -> None:
    """Unlink every segment a dead process ``pid`` created and nobody took over."""
    if not AVAILABLE:
        return
    try:
        entries = os.listdir(_DIR)
    except OSError:
        return
    for entry in entries:
        if entry.startswith((f"pzt-{pid}-", f"pzu-{pid}-")):
            unlink("/" + entry)


def segments_of(pid: int) -> list[str]:
    """Names of the segments of process ``pid`` still in /dev/shm (for tests and diagnostics)."""
    try:
        entries = os.listdir(_DIR)
    except OSError:
        return []
    return sorted(e for e in entries if e.startswith((f"pzt-{pid}-", f"pzu-{pid}-")))


# -- spare segments -------------------------------------------------------------------------------
#
# Fresh tmpfs pages cost more than pages that exist (64 MiB, idle machine: fallocate 9.5 ms, then
# pwrite 16 ms, against 18 ms to rewrite existing pages; more under load), so a process keeps a
# few segments and reuses them, but only for messages whose buffers are all copied out when they
# are loaded (bytes and bytearray): then no view can outlive the load, and reusing the memory
# cannot change what anyone holds. Byte 0 of a segment says whether it is in use; the sender sets
# it under _spares_lock, and whoever is done with the message clears it: the receiver of a result
# right after loading it, the caller of an argument when its task is settled (``release``).

_HEADER = 64  # the state byte, padded so that buffers stay aligned
_FREE, _BUSY = 0, 1
MAX_SPARES = 2
MAX_SPARE_BYTES = 256 << 20  # per process; a message larger than this gets a one-off segment


class _Spare:
    __slots__ = ("capacity", "fd", "mapping", "name")

    def __init__(self, name: str, capacity: int, fd: int) -> None:
        self.name = name
        self.capacity = capacity
        self.fd = fd  # messages are written with pwrite; the mapping is for the state byte
        self.mapping = mmap.mmap(fd, mmap.PAGESIZE, flags=mmap.MAP_SHARED)


_spares: dict[str, _Spare] = {}  # guarded by _spares_lock; oldest first
_spares_lock = threading.Lock()
_exit_hook = False  # guarded by _spares_lock


def _take_spare(size: int) -> _Spare | None:
    """A free spare of at least ``size`` bytes, marked busy; or a new one; or None (no room)."""
    with _spares_lock:
        for spare in _spares.values():
            if spare.capacity >= size and spare.mapping[0] == _FREE:
                spare.mapping[0] = _BUSY
                return spare
        for spare in list(_spares.values()):  # oldest first: make room by dropping free ones
            if _room_for(size):
                break
            if spare.mapping[0] == _FREE:
                _drop(spare)
        if not _room_for(size):
            return None
    name, fd = _create(size)
    try:
        spare = _Spare(name, size, fd)
    except BaseException:
        os.close(fd)
        unlink(name)
        raise
    spare.mapping[0] = _BUSY
    with _spares_lock:
        _spares[name] = spare
        _register_exit_hook()
    return spare


def _room_for(size: int) -> bool:
    held = sum(spare.capacity for spare in _spares.values())
    return len(_spares) < MAX_SPARES and held + size <= MAX_SPARE_BYTES


def _drop(spare: _Spare) -> None:
    del _spares[spare.name]
    unlink(spare.name)
    spare.mapping.close()
    os.close(spare.fd)


def _register_exit_hook() -> None:
    # The parent unlinks its spares at exit (the tracker would too, with a warning). A worker
    # never gets here through atexit (multiprocessing ends it with os._exit): the dispatcher
    # sweeps its segments once it is gone.
    global _exit_hook
    if not _exit_hook:
        import atexit

        atexit.register(drop_spares)
        _exit_hook = True


def drop_spares() -> None:
    """Unlink the spares no message is using (at exit, and for tests that count segments)."""
    with _spares_lock:
        for spare in list(_spares.values()):
            if spare.mapping[0] == _FREE:
                _drop(spare)


def _after_fork_in_child() -> None:
    # The spares are the parent's: its messages, its names (our pid is not in them).
    global _spares_lock, _exit_hook
    _spares_lock = threading.Lock()
    for spare in _spares.values():
        spare.mapping.close()
        os.close(spare.fd)
    _spares.clear()
    _exit_hook = False
    # CPython's resource tracker guards its pipe with a lock that fork does not reset. A fork
    # worker started while another thread of the parent was registering a segment inherited that
    # lock held by a thread it does not have, and hung for good on its first result segment (seen
    # in about 1 run of 40, each 45 large calls on a small /dev/shm). Only this thread runs now.
    tracker = sys.modules.get("multiprocessing.resource_tracker")
    lock: Any = getattr(getattr(tracker, "_resource_tracker", None), "_lock", None)
    if hasattr(lock, "_at_fork_reinit"):
        lock._at_fork_reinit()


# -- sending --------------------------------------------------------------------------------------


def _create(size: int) -> tuple[str, int]:
    """A new segment of ``size`` bytes, its pages reserved and registered; returns its descriptor."""
    assert _posixshmem is not None
    tracked = _can_track()
    for _ in range(NAME_ATTEMPTS):
        name = _name(tracked)
        # Registered before the segment exists, so a SIGKILL at any moment from here on cannot
        # leak it: reserving 256 MiB below takes about 0.1 s, and a segment registered only after
        # that outlived a parent killed meanwhile. (Killed before shm_open, the tracker only warns
        # that a name it was told of does not exist.)
        if tracked:
            _track(name)
        try:
            fd = _posixshmem.shm_open(name, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600)
        except FileExistsError:
            # Someone else's segment (a dead process whose pid we now have left it): never touch
            # it, and try a fresh name rather than give up on shared memory.
            if tracked:
                _untrack(name)
            continue
        except BaseException:
            if tracked:
                _untrack(name)
            raise
        break
    else:
        raise FileExistsError(errno.EEXIST, f"{NAME_ATTEMPTS} fresh segment names were all taken")
    try:
        # Reserve the pages now: on a full /dev/shm this fails with ENOSPC, where a bare
        # ftruncate would succeed and the first touch of a missing page would raise SIGBUS.
        os.posix_fallocate(fd, 0, size)
    except BaseException:
        os.close(fd)
        unlink(name)
        raise
    return name, fd


def _write(fd: int, layout: list[tuple[int, int, bool]], raws: list[memoryview]) -> None:
    # pwrite rather than a mapping for fresh pages: the kernel copies straight into them, where a
    # mapping would take a page fault per 4 KiB page (that costs more than the copy here).
    for (start, length, _), raw in zip(layout, raws, strict=True):
        done = 0
        while done < length:
            done += os.pwrite(fd, raw[done:], start + done)


def share(
    inner: bytes, buffers: list[pickle.PickleBuffer], *, handover: bool, recyclable: bool
) -> tuple[bytes, str]:
    """Copy ``buffers`` into a segment; return the pickle that stands for the message, and the
    segment's name.

    ``handover``: the receiver is done with the segment once it has loaded the message (results);
    otherwise the caller is, when it calls ``release`` (arguments). ``recyclable``: every buffer is
    copied out on loading, so a spare segment may carry the message. Raises OSError when there is
    no room in /dev/shm.
    """
    raws = [buffer.raw().cast("B") for buffer in buffers]
    layout: list[tuple[int, int, bool]] = []
    size = _HEADER
    for raw in raws:
        layout.append((size, raw.nbytes, raw.readonly))
        size = (size + raw.nbytes + _ALIGN - 1) & ~(_ALIGN - 1)
    spare = _take_spare(size) if recyclable and size <= MAX_SPARE_BYTES else None
    if spare is None:
        name, fd = _create(size)
        mode = "handover" if handover else "keep"
        try:
            _write(fd, layout, raws)
        except BaseException:
            unlink(name)
            raise
        finally:
            os.close(fd)
    else:
        # pwrite even into a spare's pages: through its mapping, a copy is faster only once the
        # mapping's page tables are filled, and filling them costs more than pwrite saves.
        name, mode = spare.name, "recycle" if handover else "keep"
        try:
            _write(spare.fd, layout, raws)
        except BaseException:
            release([name])
            raise
    reference = _Reference(name, size, inner, layout, mode, recyclable)
    return pickle.dumps(reference, pickle.HIGHEST_PROTOCOL), name


class _Reference:
    """What travels through the pipe in place of a message whose buffers are in a segment."""

    __slots__ = ("args",)

    def __init__(self, *args: Any) -> None:
        self.args = args  # name, size, inner pickle, layout, mode, copied: see _load

    def __reduce__(self) -> tuple[Any, ...]:
        return (_load, self.args)


# -- receiving ------------------------------------------------------------------------------------


def _load(
    name: str, size: int, inner: bytes, layout: list[tuple[int, int, bool]], mode: str, copied: bool = False
) -> Any:
    """Unpickle the message with its buffers from the segment (runs inside ``loads``).

    ``mode``: "handover", the segment is ours now (unlink it); "keep", the sender's, which will
    release it (an argument: map it copy-on-write, so a task that writes into it does not change
    what a retry reads); "recycle", the sender's spare (mark it free once everything is copied out).
    ``copied`` (every buffer is a bytes or bytearray, copied out anyway): a bytes buffer is read
    with pread straight into the bytes object the message gets, instead of mapped and copied: no
    page faults on a mapping (a first 64 MiB bytes argument: 36-42 ms where mapping and copying
    took 44-48 ms).
    """
    assert _posixshmem is not None
    fd = _posixshmem.shm_open(name, os.O_RDWR, 0)
    try:
        if mode == "handover":
            unlink(name)  # before anything can fail, so nothing leaks; the pages live on meanwhile
        view = None
        if not (copied and all(readonly for _, _, readonly in layout)):
            flags = mmap.MAP_PRIVATE if mode == "keep" else mmap.MAP_SHARED
            view = memoryview(mmap.mmap(fd, size, flags=flags, prot=mmap.PROT_READ | mmap.PROT_WRITE))
        buffers: list[Any] = []
        for start, length, readonly in layout:
            if copied and readonly:
                buffers.append(_read(fd, start, length))  # unpickled as itself: the one copy
            else:
                assert view is not None
                part = view[start : start + length]
                buffers.append(part.toreadonly() if readonly else part)
        try:
            # The views keep the mapping alive; once the last of them is collected it is unmapped.
            return pickle.loads(inner, buffers=buffers)
        finally:
            if mode == "recycle":
                os.pwrite(fd, bytes([_FREE]), 0)  # bytes and bytearrays only: all copied out by now
    finally:
        os.close(fd)


def _read(fd: int, start: int, length: int) -> bytes:
    data = os.pread(fd, length, start)
    if len(data) < length:  # Linux reads at most about 2 GiB at a time
        if not data:
            raise OSError(errno.EIO, f"a shared-memory segment ended {length} bytes early")
        data += _read(fd, start + len(data), length - len(data))
    return data
