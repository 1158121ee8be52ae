"""CPU-bound work: the same pure-Python function run serially, then across a pool's workers.

Each call counts the primes below a limit by trial division, which holds the GIL for tens of
milliseconds: threads could not speed this up, processes can. The speed-up printed depends on the
machine (about the number of free cores, less the cost of moving arguments and results).

Run it with ``python examples/cpu_bound.py``; ``PARALLELIZE_WORKERS=n`` changes the pool size.
"""

from __future__ import annotations

import time

from parallelize import Pool

LIMITS = [25_000 + 1_000 * i for i in range(12)]


def count_primes(limit: int) -> int:
    """How many primes are below ``limit`` (deliberately slow: trial division in pure Python)."""
    count = 0
    for n in range(2, limit):
        divisor = 2
        while divisor * divisor <= n:
            if n % divisor == 0:
                break
            divisor += 1
        else:
            count += 1
    return count


def main() -> None:
    started = time.perf_counter()
    serial = [count_primes(limit) for limit in LIMITS]
    serial_seconds = time.perf_counter() - started

    with Pool() as pool:  # as many workers as this process may use CPUs (cgroup quota included)
        # Boot the workers first, so the timing below measures the work, not process start-up.
        for future in [pool.submit(count_primes, 10) for _ in range(pool.workers)]:
            future.result(timeout=30)
        started = time.perf_counter()
        in_parallel = list(pool.map(count_primes, LIMITS))
        parallel_seconds = time.perf_counter() - started
        workers = pool.workers

    print("primes below each limit:", in_parallel)
    print("same as serial:", in_parallel == serial)
    print(f"serial: {serial_seconds:.2f} s, parallel: {parallel_seconds:.2f} s on {workers} workers")
    print(f"speed-up: {serial_seconds / parallel_seconds:.2f}x with {workers} workers")


if __name__ == "__main__":
    main()
