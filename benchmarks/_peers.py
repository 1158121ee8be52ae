"""One small adapter per pool the benchmarks compare, so that every row drives them alike.

An adapter opens a pool of ``WORKERS`` processes, submits one call, waits for one result (always
with a timeout), maps with the pool's own map API, lists its worker pids, and shuts the pool down.
Peers are imported in ``open``: one that is not installed raises ImportError there, and the runner
prints n/a for it. Only the standard library is imported at the top, because spawn and forkserver
workers import the main script, and through it this module.

``start_method=None`` means the pool's own default. ``cold_code`` is the script a user would write
to get one result (the cold-start row runs it in a fresh interpreter).
"""

from __future__ import annotations

import contextlib
import math
import multiprocessing
import os
import signal
import sys
import time
from collections.abc import Callable
from typing import Any

from _bench_tasks import pid_after, prepare

WORKERS = 2


def mp_default_method() -> str:
    """multiprocessing's default start method here (fork on Linux up to 3.13, forkserver from 3.14)."""
    return str(multiprocessing.get_context().get_start_method())


def classic_chunksize(n: int) -> int:
    """multiprocessing.Pool.map's own default: about four chunks per worker."""
    return max(1, math.ceil(n / (4 * WORKERS)))


def _context_code(method: str | None) -> str:
    return "" if method is None else f"multiprocessing.get_context({method!r})"


class Adapter:
    key = ""  # the name on the command line
    label = ""  # the column title
    distribution = ""  # the package whose version the header reports

    def __init__(self, start_method: str | None = None) -> None:
        self.requested = start_method
        self.start_method = start_method or self.default_method()
        self.pool: Any = None

    @classmethod
    def default_method(cls) -> str:
        return mp_default_method()

    def open(self) -> None:
        raise NotImplementedError

    def submit(self, fn: Callable[..., Any], *args: Any) -> Any:
        raise NotImplementedError

    def wait(self, handle: Any, timeout: float) -> Any:
        return handle.result(timeout=timeout)

    def map(self, fn: Callable[..., Any], items: list[Any], timeout: float) -> list[Any]:
        raise NotImplementedError

    def map_api(self, n: int) -> str:
        raise NotImplementedError

    def worker_pids(self) -> list[int]:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def abandon(self) -> None:
        """After a failure: kill the workers and let go of the pool without waiting for it."""
        for pid in self._pids_or_none():
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(Exception):
            self._abandon_pool()

    def _abandon_pool(self) -> None:
        self.close()

    def _pids_or_none(self) -> list[int]:
        try:
            return self.worker_pids() if self.pool is not None else []
        except Exception:  # noqa: BLE001 - best effort on the failure path
            return []

    # -- shared helpers ---------------------------------------------------------------------------

    def warm(self, timeout: float = 60.0) -> list[int]:
        """Until every worker has run a task; returns their pids."""
        deadline = time.monotonic() + timeout
        seen: set[int] = set()
        while len(seen) < WORKERS:
            handles = [self.submit(pid_after, 0.02) for _ in range(2 * WORKERS)]
            seen.update(self.wait(h, max(0.1, deadline - time.monotonic())) for h in handles)
            if time.monotonic() > deadline:
                raise TimeoutError(f"only {len(seen)} of {WORKERS} workers answered in {timeout:g} s")
        return sorted(seen)

    def prepare_everywhere(self, size: int, timeout: float = 60.0) -> None:
        """Have every worker make its payloads (and import numpy) before the transfer rows."""
        deadline = time.monotonic() + timeout
        seen: set[int] = set()
        while len(seen) < WORKERS:
            handles = [self.submit(prepare, size, 0.05) for _ in range(WORKERS)]
            seen.update(self.wait(h, max(0.1, deadline - time.monotonic())) for h in handles)
            if time.monotonic() > deadline:
                raise TimeoutError(f"only {len(seen)} of {WORKERS} workers prepared in {timeout:g} s")

    def cold_code(self) -> str:
        """A script body that starts the pool and gets one result, calling ``report()`` then."""
        raise NotImplementedError


