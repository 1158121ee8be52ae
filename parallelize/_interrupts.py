"""Where Ctrl-C goes: to the main thread of the parent, never to the pool's own threads or workers.

Python runs signal handlers in the main thread only, but the kernel may hand a process's SIGINT
to any thread that does not block it. When the dispatcher thread takes it, the C handler only
notes it, and the main thread raises KeyboardInterrupt when it next runs Python: a main thread
asleep in ``Future.result()`` whose task will not finish soon sleeps on. So the dispatcher
thread blocks SIGINT.

The processes it starts inherit that mask: a worker (or the forkserver, or a spawned interpreter)
that a Ctrl-C to the process group reaches while it boots does not die of it (a dead forkserver
fails every later worker start). A worker unblocks SIGINT once it ignores it, so a task's own
code, and what it starts, get the usual mask. CPython protects its resource tracker the same way.
"""

from __future__ import annotations

import _thread
import queue
import signal
import sys
import threading
import time
from collections.abc import Callable
from types import CodeType
from typing import Any

_CAN_MASK = hasattr(signal, "pthread_sigmask")


def keep_off_this_thread() -> None:
    """Block SIGINT in the calling thread (a pool's dispatcher), for the rest of its life.

    multiprocessing's resource tracker, when it starts, unblocks SIGINT in the thread that
    starts it rather than restore the mask it found; it is started here first, before the
    block, and the dispatcher calls this again after starting a worker (which may restart it).
    """
    if not _CAN_MASK:
        return
    try:
        from multiprocessing import resource_tracker

        resource_tracker.ensure_running()
    except Exception:  # noqa: BLE001 - no tracker: the spawn or forkserver start says why
        pass
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})


def ignore_in_worker() -> None:
    """A worker ignores Ctrl-C (the parent decides what it means) and unblocks it afterwards."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if _CAN_MASK:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


def raise_again_later(finaliser: CodeType) -> None:
    """Ctrl-C arrived in a finaliser, which cannot raise: have the main thread hear it again.

    An exception leaving ``__del__`` (or a weakref callback, or a generator closed on collection)
    is printed and dropped, KeyboardInterrupt included, and the signal handler that raised it has
    already run. Simulating the signal at once does not help: the main thread runs the handler
    at its next bytecode, still inside the finaliser. So the re-delivery thread sends it again to
    the main thread once the main thread's stack no longer holds ``finaliser``. Only a put on a
    ``SimpleQueue`` happens here: a finaliser may run inside any lock, even threading's own.
    """
    main = threading.main_thread().ident
    if main is not None:
        _requests.put((main, finaliser))


def catch_lost_ctrl_c() -> None:
    """Route a Ctrl-C that a finaliser dropped back to the main thread (once per process).

    Any finaliser, ours or the user's, may be what the main thread runs when Ctrl-C arrives;
    Python then prints "Exception ignored in ..." and the KeyboardInterrupt is gone, while the
    pool promises that every Ctrl-C interrupts. A ``sys.unraisablehook`` that passes everything
    else to the hook it found re-delivers those instead (see ``raise_again_later``). A hook the
    user installs later replaces this one, as usual. Called when a pool starts, never from a
    finaliser (it may start a thread).
    """
    global _previous_hook, _redeliverer
    with _hook_lock:
        if _redeliverer is None:
            _redeliverer = threading.Thread(target=_redeliver, name="parallelize-ctrl-c", daemon=True)
            _redeliverer.start()
        if _previous_hook is None:
            _previous_hook = sys.unraisablehook
            sys.unraisablehook = _unraisable


def _unraisable(unraisable: Any) -> None:
    if isinstance(unraisable.exc_value, KeyboardInterrupt):
        raise_again_later(_unraisable.__code__)
    elif _previous_hook is not None:
        _previous_hook(unraisable)


def _redeliver() -> None:
    if _CAN_MASK:
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})  # the main thread's, as ever
    while True:
        main, finaliser = _requests.get()
        deadline = time.monotonic() + _PATIENCE
        while time.monotonic() < deadline and _running(main, finaliser):
            time.sleep(0.0005)  # a stack is polled: nothing signals "that frame has returned"
        if _CAN_MASK and callable(signal.getsignal(signal.SIGINT)):
            # A real signal also wakes the main thread from a blocking wait, which a simulated
            # one does not; its handler is the Python one that raised the lost interrupt.
            signal.pthread_kill(main, signal.SIGINT)
        else:
            _thread.interrupt_main()


def _running(thread: int, code: CodeType) -> bool:
    frame = sys._current_frames().get(thread)
    while frame is not None and frame.f_code is not code:
        frame = frame.f_back
    return frame is not None


def _after_fork_in_child() -> None:
    global _requests, _redeliverer, _hook_lock
    _requests, _redeliverer, _hook_lock = queue.SimpleQueue(), None, threading.Lock()


# How long a finaliser may run on before its Ctrl-C is delivered anyway (inside it, and lost).
_PATIENCE = 5.0
_requests: queue.SimpleQueue[tuple[int, CodeType]] = queue.SimpleQueue()
_previous_hook: Callable[[Any], object] | None = None  # guarded by _hook_lock; set once
_redeliverer: threading.Thread | None = None  # guarded by _hook_lock
_hook_lock = threading.Lock()
