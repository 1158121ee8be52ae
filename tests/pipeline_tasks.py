"""Tasks for the pipelining tests: each run leaves a line in a log, so a test can tell which ran
and how often, and can hold one back until it releases it."""

from __future__ import annotations

import os

from tests.fault_tasks import wait_for_file


def step(log: str, value: int, release: str | None = None, crash: bool = False) -> int:
    """Append "value pid" to ``log``; then wait for ``release``, or kill the worker, if asked."""
    with open(log, "a") as f:
        f.write(f"{value} {os.getpid()}\n")
    if release is not None:
        wait_for_file(release)
    if crash:
        os._exit(5)
    return value


def runs(log: str) -> list[int]:
    """The values of the steps that ran, in the order they started."""
    with open(log) as f:
        return [int(line.split()[0]) for line in f]
