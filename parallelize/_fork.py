"""The one ``os.register_at_fork`` hook: what a forked child resets, in which order.

A child forked from a process that used parallelize inherits the parent's locks (perhaps held by a
thread that does not exist in the child), caches and pools; the pools' dispatcher threads did not
survive the fork, and the workers are the parent's. Each module below with such state has an
``_after_fork_in_child()``; this hook calls those of the modules already imported, in this order:

1. ``_interrupts``, ``_fallback``, ``_functions``, ``_shm``, ``_settings``, ``_tally``: leaves of
   the import graph (``_tally``: the counters every future bumps as it settles, see ``stats()``). Each
   replaces its lock and drops what is the parent's (function facts stay: they are true in the
   child too; the spare shared-memory segments and the warnings already logged are the
   parent's). They come first because the resets after them may pickle, look up a function or
   read a setting, and must not meet a lock held at the fork.
2. ``_config``: its lock; the thread backend (its threads are gone) and the resolved default are
   dropped, so the child chooses again (a forked *worker* must run nested calls inline).
3. ``_process``: every pool goes back to NEW (CLOSED and BROKEN stay so), letting go of the
   parent's pipes and forkserver, so the child's next call starts a pool of its own. Last, as the
   top of the graph: it may log, and logging must find everything below already sane.

Modules not yet imported have nothing to reset, so none is imported here (``_fork`` stays cheap:
``parallelize/__init__`` imports it, so every process that imports the package registers the hook).
"""

from __future__ import annotations

import os
import sys

__all__ = ["RESET_ORDER"]

RESET_ORDER = (
    "parallelize._interrupts",
    "parallelize._fallback",
    "parallelize._functions",
    "parallelize._shm",
    "parallelize._settings",
    "parallelize._tally",
    "parallelize._config",
    "parallelize._process",
)


def _after_fork_in_child() -> None:
    for name in RESET_ORDER:
        module = sys.modules.get(name)
        if module is not None:
            module._after_fork_in_child()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