class Parallelize(Adapter):
    key = "parallelize"
    label = "parallelize"
    distribution = "parallelize"

    @classmethod
    def default_method(cls) -> str:
        try:
            from parallelize import _config

            return str(_config.settings().start_method)
        except Exception:  # noqa: BLE001 - the documented default, should the private module change
            return "forkserver" if sys.platform.startswith("linux") else "spawn"

    def open(self) -> None:
        import parallelize

        self.pool = parallelize.Pool(WORKERS, start_method=self.requested)

    def submit(self, fn: Callable[..., Any], *args: Any) -> Any:
        return self.pool.submit(fn, *args)

    def map(self, fn: Callable[..., Any], items: list[Any], timeout: float) -> list[Any]:
        return list(self.pool.map(fn, items))

    def map_api(self, n: int) -> str:
        return "`Pool.map(fn, xs)`, automatic chunking"

    def worker_pids(self) -> list[int]:
        return list(self.pool.worker_pids())

    def close(self) -> None:
        self.pool.shutdown(wait=True)

    def _abandon_pool(self) -> None:
        self.pool.shutdown(wait=False, cancel_pending=True)

    def cold_code(self) -> str:
        method = "" if self.requested is None else f", start_method={self.requested!r}"
        return (
            "import parallelize\n"
            f"with parallelize.Pool({WORKERS}{method}) as pool:\n"
            "    pool.submit(noop, 1).result(timeout=60)\n"
            "    report()\n"
        )


class ProcessPoolExecutor(Adapter):
    key = "ppe"
    label = "ProcessPoolExecutor"
    distribution = ""  # the standard library

    def open(self) -> None:
        from concurrent.futures import ProcessPoolExecutor as Executor

        self.pool = Executor(WORKERS, mp_context=multiprocessing.get_context(self.requested))

    def submit(self, fn: Callable[..., Any], *args: Any) -> Any:
        return self.pool.submit(fn, *args)

    def map(self, fn: Callable[..., Any], items: list[Any], timeout: float) -> list[Any]:
        return list(self.pool.map(fn, items, timeout=timeout, chunksize=classic_chunksize(len(items))))

    def map_api(self, n: int) -> str:
        return f"`map(fn, xs, chunksize={classic_chunksize(n)})` (n / 4 per worker; its default is 1)"

    def worker_pids(self) -> list[int]:
        return list(self.pool._processes or ())

    def close(self) -> None:
        self.pool.shutdown(wait=True)

    def _abandon_pool(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)

    def cold_code(self) -> str:
        context = _context_code(self.requested)
        context = f", mp_context={context}" if context else ""
        return (
            "import multiprocessing\n"
            "from concurrent.futures import ProcessPoolExecutor\n"
            f"with ProcessPoolExecutor({WORKERS}{context}) as pool:\n"
            "    pool.submit(noop, 1).result(timeout=60)\n"
            "    report()\n"
        )


class MultiprocessingPool(Adapter):
    key = "mp"
    label = "multiprocessing.Pool"
    distribution = ""

    def open(self) -> None:
        self.pool = multiprocessing.get_context(self.requested).Pool(WORKERS)

    def submit(self, fn: Callable[..., Any], *args: Any) -> Any:
        return self.pool.apply_async(fn, args)

    def wait(self, handle: Any, timeout: float) -> Any:
        return handle.get(timeout)

    def map(self, fn: Callable[..., Any], items: list[Any], timeout: float) -> list[Any]:
        return list(self.pool.map_async(fn, items).get(timeout))

    def map_api(self, n: int) -> str:
        return f"`map(fn, xs)`, its default chunksize ({classic_chunksize(n)})"

    def worker_pids(self) -> list[int]:
        return [p.pid for p in self.pool._pool]

    def close(self) -> None:
        self.pool.close()
        self.pool.join()

    def _abandon_pool(self) -> None:
        self.pool.terminate()

    def cold_code(self) -> str:
        context = _context_code(self.requested) or "multiprocessing"
        return (
            "import multiprocessing\n"
            f"with {context}.Pool({WORKERS}) as pool:\n"
            "    pool.apply_async(noop, (1,)).get(60)\n"
            "    report()\n"
        )


class Loky(Adapter):
    key = "loky"
    label = "loky"
    distribution = "loky"

    @classmethod
    def default_method(cls) -> str:
        return "loky"  # loky's own: fork + exec of a fresh interpreter, like spawn

    def open(self) -> None:
        from loky import get_reusable_executor

        self.pool = get_reusable_executor(max_workers=WORKERS, context=self.requested)

    def submit(self, fn: Callable[..., Any], *args: Any) -> Any:
        return self.pool.submit(fn, *args)

    def map(self, fn: Callable[..., Any], items: list[Any], timeout: float) -> list[Any]:
        return list(self.pool.map(fn, items, timeout=timeout, chunksize=classic_chunksize(len(items))))

    def map_api(self, n: int) -> str:
        return f"`map(fn, xs, chunksize={classic_chunksize(n)})` (its default is 1)"

    def worker_pids(self) -> list[int]:
        return list(self.pool._processes or ())

    def close(self) -> None:
        self.pool.shutdown(wait=True)

    def _abandon_pool(self) -> None:
        self.pool.shutdown(wait=False, kill_workers=True)

    def cold_code(self) -> str:
        context = "" if self.requested is None else f", context={self.requested!r}"
        return (
            "from loky import get_reusable_executor\n"
            f"executor = get_reusable_executor(max_workers={WORKERS}{context})\n"
            "executor.submit(noop, 1).result(timeout=60)\n"
            "report()\n"
            "executor.shutdown(wait=True)\n"
        )


