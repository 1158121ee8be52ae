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

import signal

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


def raise_again_later() -> None:
    """Ctrl-C arrived in a finaliser, which cannot raise: have the main thread hear it again.

    An exception leaving ``__del__`` is printed and dropped, KeyboardInterrupt included, and the
    signal handler that raised it has already run: without this, that Ctrl-C would be lost. The
    handler runs again (``_thread.interrupt_main``) as soon as the finaliser has returned.
    """
    import _thread

    _thread.interrupt_main()
