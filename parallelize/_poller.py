"""What the dispatcher sleeps on: a set of file descriptors, each tagged with what it means.

``multiprocessing.connection.wait`` builds a new selector and registers every descriptor on each
call; the dispatcher waits twice per task, so that cost was most of its own time per task. Here
registrations persist (``select.poll``), and a wait is one system call. Where ``poll`` does not
exist (Windows) the same interface falls back to ``connection.wait``.
"""

from __future__ import annotations

import select
from multiprocessing.connection import wait
from typing import Generic, TypeVar

T = TypeVar("T")

_READABLE = getattr(select, "POLLIN", 1) | getattr(select, "POLLHUP", 16) | getattr(select, "POLLERR", 8)


class Poller(Generic[T]):
    def __init__(self) -> None:
        self._tags: dict[int, T] = {}
        self._poll = select.poll() if hasattr(select, "poll") else None

    def add(self, fd: int, tag: T) -> None:
        self._tags[fd] = tag
        if self._poll is not None:
            self._poll.register(fd, _READABLE)

    def remove(self, fd: int) -> None:
        if self._tags.pop(fd, None) is not None and self._poll is not None:
            self._poll.unregister(fd)

    def wait(self, timeout: float | None) -> list[T]:
        """The tags of the descriptors that are readable (or closed), after at most ``timeout`` s."""
        if self._poll is None:
            return [self._tags[fd] for fd in wait(list(self._tags), timeout) if fd in self._tags]
        events = self._poll.poll(None if timeout is None else max(0, int(timeout * 1000 + 0.999)))
        return [self._tags[fd] for fd, _ in events if fd in self._tags]
