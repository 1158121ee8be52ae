"""Task functions for tests/test_mistakes.py: importable by name in spawn and forkserver workers."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Coroutine
from typing import Any

from parallelize import in_process, parallel


@parallel
async def async_double(x: int) -> int:
    await asyncio.sleep(0)
    return 2 * x


async def plain_async_pid(x: int) -> tuple[int, int]:
    await asyncio.sleep(0)
    return x, os.getpid()


@parallel
async def async_fails(message: str) -> None:
    await asyncio.sleep(0)
    raise ValueError(message)


@parallel(backend="thread")
async def async_on_thread(x: int) -> int:
    await asyncio.sleep(0)
    return x + 1


@parallel(backend="sync")
async def async_on_sync(x: int) -> int:
    await asyncio.sleep(0)
    return x + 2


@in_process
async def async_in_process(x: int) -> int:
    await asyncio.sleep(0)
    return x * 10


@in_process(isolated=True)
async def async_isolated_pid() -> int:
    await asyncio.sleep(0)
    return os.getpid()


async def _coroutine() -> int:
    return 1


@parallel
def returns_coroutine() -> Coroutine[Any, Any, int]:
    return _coroutine()


@parallel
def takes(value: object) -> str:
    return type(value).__name__


def reads_path(path: str) -> str:
    with open(path) as f:
        return f.read()
