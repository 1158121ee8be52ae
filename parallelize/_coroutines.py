"""Running ``async def`` functions where a plain call is expected: in workers, threads, inline.

A coroutine function's call returns a coroutine, which cannot be pickled and means nothing on its
own; a worker (and the thread and sync backends) runs it to the end instead, each call in a fresh
event loop of its own (``asyncio.run``), so calls never share loop state, pending tasks or
context. Workers import this module at start-up, so it imports neither ``inspect`` nor
``asyncio``: the check below is the one ``inspect.iscoroutinefunction`` makes for functions,
methods and partials, and asyncio is imported only when a coroutine function arrives.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Coroutine
from typing import Any

_CO_COROUTINE = 0x80  # inspect.CO_COROUTINE


def is_coroutine_function(function: object) -> bool:
    while isinstance(function, functools.partial):
        function = function.func
    function = getattr(function, "__func__", function)  # a bound method
    code = getattr(function, "__code__", None)
    return bool(getattr(code, "co_flags", 0) & _CO_COROUTINE)


def runnable(function: Callable[..., Any]) -> Callable[..., Any]:
    """``function`` itself, or for a coroutine function a plain one that runs each call's coroutine."""
    if not is_coroutine_function(function):
        return function

    @functools.wraps(function)  # keeps __module__ and __qualname__ for error messages
    def run(*args: Any, **kwargs: Any) -> Any:
        return run_coroutine(function(*args, **kwargs))

    return run


def run_coroutine(coroutine: Coroutine[Any, Any, Any]) -> Any:
    """Run ``coroutine`` in a fresh event loop and return its value (or raise its exception).

    Inside a running loop (the sync backend called from async code, or a nested call inline in a
    worker that runs a coroutine), ``asyncio.run`` refuses to start a second loop in the same
    thread, so the coroutine runs in a thread of its own while this one waits, as a blocking
    inline call would.
    """
    import asyncio

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coroutine)
    import threading

    outcome: list[Any] = []

    def run() -> None:
        try:
            outcome.append((True, asyncio.run(coroutine)))
        except BaseException as exc:  # noqa: BLE001 - re-raised in the calling thread below
            outcome.append((False, exc))

    thread = threading.Thread(target=run, name="parallelize-coroutine")
    thread.start()
    thread.join()
    ok, value = outcome[0]
    if ok:
        return value
    raise value


def returned_coroutine(label: str, value: object) -> str | None:
    """The message for a plain function that returned a coroutine instead of awaiting it."""
    if type(value).__name__ != "coroutine":
        return None
    value.close()  # type: ignore[attr-defined]  # no "never awaited" warning: we said what happened
    return (
        f"{label} returned a coroutine; decorate an async def directly or await it in the "
        f"function (a coroutine cannot be sent back)"
    )