class Pebble(Adapter):
    key = "pebble"
    label = "pebble"
    distribution = "pebble"

    def open(self) -> None:
        from pebble import ProcessPool

        self.pool = ProcessPool(max_workers=WORKERS, context=multiprocessing.get_context(self.requested))

    def submit(self, fn: Callable[..., Any], *args: Any) -> Any:
        return self.pool.schedule(fn, args=args)

    def map(self, fn: Callable[..., Any], items: list[Any], timeout: float) -> list[Any]:
        future = self.pool.map(fn, items, chunksize=classic_chunksize(len(items)))
        return list(future.result(timeout=timeout))

    def map_api(self, n: int) -> str:
        return f"`map(fn, xs, chunksize={classic_chunksize(n)})` (its default is 1)"

    def worker_pids(self) -> list[int]:
        return list(self.pool._pool_manager.worker_manager.workers)

    def close(self) -> None:
        self.pool.close()
        self.pool.join(timeout=60)

    def _abandon_pool(self) -> None:
        self.pool.stop()
        self.pool.join(timeout=10)

    def cold_code(self) -> str:
        context = _context_code(self.requested)
        context = f", context={context}" if context else ""
        return (
            "import multiprocessing\n"
            "from pebble import ProcessPool\n"
            f"with ProcessPool(max_workers={WORKERS}{context}) as pool:\n"
            "    pool.schedule(noop, args=(1,)).result(timeout=60)\n"
            "    report()\n"
        )


class Mpire(Adapter):
    key = "mpire"
    label = "mpire"
    distribution = "mpire"

    @classmethod
    def default_method(cls) -> str:
        try:
            from mpire.context import DEFAULT_START_METHOD
        except ImportError:
            return "fork" if sys.platform.startswith("linux") else "spawn"
        return str(DEFAULT_START_METHOD)

    def open(self) -> None:
        from mpire import WorkerPool

        # keep_alive: without it every map() starts and stops the workers (mpire's documented
        # way to reuse them across calls).
        self.pool = WorkerPool(n_jobs=WORKERS, start_method=self.start_method, keep_alive=True)

    def submit(self, fn: Callable[..., Any], *args: Any) -> Any:
        return self.pool.apply_async(fn, args=args)

    def wait(self, handle: Any, timeout: float) -> Any:
        return handle.get(timeout)

    def map(self, fn: Callable[..., Any], items: list[Any], timeout: float) -> list[Any]:
        return list(self.pool.map(fn, items))

    def map_api(self, n: int) -> str:
        return f"`map(fn, xs)` with keep_alive=True, its default chunking ({classic_chunksize(n)})"

    def worker_pids(self) -> list[int]:
        return [w.pid for w in self.pool._workers if w is not None]

    def close(self) -> None:
        self.pool.stop_and_join()
        self.pool.terminate()  # joins what is left and frees mpire's queues

    def _abandon_pool(self) -> None:
        self.pool.terminate()

    def cold_code(self) -> str:
        method = "" if self.requested is None else f", start_method={self.requested!r}"
        return (
            "from mpire import WorkerPool\n"
            f"with WorkerPool(n_jobs={WORKERS}{method}) as pool:\n"
            "    pool.apply_async(noop, (1,)).get(60)\n"
            "    report()\n"
        )


ADAPTERS: dict[str, type[Adapter]] = {
    cls.key: cls for cls in (Parallelize, ProcessPoolExecutor, MultiprocessingPool, Loky, Pebble, Mpire)
}


# The start method of each pool in the rows measured inside this process: its own default, except
# ProcessPoolExecutor, which the issue measures on forkserver (its default from Python 3.14 on).
ROWS_START_METHOD = {"ppe": "forkserver"}


def make(key: str, start_method: str | None = None) -> Adapter:
    return ADAPTERS[key](start_method)


def make_for_rows(key: str) -> Adapter:
    return make(key, ROWS_START_METHOD.get(key))


def memory_of(pid: int) -> tuple[float, float | None]:
    """(VmRSS, private memory USS) of ``pid`` in MiB, from /proc (Linux); USS is None if unreadable."""
    with open(f"/proc/{pid}/status") as f:
        rss_kib = next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
    uss: float | None = None
    with contextlib.suppress(OSError, ValueError, IndexError):
        with open(f"/proc/{pid}/smaps_rollup") as f:
            fields = dict(line.split(":", 1) for line in f if ":" in line and not line[0].isspace())
        private = ("Private_Clean", "Private_Dirty")
        uss = sum(int(fields[name].split()[0]) for name in private) / 1024
    return rss_kib / 1024, uss
