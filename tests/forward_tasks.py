"""Tasks that print and log, for tests/test_forwarding.py (importable by name in every worker)."""

from __future__ import annotations

import logging
import os
import sys

log = logging.getLogger("tests.forward_tasks")


def chatter(x: int) -> int:
    """Both streams, interleaved, ending with a partial line."""
    print(f"out {x} a")
    sys.stderr.write(f"err {x}\n")
    print(f"out {x} b")
    sys.stdout.write(f"partial {x}")
    return x


def enabled() -> tuple[bool, bool, bool]:
    """Which of DEBUG, INFO and WARNING this process's logger would make a record for."""
    return log.isEnabledFor(logging.DEBUG), log.isEnabledFor(logging.INFO), log.isEnabledFor(logging.WARNING)


def log_all(x: int) -> int:
    log.debug("debug %d", x)
    log.info("info %d", x)
    log.warning("warning %d", x)
    try:
        _fail(x)
    except ValueError:
        log.exception("failed %d", x)
    return os.getpid()


def greet() -> None:
    """An initializer that prints, outside any task."""
    print(f"hello from {os.getpid()}")


def getpid() -> int:
    return os.getpid()


def _fail(x: int) -> None:
    raise ValueError(f"bad {x}")
