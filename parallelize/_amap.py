"""``async for`` over a map: the same map, awaited a chunk at a time without blocking the loop.

A map's blocking wait is for its next chunk (``MapIterator._load``). Here the coroutine first
makes sure that chunk is done, suspending on an asyncio future that the chunk's done-callback
resolves through ``call_soon_threadsafe``, and only then calls ``_load``, which then has nothing to
wait for. Values of a chunk in hand are returned without suspending; the loop gets a turn at
least once per chunk, so a long map of ready results does not starve the other tasks. Several
tasks may iterate one map at once: each outcome goes to one of them, and none ever blocks the
loop (after every suspension the map is looked at afresh).

Cancelling the consuming task (``task.cancel()``, ``asyncio.wait_for`` timing out, ``asyncio.run``
ending on Ctrl-C) closes the map, as leaving a ``for`` loop early does: its queued chunks are
cancelled and its running ones stopped.

An item that raised ``StopIteration`` or ``StopAsyncIteration`` fails with a ``RuntimeError``
whose cause is that exception: passed on as is, it would end the ``async for`` as if the map were
done (a coroutine cannot raise ``StopIteration`` at all, PEP 479).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from ._mapping import MapIterator

R = TypeVar("R")


async def anext_of(mapping: MapIterator[R]) -> R:
    """The next outcome of ``mapping``: its value, or its exception raised here."""
    while True:
        for value in mapping._current:
            return value  # type: ignore[no-any-return]
        if await _waited(mapping):
            # Suspended: another task iterating the same map may have taken that chunk (and
            # made its values current) meanwhile, so look again before taking one.
            continue
        try:
            more = mapping._load()  # does not block: its next chunk is done (or there is none)
        except (StopIteration, StopAsyncIteration) as exc:
            error = RuntimeError(
                f"an item of the map raised {type(exc).__name__}, which would end this async for "
                "as if the map were done; the item's exception is the cause of this one, and the "
                "map goes on"
            )
            raise error from exc
        if not more:
            raise StopAsyncIteration
        # A chunk that was done already: give the other tasks a turn before its values.
        await _cancellable(mapping, asyncio.sleep(0))


async def _waited(mapping: MapIterator[Any]) -> bool:
    """Wait until ``mapping._load()`` would not block: True if this suspended, False if it was so."""
    if not mapping._pending and not mapping._in_flight:
        mapping._refill_or_close()
    if mapping._pending or not mapping._in_flight:
        return False
    loop = asyncio.get_running_loop()
    ready = loop.create_future()

    def wake() -> None:  # called in the thread that settled the chunk
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits any more
            loop.call_soon_threadsafe(_resolve, ready)

    if not mapping._watch(wake):
        return False
    await _cancellable(mapping, ready)
    return True


async def _cancellable(mapping: MapIterator[Any], awaitable: Awaitable[None]) -> None:
    """Await ``awaitable``; if the consuming task is cancelled meanwhile, close the map first."""
    try:
        await awaitable
    except asyncio.CancelledError:
        mapping.close()
        raise


def _resolve(ready: asyncio.Future[None]) -> None:
    if not ready.done():
        ready.set_result(None)
