"""Awaiting decorated calls and maps from asyncio.

A call's ``parallelize.Future`` can be awaited inside a running event loop: the coroutine suspends
while a worker process computes, and the loop keeps serving other coroutines meanwhile. Because
the future is awaitable, ``asyncio.gather`` and ``asyncio.wait_for`` take it as they are. A map is
an async iterator: ``async for`` suspends between chunks, never blocking the loop.

Run it with ``python examples/asyncio_gather.py``.
"""

from __future__ import annotations

import asyncio
import hashlib

from parallelize import parallel


@parallel
def digest(text: str, rounds: int) -> str:
    """CPU-bound: hash ``text`` ``rounds`` times over."""
    data = text.encode()
    for _ in range(rounds):
        data = hashlib.sha256(data).digest()
    return data.hex()[:16]


@parallel
def collatz_steps(n: int) -> int:
    steps = 0
    while n != 1:
        n = n // 2 if n % 2 == 0 else 3 * n + 1
        steps += 1
    return steps


@parallel
def inverse(x: int) -> float:
    return 1 / x


async def heartbeat(done: asyncio.Event) -> int:
    """Counts how often the loop ran this coroutine while the workers were busy."""
    beats = 0
    while not done.is_set():
        beats += 1
        await asyncio.sleep(0.001)
    return beats


async def main() -> None:
    # One call: await suspends this coroutine, not the event loop.
    print("digest:", await digest("parallelize", 20_000))

    # Many calls at once: gather takes the futures as they are.
    numbers = [27, 97, 871, 6171, 77031]
    steps = await asyncio.gather(*(collatz_steps(n) for n in numbers))
    print("collatz steps:", dict(zip(numbers, steps, strict=True)))

    # A time limit on the wait (the call keeps running in its worker if the wait gives up).
    print("with wait_for:", await asyncio.wait_for(collatz_steps(837_799), timeout=30))

    # The loop stays free while workers compute.
    done = asyncio.Event()
    beating = asyncio.create_task(heartbeat(done))
    digests = await asyncio.gather(*(digest(word, 50_000) for word in ["a", "b", "c", "d"]))
    done.set()
    print("digests:", digests)
    print("event loop stayed responsive:", await beating > 0)

    # A map in async for, results as their chunks finish (ordered=False).
    total = 0
    async for steps_taken in collatz_steps.map(range(1, 2001), ordered=False):
        total += steps_taken
    print("async for total:", total)

    # Errors as values: a failed item's exception in its place, and the map goes on.
    outcomes = [outcome async for outcome in inverse.map([1, 0, 4], return_exceptions=True)]
    print("outcomes:", [type(o).__name__ if isinstance(o, BaseException) else o for o in outcomes])


if __name__ == "__main__":
    asyncio.run(main())
