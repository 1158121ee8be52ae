"""A module that uses the decorator as a user's module would (the cold decorated-call row and the
whole-pool memory row import it).

Only those rows' fresh interpreters import this module, so no other pool's workers pay for wrapt.
"""

import os
import time

from parallelize import parallel


@parallel
def noop(x: object) -> object:
    return x


@parallel
def pid_after(seconds: float) -> int:
    """Sleep, then say which worker ran this (so that every worker gets a call)."""
    time.sleep(seconds)
    return os.getpid()
